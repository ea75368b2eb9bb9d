// `switchyard check-reference FILE...`: runs reference cases forward and backward and prints each
// field's error. Exit status 0 only when every case passes.
import type { SwitchLayerOptions } from '../model/config.js';
import { type CaseResult, type SwitchRunner, TOLERANCE, checkReferenceCase, loadReferenceCase } from '../app/reference-case.js';

/** `runner` names what computes the layer, for the first line of the report. */
export async function checkReferenceFiles(runner: string, make: (options: SwitchLayerOptions) => SwitchRunner,
  files: string[], log: (line: string) => void): Promise<boolean> {
  let passed = 0, failed = 0;
  log(`${runner}; floats pass below ${TOLERANCE} relative error, discrete outputs must be equal`);
  for (const file of files) {
    let result: CaseResult;
    try {
      result = await checkReferenceCase(loadReferenceCase(file), make);
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
