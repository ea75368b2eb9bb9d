// The KV cache against full recomputation: a prefill then decode steps give, position by position,
// the logits of a forward over the whole window, for both position schemes; and a decode step of
// several sequences gives each the logits it gets alone.
import { describe, expect, it } from 'vitest';
import { type BackendName, createKernels } from '../kernels/index.js';
import { type ModelConfig, PRESETS } from '../model/config.js';
import { Rng } from '../model/rng.js';
import { Transformer } from '../model/transformer.js';

const TINY: ModelConfig = {
  ...PRESETS.tiny.model, vocabSize: 23, context: 12, layers: 2, heads: 2, dModel: 16, dFF: 24, numExperts: 4, sparseStep: 2,
  routerJitter: 0, capacityFactor: 1,
};
const LAYOUTS: [string, Partial<ModelConfig>][] = [
  ['qwen2-moe layout (rotary positions, RMSNorm, SwiGLU)', {}],
  ['gpt layout (learned positions, LayerNorm, GELU, biases, top-2 on every layer)', {
    positions: 'learned', norm: 'layernorm', activation: 'gelu', bias: true, topK: 2, sparseStep: 1,
  }],
];
const V = TINY.vocabSize;

function model(backend: BackendName, overrides: Partial<ModelConfig>): Transformer {
  const m = new Transformer(createKernels({ backend }), { ...TINY, ...overrides }, { seed: 2 });
  for (const p of m.params.list) new Rng('w', p.name).fillNormal(p.data, 0.4); // large weights: every path matters
  m.syncComputeCopies();
  return m;
}
const tokens = (key: string, n: number) => { const rng = new Rng(key); return Array.from({ length: n }, () => rng.nextU32() % V); };
const maxDifference = (a: ArrayLike<number>, b: ArrayLike<number>) => Array.from(a).reduce((m, v, i) => Math.max(m, Math.abs(v - b[i]!)), 0);

/** The cached path's logits for positions prompt−1 … ids.length−1, and a forward's over each window. */
async function cachedAndRecomputed(m: Transformer, ids: number[], prompt: number): Promise<[Float32Array[], Float32Array[]]> {
  const cache = m.newCache();
  const pre = await m.prefill(cache, Int32Array.from(ids.slice(0, prompt)), { dropless: true });
  const cached = [Float32Array.from(pre.logits.subarray((prompt - 1) * V, prompt * V))];
  for (let t = prompt; t < ids.length; t++) cached.push(Float32Array.from((await m.decode([cache], Int32Array.of(ids[t]!), { dropless: true })).logits));
  cache.free();
  const full: Float32Array[] = [];
  for (let t = prompt; t <= ids.length; t++) {
    const { logits } = await m.forward({ inputs: Int32Array.from(ids.slice(0, t)), batch: 1, context: t }, { dropless: true });
    full.push(Float32Array.from(logits.subarray((t - 1) * V, t * V)));
  }
  return [cached, full];
}

describe('what the cache relies on', () => {
  // A decode step multiplies a few rows where a full forward multiplies many (and the GEMM takes
  // another path below 5 rows): each row must come out the same either way.
  const cases = (['nn', 'nt', 'tn'] as const).flatMap((form) => (['simd', 'relaxed-simd'] as const).map((variant) => [form, variant] as const));
  it.each(cases)('a %s GEMM row (%s) has the same bits alone, among a few, or among many rows', (form, variant) => {
    const k = createKernels({ variant });
    const [n, depth] = [300, 700]; // columns past a 16 and a 4 boundary, depth over two slices of 256
    const rows = 37, rng = new Rng('rows', form);
    const a = rng.fillNormal(k.allocF32(rows * depth)), b = rng.fillNormal(k.allocF32(depth * n));
    const at = (i: number) => (form === 'tn' ? a.subarray(i) : a.subarray(i * depth));
    const strides = form === 'tn' ? { lda: rows } : {};
    for (const accumulate of [false, true]) { // accumulating: onto a C of ones, slice by slice
      const all = k.allocF32(rows * n).fill(1), some = k.allocF32(7 * n);
      k.gemm(form, rows, n, depth, a, b, all, accumulate, strides);
      for (const [first, m] of [[0, 1], [5, 3], [33, 4], [30, 7]] as const) { // 1–4 rows: the unpacked path; 7: packed
        some.fill(1);
        k.gemm(form, m, n, depth, at(first), b, some, accumulate, strides);
        for (let r = 0; r < m; r++) {
          expect(Array.from(some.subarray(r * n, (r + 1) * n)), `row ${first + r} among ${m}, accumulate ${accumulate}`)
            .toEqual(Array.from(all.subarray((first + r) * n, (first + r + 1) * n)));
        }
      }
    }
  });
});

describe('the KV cache against full recomputation', () => {
  it.each(LAYOUTS)('%s: bit-identical on the reference kernels', async (_name, overrides) => {
    const m = model('reference', overrides);
    const [cached, full] = await cachedAndRecomputed(m, tokens('ids', TINY.context), 4);
    cached.forEach((logits, i) => expect(Array.from(logits), `position ${i + 3}`).toEqual(Array.from(full[i]!)));
    await m.dispose();
  });

  // The WebAssembly softmax adds a row's last cols % 4 terms apart from its vector lanes, so the
  // full forward's rows for earlier positions (padded with −∞ up to the window) sum in another
  // order than when they were the last row: their keys and values, hence later layers, differ in
  // the last bit. One layer (nothing after the attention reads those rows) stays bit-identical.
  it.each(LAYOUTS)('%s: within 1e-5 on the WebAssembly kernels', async (_name, overrides) => {
    const m = model('wasm', overrides);
    const [cached, full] = await cachedAndRecomputed(m, tokens('ids', TINY.context), 4);
    cached.forEach((logits, i) => expect(maxDifference(logits, full[i]!), `position ${i + 3}`).toBeLessThan(1e-5));
    await m.dispose();
    const one = model('wasm', { ...overrides, layers: 1, sparseStep: 1 });
    const [c1, f1] = await cachedAndRecomputed(one, tokens('ids', TINY.context), 1);
    c1.forEach((logits, i) => expect(Array.from(logits), `one layer, position ${i}`).toEqual(Array.from(f1[i]!)));
    await one.dispose();
  });

  it.each(LAYOUTS)('%s: sequences decoded together get the logits each gets alone, bit for bit', async (_name, overrides) => {
    const m = model('wasm', overrides);
    const prompts = [tokens('a', 3), tokens('b', 7), tokens('c', 1)];
    const next = [tokens('a2', 4), tokens('b2', 4), tokens('c2', 4)];
    const alone: number[][][] = [];
    for (const [s, prompt] of prompts.entries()) {
      const cache = m.newCache();
      await m.prefill(cache, Int32Array.from(prompt), { dropless: true });
      const rows: number[][] = [];
      for (const t of next[s]!) rows.push(Array.from((await m.decode([cache], Int32Array.of(t), { dropless: true })).logits));
      alone.push(rows);
      cache.free();
    }
    const caches = prompts.map(() => m.newCache());
    for (const [s, prompt] of prompts.entries()) await m.prefill(caches[s]!, Int32Array.from(prompt), { dropless: true });
    for (let i = 0; i < 4; i++) {
      const { logits } = await m.decode(caches, Int32Array.from(next.map((n) => n[i]!)), { dropless: true });
      prompts.forEach((_, s) => expect(Array.from(logits.subarray(s * V, (s + 1) * V)), `sequence ${s}, step ${i}`).toEqual(alone[s]![i]));
    }
    for (const c of caches) c.free();
    await m.dispose();
  });

  it('refuses what does not fit, by name', async () => {
    const m = model('wasm', {});
    const cache = m.newCache();
    await expect(m.prefill(cache, Int32Array.from(tokens('x', 13)))).rejects.toThrow(/13 more token\(s\) do not fit: 0 of the context's 12/);
    await m.prefill(cache, Int32Array.from(tokens('x', 11)));
    await expect(m.prefill(cache, Int32Array.of(1))).rejects.toThrow(/prefill needs an empty cache; this one holds 11 positions/);
    await m.decode([cache], Int32Array.of(1));
    await expect(m.decode([cache], Int32Array.of(1))).rejects.toThrow(/1 more token\(s\) do not fit: 12 of the context's 12 positions are taken/);
    await expect(m.decode([cache, cache], Int32Array.of(1))).rejects.toThrow(/one token per sequence, got 1 for 2/);
    const other = model('wasm', { context: 8 });
    const fresh = m.newCache();
    await expect(other.decode([fresh], Int32Array.of(1))).rejects.toThrow(/was not made by this model's newCache/);
    fresh.free();
    cache.free();
    await expect(m.decode([cache], Int32Array.of(1))).rejects.toThrow(/used after free/);
    await m.dispose(); await other.dispose();
  });
});
