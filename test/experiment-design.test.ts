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
    expect(flops({ numExperts: 8 }) - d).toBe(3 * 2 * 4 * 128 * 8); // one d×E router per layer, forward and backward
    expect(flops({ numExperts: 64 }) / d).toBeCloseTo(1.038, 3); // 64 experts: their routers add 3.8%
  });

  it('charges top-2 two experts a token, and the wide dense model E× the FFN', () => {
    const ffn = 3 * 2 * 4 * 3 * 128 * 344; // 4 layers of three 128×344 matrices, 6 FLOPs a weight
    expect(flops({ numExperts: 8, topK: 2 }) - flops({ numExperts: 8 })).toBe(ffn);
    expect(flops({ numExperts: 0, dFF: 8 * 344 }) - flops({ numExperts: 0 })).toBe(7 * ffn);
  });

  it('puts a Switch layer in every FFN, so the wide dense model holds the Switch model\'s expert parameters', () => {
    expect(MODEL.sparseStep).toBe(1);
    expect(wideDense(8)).toMatchObject({ name: 'dense-wide-x8', experts: 0, sameParams: true, model: { numExperts: 0, dFF: 8 * 344 } });
  });

  it('names the runs as results.json and the report do', () => {
    expect(dense().name).toBe('dense');
    expect(dense(1338).name).toBe('dense-s1338');
    expect(switchRun(16).name).toBe('switch-e16');
    expect(switchRun(8, { capacityFactor: null })).toMatchObject({ name: 'switch-e8-dropless', capacityFactor: null, model: { capacityFactor: null } });
    expect(switchRun(8, { topK: 2 }).name).toBe('top2-e8');
    expect(switchRun(32, { seed: 1339 }).name).toBe('switch-e32-s1339');
  });
});
