// `switchyard check-reference FILE...`: runs reference cases forward and backward and prints each
// field's error. Exit status 0 only when every case passes.
import type { Kernels } from '../kernels/index.js';
import { type CaseResult, TOLERANCE, checkReferenceCase, loadReferenceCase } from '../model/reference-case.js';

export function checkReferenceFiles(kernels: Kernels, files: string[], log: (line: string) => void): boolean {
  let passed = 0, failed = 0;
  log(`backend ${kernels.name}; floats pass below ${TOLERANCE} relative error, discrete outputs must be equal`);
  for (const file of files) {
    let result: CaseResult;
    try {
      result = checkReferenceCase(kernels, loadReferenceCase(file));
    } catch (error) {
      failed++;
      const message = (error as Error).message;
      log(`FAIL ${message.startsWith(file) ? message : `${file}: ${message}`}`);
      continue;
    }
    if (result.pass) passed++; else failed++;
    log(`${result.pass ? 'pass' : 'FAIL'} ${result.name} (${file})`);
    for (const c of result.comparisons) {
      const value = c.exact ? (c.pass ? 'equal' : 'DIFFERS') : c.error.toExponential(2);
      log(`  ${c.pass ? ' ' : '✗'} ${c.field.padEnd(22)} ${value}`);
    }
  }
  log(`${passed} passed, ${failed} failed`);
  return failed === 0;
}
