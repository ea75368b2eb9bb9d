// The shared reference cases (copied from shared/reference/switch-layer) through the layer, on
// every backend.
import { readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createKernels } from '../kernels/index.js';
import { checkReferenceCase, loadReferenceCase } from '../model/reference-case.js';

const dir = new URL('./reference/', import.meta.url);
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

describe.each([['wasm'], ['reference']] as const)('reference cases on the %s backend', (backend) => {
  const kernels = createKernels({ backend });
  it('has the six shared cases', () => expect(files.length).toBe(6));
  it.each(files.map((f) => [f]))('%s', (file) => {
    const result = checkReferenceCase(kernels, loadReferenceCase(new URL(file, dir).pathname));
    for (const c of result.comparisons) expect(c.pass, `${c.field}: error ${c.error}`).toBe(true);
  });
});
