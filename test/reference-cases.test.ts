// Reference cases through the layer, on every backend: the project's six (test/reference/*.json,
// float64 results of docs/SPEC.md) and ten more made by test/oracle/switch_cases.py, which reproduces
// the six to 1e-15 before it writes new shapes, expert counts, capacities and activations.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { SwitchEngine } from '../engine/switch-engine.js';
import { createKernels } from '../kernels/index.js';
import { checkReferenceCase, inProcess, loadReferenceCase } from '../app/reference-case.js';

const cases = (dir: URL) => readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => new URL(f, dir).pathname);
const shared = cases(new URL('./reference/', import.meta.url));
const generated = cases(new URL('./reference/generated/', import.meta.url));

describe.each([['wasm'], ['reference']] as const)('reference cases on the %s backend', (backend) => {
  const kernels = createKernels({ backend });
  it('has the six shared cases and ten generated ones', () => expect([shared.length, generated.length]).toEqual([6, 10]));
  it.each([...shared, ...generated].map((f) => [f.split('/reference/')[1]!, f]))('%s', async (_name, file) => {
    const result = await checkReferenceCase(loadReferenceCase(file), inProcess(kernels));
    for (const c of result.comparisons) expect(c.pass, `${c.field}: error ${c.error}`).toBe(true);
  });
});

describe.each([[1], [2], [4]])('reference cases through the engine with %i worker(s)', (workers) => {
  it.each([...shared, ...generated].map((f) => [f.split('/reference/')[1]!, f]))('%s', async (_name, file) => {
    const result = await checkReferenceCase(loadReferenceCase(file), (o) => new SwitchEngine({ ...o, workers }));
    for (const c of result.comparisons) expect(c.pass, `${c.field}: error ${c.error}`).toBe(true);
  });
});
