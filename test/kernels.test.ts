// Every backend against the plain-TypeScript reference, on shapes that do and do not fit the tiles.
import { describe, expect, it } from 'vitest';
import { Arena, GEMM_FORMS, type Kernels } from '../kernels/index.js';
import { ReferenceKernels } from '../kernels/reference.js';
import { WASM_VARIANTS, WasmKernels, kernelModule } from '../kernels/wasm/backend.js';
import { ROW_BLOCK } from '../model/expert.js';
import { Rng } from '../model/rng.js';
import { relativeError } from './helpers.js';

const reference = new ReferenceKernels();
const backends: Kernels[] = WASM_VARIANTS.filter((v) => kernelModule(v)).map((v) => new WasmKernels(new Arena(), v));

function random(k: Kernels, length: number, rng: Rng, std = 1): Float32Array {
  return rng.fillNormal(k.allocF32(length), std);
}

const AWKWARD = [1, 3, 17, 130];
const x3 = (k: Kernels) => k.allocF32(3);

describe.each(backends.map((k) => [k.name, k] as const))('%s', (_name, k) => {
  it('has both variants on this Node', () => {
    expect(backends.map((b) => b.name)).toEqual(['wasm-simd', 'wasm-relaxed-simd']);
  });

  describe.each(GEMM_FORMS.map((f) => [f]))('gemm %s', (form) => {
    const shapes: [number, number, number][] = [];
    for (const m of AWKWARD) for (const n of AWKWARD) for (const kk of AWKWARD) shapes.push([m, n, kk]);
    shapes.push([64, 64, 64], [257, 9, 300], [5, 300, 513], [640, 48, 33]);

    it('matches the reference on awkward and tile-sized shapes, overwrite and accumulate', () => {
      const rng = new Rng('gemm', form);
      for (const [m, n, kk] of shapes) {
        const a = random(k, m * kk, rng), b = random(k, kk * n, rng);
        const start = random(k, m * n, rng);
        for (const accumulate of [false, true]) {
          const got = k.allocF32(m * n); got.set(start);
          const want = new Float32Array(start);
          k.gemm(form, m, n, kk, a, b, got, accumulate);
          reference.gemm(form, m, n, kk, new Float32Array(a), new Float32Array(b), want, accumulate);
          expect(relativeError(got, want), `${form} ${m}×${n}×${kk} accumulate=${accumulate}`).toBeLessThan(1e-5);
          k.free(got);
        }
        k.free(a); k.free(b); k.free(start);
      }
    });
  });

  it('gemm on blocks of wider matrices (row strides) matches the reference', () => {
    const rng = new Rng('strided');
    for (const form of GEMM_FORMS) {
      for (const [m, n, kk] of [[5, 7, 9], [64, 32, 64], [17, 3, 130]] as const) {
        const [aRows, aCols] = form === 'tn' ? [kk, m] : [m, kk];
        const [bRows, bCols] = form === 'nt' ? [n, kk] : [kk, n];
        const strides = { lda: aCols + 5, ldb: bCols + 3, ldc: n + 7 };
        const a = random(k, aRows * strides.lda, rng), b = random(k, bRows * strides.ldb, rng);
        const c = random(k, m * strides.ldc, rng), want = new Float32Array(c);
        // Start one column in, as a head inside a fused q|k|v row does.
        k.gemm(form, m, n, kk, a.subarray(2), b.subarray(1), c.subarray(3), true, strides);
        reference.gemm(form, m, n, kk, new Float32Array(a).subarray(2), new Float32Array(b).subarray(1), want.subarray(3), true, strides);
        expect(relativeError(c, want), `${form} ${m}×${n}×${kk}`).toBeLessThan(1e-5);
      }
    }
    expect(() => k.gemm('nn', 2, 2, 4, k.allocF32(8), k.allocF32(8), k.allocF32(4), false, { lda: 3 })).toThrow(/row stride 3 is shorter than a row of 4/);
  });

  it('gemm with k = 0 writes zeros, or leaves C when accumulating', () => {
    const c = k.allocF32(6).fill(7);
    const empty = k.allocF32(0);
    k.gemm('nn', 2, 3, 0, empty, empty, c, true);
    expect(Array.from(c)).toEqual([7, 7, 7, 7, 7, 7]);
    k.gemm('nn', 2, 3, 0, empty, empty, c, false);
    expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0]);
  });

  it('gemm sums a weight gradient over rows in chunks of ROW_BLOCK: chunks computed apart and added in order give the same bits', () => {
    // What lets the engine split an expert's tokens across workers without changing a result (engine/chunk-board.ts).
    const rows = 2 * ROW_BLOCK + 77, m = 24, n = 40;
    const rng = new Rng('chunked gradient');
    const x = rng.fillNormal(k.allocF32(rows * m)), dy = rng.fillNormal(k.allocF32(rows * n));
    const whole = k.allocF32(m * n), apart = k.allocF32(m * n), part = k.allocF32(m * n);
    k.gemm('tn', m, n, rows, x, dy, whole, false);
    for (let r0 = 0; r0 < rows; r0 += ROW_BLOCK) {
      const r1 = Math.min(rows, r0 + ROW_BLOCK);
      k.gemm('tn', m, n, r1 - r0, x.subarray(r0 * m, r1 * m), dy.subarray(r0 * n, r1 * n), part, false);
      if (r0 === 0) apart.set(part);
      else k.add(part, apart, apart);
    }
    expect(Array.from(apart)).toEqual(Array.from(whole));
    // A run continuing an earlier one (accumulate) is the same too.
    k.gemm('tn', m, n, ROW_BLOCK, x, dy, part, false);
    k.gemm('tn', m, n, rows - ROW_BLOCK, x.subarray(ROW_BLOCK * m), dy.subarray(ROW_BLOCK * n), part, true);
    expect(Array.from(part)).toEqual(Array.from(whole));
  });

  it('gemm does not write past C', () => {
    const m = 5, n = 7, kk = 9;
    const rng = new Rng('bounds');
    const a = random(k, m * kk, rng), b = random(k, kk * n, rng);
    const c = k.allocF32(m * n + 16).fill(-3);
    k.gemm('nn', m, n, kk, a, b, c.subarray(0, m * n), false);
    expect(Array.from(c.subarray(m * n))).toEqual(new Array(16).fill(-3));
  });

  const unary = ['relu', 'gelu', 'silu'] as const;
  it.each(unary.map((f) => [f]))('%s and its derivative match the reference', (f) => {
    const rng = new Rng('act', f);
    for (const n of [1, 3, 17, 130, 4099]) {
      const x = random(k, n, rng, 3), dy = random(k, n, rng);
      x[0] = 0; // relu's kink: both sides must agree that f'(0) = 0
      const got = k.allocF32(n), want = new Float32Array(n);
      k[f](x, got);
      reference[f](new Float32Array(x), want);
      expect(relativeError(got, want), `${f} n=${n}`).toBeLessThan(1e-6);
      k[`${f}Backward`](x, dy, got);
      reference[`${f}Backward`](new Float32Array(x), new Float32Array(dy), want);
      expect(relativeError(got, want), `${f}' n=${n}`).toBeLessThan(1e-6);
    }
  });

  it('swiglu and its backward match the reference', () => {
    const rng = new Rng('swiglu');
    for (const n of [1, 17, 1030]) {
      const g = random(k, n, rng, 2), u = random(k, n, rng), dh = random(k, n, rng);
      const h = k.allocF32(n), dg = k.allocF32(n), du = k.allocF32(n);
      const rh = new Float32Array(n), rdg = new Float32Array(n), rdu = new Float32Array(n);
      k.swiglu(g, u, h);
      reference.swiglu(new Float32Array(g), new Float32Array(u), rh);
      k.swigluBackward(g, u, dh, dg, du);
      reference.swigluBackward(new Float32Array(g), new Float32Array(u), new Float32Array(dh), rdg, rdu);
      expect(relativeError(h, rh)).toBeLessThan(1e-6);
      expect(relativeError(dg, rdg)).toBeLessThan(1e-6);
      expect(relativeError(du, rdu)).toBeLessThan(1e-6);
    }
  });

  it('row softmax and log-sum-exp match the reference, including huge logits', () => {
    const rng = new Rng('rows');
    for (const [rows, cols] of [[1, 1], [3, 17], [130, 8], [7, 2], [5, 64], [4, 65]] as const) {
      const x = random(k, rows * cols, rng, 4);
      x[0] = 1000; // overflows exp unless the max is subtracted
      const got = k.allocF32(rows * cols), want = new Float32Array(rows * cols);
      const lse = k.allocF32(rows), rlse = new Float32Array(rows);
      k.softmaxRows(x, got, rows, cols, lse);
      reference.softmaxRows(new Float32Array(x), want, rows, cols, rlse);
      expect(relativeError(got, want)).toBeLessThan(1e-6);
      expect(relativeError(lse, rlse)).toBeLessThan(1e-6);
      const alone = k.allocF32(rows * cols);
      k.softmaxRows(x, alone, rows, cols);
      expect(Array.from(alone)).toEqual(Array.from(got)); // the same with or without lse
    }
    const nan = k.allocF32(6);
    nan.set([1, NaN, 2, 3, 4, 5]);
    k.softmaxRows(nan, nan, 1, 6);
    expect(Array.from(nan).every(Number.isNaN)).toBe(true); // a NaN logit is not hidden
  });

  it('gather, scatter-add and scatter rows, with and without a scale, repeated indices adding up', () => {
    const rng = new Rng('gather');
    for (const cols of [1, 3, 17, 130]) {
      const srcRows = 11, count = 9;
      const src = random(k, srcRows * cols, rng);
      const index = k.allocI32(count);
      index.set([0, 10, 3, 3, 7, 1, 10, 5, 2]);
      const scale = random(k, count, rng);
      for (const s of [undefined, scale]) {
        const got = k.allocF32(count * cols), want = new Float32Array(count * cols);
        k.gatherRows(src, index, count, cols, got, s);
        reference.gatherRows(new Float32Array(src), new Int32Array(index), count, cols, want, s && new Float32Array(s));
        expect(relativeError(got, want)).toBeLessThan(1e-7);
        const acc = random(k, srcRows * cols, rng), racc = new Float32Array(acc);
        k.scatterAddRows(got, index, count, cols, acc, s);
        reference.scatterAddRows(want, new Int32Array(index), count, cols, racc, s && new Float32Array(s));
        expect(relativeError(acc, racc)).toBeLessThan(1e-6);
        const distinct = k.allocI32(count); // scatterRows writes, so the rows must be distinct
        distinct.set([4, 0, 10, 3, 7, 1, 9, 5, 2]);
        const put = random(k, srcRows * cols, rng), rput = new Float32Array(put);
        k.scatterRows(got, distinct, count, cols, put, s);
        reference.scatterRows(want, new Int32Array(distinct), count, cols, rput, s && new Float32Array(s));
        expect(relativeError(put, rput)).toBeLessThan(1e-7);
        for (const untouched of [6, 8]) expect(put.slice(untouched * cols, (untouched + 1) * cols)).toEqual(rput.slice(untouched * cols, (untouched + 1) * cols));
      }
    }
  });

  it('layer and RMS norms, forward and backward, match the reference', () => {
    const rng = new Rng('norms');
    for (const [rows, cols] of [[1, 4], [7, 12], [130, 128]] as const) {
      const x = random(k, rows * cols, rng, 2), dy = random(k, rows * cols, rng);
      const gain = random(k, cols, rng), bias = random(k, cols, rng);
      const R = (a: Float32Array) => new Float32Array(a);
      for (const withBias of [false, true]) {
        const out = k.allocF32(rows * cols), rstd = k.allocF32(rows), mean = k.allocF32(rows);
        const rOut = new Float32Array(rows * cols), rRstd = new Float32Array(rows), rMean = new Float32Array(rows);
        k.layerNorm(x, gain, withBias ? bias : undefined, out, rstd, mean, rows, cols, 1e-5);
        reference.layerNorm(R(x), R(gain), withBias ? R(bias) : undefined, rOut, rRstd, rMean, rows, cols, 1e-5);
        expect(relativeError(out, rOut)).toBeLessThan(1e-5);
        const dx = k.allocF32(rows * cols), dGain = k.allocF32(cols).fill(0.5), dBias = k.allocF32(cols).fill(0);
        const rDx = new Float32Array(rows * cols), rDGain = new Float32Array(cols).fill(0.5), rDBias = new Float32Array(cols);
        k.layerNormBackward(x, gain, rstd, mean, dy, dx, dGain, withBias ? dBias : undefined, rows, cols);
        reference.layerNormBackward(R(x), R(gain), rRstd, rMean, R(dy), rDx, rDGain, withBias ? rDBias : undefined, rows, cols);
        expect(relativeError(dx, rDx)).toBeLessThan(1e-5);
        expect(relativeError(dGain, rDGain)).toBeLessThan(1e-5);
        if (withBias) expect(relativeError(dBias, rDBias)).toBeLessThan(1e-5);
      }
      const out = k.allocF32(rows * cols), rstd = k.allocF32(rows);
      const rOut = new Float32Array(rows * cols), rRstd = new Float32Array(rows);
      k.rmsNorm(x, gain, out, rstd, rows, cols, 1e-6);
      reference.rmsNorm(R(x), R(gain), rOut, rRstd, rows, cols, 1e-6);
      expect(relativeError(out, rOut)).toBeLessThan(1e-5);
      const dx = k.allocF32(rows * cols), dGain = k.allocF32(cols).fill(0);
      const rDx = new Float32Array(rows * cols), rDGain = new Float32Array(cols);
      k.rmsNormBackward(x, gain, rstd, dy, dx, dGain, rows, cols);
      reference.rmsNormBackward(R(x), R(gain), rRstd, R(dy), rDx, rDGain, rows, cols);
      expect(relativeError(dx, rDx)).toBeLessThan(1e-5);
      expect(relativeError(dGain, rDGain)).toBeLessThan(1e-5);
    }
    expect(() => k.rmsNorm(x3(k), x3(k), x3(k), x3(k), 1, 3, 1e-6)).toThrow(/3 columns; the vectorised norms need a multiple of 4/);
  });

  it('causal masking and the softmax backward match the reference', () => {
    const rng = new Rng('attn-rows');
    for (const T of [1, 3, 17, 64]) {
      const rows = 3 * T;
      const s = random(k, rows * T, rng), rs = new Float32Array(s);
      k.causalMaskRows(s, rows, T, 0.25);
      reference.causalMaskRows(rs, rows, T, 0.25);
      expect(Array.from(s)).toEqual(Array.from(rs));
      expect(s[1]).toBe(T > 1 ? -Infinity : s[1]); // row 0 sees only column 0
      k.softmaxRows(s, s, rows, T);
      for (let r = 0; r < rows; r++) for (let c = (r % T) + 1; c < T; c++) expect(s[r * T + c], `masked ${r},${c}`).toBe(0);
      const dp = random(k, rows * T, rng), out = k.allocF32(rows * T), rOut = new Float32Array(rows * T);
      k.softmaxBackwardRows(s, dp, out, rows, T, 0.5);
      reference.softmaxBackwardRows(new Float32Array(s), new Float32Array(dp), rOut, rows, T, 0.5);
      expect(relativeError(out, rOut)).toBeLessThan(1e-6);
    }
  });

  it('sum of squares and the AdamW update match the reference', () => {
    const rng = new Rng('adam');
    for (const n of [1, 3, 17, 1030, 5000]) {
      const w = random(k, n, rng), g = random(k, n, rng), m = random(k, n, rng, 0.1), v = k.allocF32(n);
      for (let i = 0; i < n; i++) v[i] = rng.uniform() * 0.01;
      expect(Math.abs(k.sumSquares(g) - reference.sumSquares(new Float32Array(g))) / reference.sumSquares(new Float32Array(g))).toBeLessThan(1e-6);
      const [rw, rm, rv] = [new Float32Array(w), new Float32Array(m), new Float32Array(v)];
      const h = { lr: 1e-3, beta1: 0.9, beta2: 0.99, correct1: 0.1, correct2: 0.01, decay: 0.9999, clip: 0.5, eps: 1e-8 };
      k.adamw(w, g, m, v, h);
      reference.adamw(rw, new Float32Array(g), rm, rv, h);
      expect(relativeError(w, rw), `w n=${n}`).toBeLessThan(1e-6);
      expect(relativeError(m, rm), `m n=${n}`).toBeLessThan(1e-6);
      expect(relativeError(v, rv), `v n=${n}`).toBeLessThan(1e-6);
    }
  });

  it('addBias and biasGrad equal the reference bit for bit (one add per element, rows in order), and check their arrays', () => {
    const rng = new Rng('bias');
    for (const [rows, cols, ld] of [[1, 1, 1], [4, 3, 7], [9, 17, 17], [33, 130, 140]] as const) {
      const x = random(k, (rows - 1) * ld + cols, rng), bias = random(k, cols, rng), dBias = random(k, cols, rng);
      const [rx, rb] = [new Float32Array(x), new Float32Array(dBias)];
      k.addBias(x, bias, rows, cols, ld);
      reference.addBias(rx, new Float32Array(bias), rows, cols, ld);
      expect(Array.from(x), `addBias ${rows}×${cols}`).toEqual(Array.from(rx));
      k.biasGrad(x, rows, cols, ld, dBias);
      reference.biasGrad(rx, rows, cols, ld, rb);
      expect(Array.from(dBias), `biasGrad ${rows}×${cols}`).toEqual(Array.from(rb));
    }
    for (const kernels of [k, reference]) {
      expect(() => kernels.addBias(k.allocF32(10), k.allocF32(4), 3, 4, 4)).toThrow(/addBias x: .*12/);
      expect(() => kernels.biasGrad(k.allocF32(16), 2, 4, 3, k.allocF32(4))).toThrow(/biasGrad ld: row stride 3 is shorter than a row of 4/);
      expect(() => kernels.biasGrad(k.allocF32(16), 2, 4, 4, k.allocF32(3))).toThrow(/biasGrad dBias/);
    }
  });

  it('elementwise add and multiply match the reference, in place too', () => {
    const rng = new Rng('elementwise');
    for (const n of [1, 3, 17, 1030]) {
      const x = random(k, n, rng), y = random(k, n, rng);
      for (const op of ['add', 'multiply'] as const) {
        const out = k.allocF32(n), want = new Float32Array(n);
        k[op](x, y, out);
        reference[op](new Float32Array(x), new Float32Array(y), want);
        expect(Array.from(out), `${op} n=${n}`).toEqual(Array.from(want));
        const inPlace = k.allocF32(n);
        inPlace.set(x);
        k[op](inPlace, y, inPlace);
        expect(Array.from(inPlace)).toEqual(Array.from(want));
      }
    }
  });

  it('rotary positions match the reference on strided blocks, and the inverse undoes them', () => {
    const rng = new Rng('rope');
    for (const [rows, time, groups, hd] of [[5, 5, 1, 2], [12, 4, 3, 6], [8, 8, 8, 32], [7, 3, 2, 10]] as const) {
      const stride = groups * hd + 3; // the blocks are columns of wider rows, which must stay untouched
      const half = hd / 2;
      const cos = random(k, time * half, rng), sin = random(k, time * half, rng);
      const x = random(k, rows * stride, rng), original = new Float32Array(x), want = new Float32Array(x);
      k.rope(x, rows, stride, groups, hd, time, cos, sin, false);
      reference.rope(want, rows, stride, groups, hd, time, new Float32Array(cos), new Float32Array(sin), false);
      expect(relativeError(x, want), `rows ${rows} hd ${hd}`).toBeLessThan(1e-6);
      for (let r = 0; r < rows; r++) for (let c = groups * hd; c < stride; c++) expect(x[r * stride + c]).toBe(original[r * stride + c]);
      // With unit-circle tables the inverse is the transpose: it restores x.
      for (let i = 0; i < cos.length; i++) { const a = rng.uniform() * 6; cos[i] = Math.cos(a); sin[i] = Math.sin(a); }
      x.set(original);
      k.rope(x, rows, stride, groups, hd, time, cos, sin, false);
      k.rope(x, rows, stride, groups, hd, time, cos, sin, true);
      expect(relativeError(x, original)).toBeLessThan(1e-6);
    }
    expect(() => k.rope(k.allocF32(8), 1, 8, 1, 3, 1, k.allocF32(2), k.allocF32(2), false)).toThrow(/headDim 3 is odd/);
    expect(() => k.rope(k.allocF32(8), 2, 8, 1, 4, 2, k.allocF32(2), k.allocF32(2), false)).toThrow(/rope x: needs 12/);
  });

  it('finds the first NaN or ±Inf wherever it is, and −1 when every value is finite', () => {
    const rng = new Rng('finite');
    for (const n of [1, 3, 4, 17, 1030]) {
      const x = random(k, n, rng, 1e30); // large but finite: v·0 must stay 0
      expect(k.firstNonFinite(x), `n=${n}`).toBe(-1);
      for (const bad of [NaN, Infinity, -Infinity]) {
        for (const at of new Set([0, n >> 1, n - 1])) {
          const y = k.allocF32(n);
          y.set(x);
          y[at] = bad;
          if (at + 1 < n) y[n - 1] = NaN; // a later bad value must not hide the first
          expect(k.firstNonFinite(y), `${bad} at ${at} of ${n}`).toBe(at);
          expect(k.firstNonFinite(y)).toBe(reference.firstNonFinite(new Float32Array(y)));
        }
      }
    }
  });

  it('rejects arrays outside its memory and out-of-range row indices by name', () => {
    const outside = new Float32Array(16);
    const inside = k.allocF32(16);
    expect(() => k.relu(outside, inside)).toThrow(/not in this backend's memory/);
    const index = k.allocI32(2);
    index.set([0, 4]);
    expect(() => k.gatherRows(inside, index, 2, 4, k.allocF32(8))).toThrow(/index\[1\] = 4 is outside 0\.\.3/);
    expect(() => k.gemm('nn', 4, 4, 4, inside, inside, k.allocF32(4), false)).toThrow(/gemm C: needs 16/);
  });
});

describe('Arena', () => {
  it('hands out aligned, disjoint regions, reuses freed ones and survives growth', () => {
    const arena = new Arena(1024);
    const a = arena.allocF32(10), b = arena.allocF32(100);
    expect(a.byteOffset % 64).toBe(0);
    expect(b.byteOffset).toBeGreaterThanOrEqual(a.byteOffset + 40);
    a.fill(1.5);
    const big = arena.allocF32(4 * 1024 * 1024); // forces the memory to grow
    expect(arena.owns(big) && arena.owns(a)).toBe(true);
    expect(a[9]).toBe(1.5); // growth of a shared memory never detaches old views
    arena.free(b);
    expect(() => arena.free(b)).toThrow(/already free/);
    const c = arena.allocF32(50);
    expect(c.byteOffset).toBe(b.byteOffset);
    expect(() => arena.free(new Float32Array(4))).toThrow(/not a view into this arena/);
    expect(arena.memory.buffer).toBeInstanceOf(SharedArrayBuffer);
  });

  it('returns freed memory so the same allocations repeat at the same offsets', () => {
    const arena = new Arena(1024);
    const first = [arena.allocF32(33), arena.allocF32(1000), arena.allocI32(7)];
    const offsets = first.map((v) => v.byteOffset);
    first.forEach((v) => arena.free(v));
    expect(arena.bytesInUse).toBe(0);
    expect([arena.allocF32(33), arena.allocF32(1000), arena.allocI32(7)].map((v) => v.byteOffset)).toEqual(offsets);
  });
});
