// The Switch-vs-dense experiment's design (bench/experiments/design.ts): the runs it names, and the
// FLOPs it charges them, which the comparison at equal FLOPs per token rests on.
import { describe, expect, it } from 'vitest';
import { MODEL, dense, switchRun, trainingFlopsPerToken, wideDense } from '../bench/experiments/design.js';
import { PRESETS } from '../model/config.js';

const base = { ...PRESETS.tiny.model, ...MODEL, vocabSize: 97 };
const flops = (m: Partial<typeof base>) => trainingFlopsPerToken({ ...base, ...m });

describe('the experiment design', () => {
  it('charges a top-1 Switch model the dense FLOPs plus its routers, and nothing for idle experts', () => {
    const d = flops({ numExperts: 0 });
    expect(flops({ numExperts: 8 }) - d).toBe(3 * 2 * 2 * 128 * 8); // a d×E router in each of the 2 Switch layers, forward and backward
    expect(flops({ numExperts: 64 }) / d).toBeCloseTo(1.019, 3); // 64 experts: their routers add 1.9%
  });

  it('charges top-2 two experts a token in each Switch layer', () => {
    const ffn = 3 * 2 * 3 * 128 * 344; // one layer's three 128×344 matrices, 6 FLOPs a weight
    expect(flops({ numExperts: 8, topK: 2 }) - flops({ numExperts: 8 })).toBe(2 * ffn);
  });

  it('gives the same-parameter dense model the Switch model\'s FFN parameters, spread over its 4 layers', () => {
    expect(MODEL.sparseStep).toBe(2); // Switch layers at 1 and 3
    const wide = wideDense(8);
    expect(wide).toMatchObject({ name: 'dense-same-params-e8', experts: 0, sameParams: true, model: { numExperts: 0, dFF: 1548 } });
    const ffnWeights = (layers: number[]) => layers.reduce((n, width) => n + 3 * 128 * width, 0);
    expect(ffnWeights([1548, 1548, 1548, 1548])).toBe(ffnWeights([344, 8 * 344, 344, 8 * 344]));
    const ffn = 3 * 2 * 3 * 128 * 344;
    expect(flops({ numExperts: 0, dFF: 1548 }) - flops({ numExperts: 0 })).toBe(4 * 3.5 * ffn); // 4.5× the FFN FLOPs
  });

  it('names the runs as results.json and the report do', () => {
    expect(dense().name).toBe('dense');
    expect(dense(1338).name).toBe('dense-s1338');
    expect(switchRun(16).name).toBe('switch-e16');
    expect(switchRun(8, { capacityFactor: null })).toMatchObject({ name: 'switch-e8-dropless', capacityFactor: null, model: { capacityFactor: null } });
    expect(switchRun(8, { topK: 2 }).name).toBe('top2-e8');
    expect(switchRun(8, { topK: 2, normalizeTopK: false })).toMatchObject({ name: 'top2-e8-raw-gates', model: { topK: 2, normalizeTopK: false } });
    expect(switchRun(32, { seed: 1339 }).name).toBe('switch-e32-s1339');
  });
});
