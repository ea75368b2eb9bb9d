// The native kernels against the WebAssembly kernels, bit for bit, on every ISA build this CPU
// runs: the FMA builds (avx512, avx2, neon) against wasm-relaxed-simd, the portable build against
// wasm-simd. Then what must never happen at the boundary (bad offsets, foreign views, a grown
// memory, a second thread, a broken addon) and a short training run on each side.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { Arena, GEMM_FORMS, type GemmForm, createKernels, formatKernelInfo, kernelInfo, kernelsFromSpec } from '../kernels/index.js';
import type { AdamHyper } from '../kernels/kernels.js';
import { NativeKernels, type NativeIsa, loadNative } from '../kernels/native/backend.js';
import { WasmKernels, type WasmVariant } from '../kernels/wasm/backend.js';
import type { ModelConfig, TrainConfig } from '../model/config.js';
import { AdamW } from '../model/optim.js';
import { Rng } from '../model/rng.js';
import { Transformer } from '../model/transformer.js';

const load = loadNative();
const ISAS: NativeIsa[] = load.ok ? load.addon.isas() : [];
const skipped = load.ok ? '' : ` (skipped: ${load.reason})`;
/** The wasm variant with the same rounding: fused multiply-add or not. */
const twin = (isa: NativeIsa): WasmVariant => (isa === 'portable' ? 'simd' : 'relaxed-simd');

interface Pair { native: NativeKernels; wasm: WasmKernels; arena: Arena }
function pair(isa: NativeIsa): Pair {
  const arena = new Arena(64 * 1024 * 1024);
  return { native: new NativeKernels(arena, isa), wasm: new WasmKernels(arena, twin(isa)), arena };
}

/** Bit for bit, except that any NaN matches any NaN. */
function expectSameBits(got: Float32Array, want: Float32Array, what: string): void {
  expect(got.length, what).toBe(want.length);
  const g = new Uint32Array(got.buffer, got.byteOffset, got.length), w = new Uint32Array(want.buffer, want.byteOffset, want.length);
  for (let i = 0; i < got.length; i++) {
    if (g[i] !== w[i] && !(Number.isNaN(got[i]) && Number.isNaN(want[i]))) {
      expect.fail(`${what}: element ${i} of ${got.length} is ${got[i]} (0x${g[i]!.toString(16)}), wasm gives ${want[i]} (0x${w[i]!.toString(16)})`);
    }
  }
}

const SPECIAL = [0, -0, 1e-39, -1e-39, 1e-30, -1e-30, 3e38, -3e38, 87.3, -87.3, 88.5, -88.5, 100, -100, 1, -1, 0.5, -0.5, 9.7, -9.7];
const NON_FINITE = [Infinity, -Infinity, NaN];

/** Mostly normal values at mixed scales, with zeros of both signs, extremes and (optionally) NaN and ±∞ among them. */
function values(n: number, rng: Rng, nonFinite = true): Float32Array {
  const out = new Float32Array(n);
  const specials = nonFinite ? [...SPECIAL, ...NON_FINITE] : SPECIAL;
  for (let i = 0; i < n; i++) {
    const u = rng.uniform();
    out[i] = u < 0.15 ? specials[Math.floor(rng.uniform() * specials.length)]! : rng.normal() * [1, 4, 1e-3][Math.floor(u * 30) % 3]!;
  }
  return out;
}

/** A copy of `data` in the arena. */
function put(p: Pair, data: Float32Array): Float32Array {
  const a = p.arena.allocF32(data.length);
  a.set(data);
  return a;
}

const LENGTHS = [0, 1, 3, 4, 5, 7, 16, 17, 63, 1023, 1024, 1027, 4099];

describe.skipIf(!load.ok)(`every kernel on every native ISA build, bit for bit against its wasm twin${skipped}`, () => {
  it(`covers every build this CPU runs: ${ISAS.join(', ')}`, () => {
    expect(ISAS.length).toBeGreaterThan(0);
    expect(ISAS.at(-1)).toBe('portable');
  });

  describe.each(ISAS.map((isa) => [isa] as const))('native-%s', (isa) => {
    const p = pair(isa);
    it(`is named native-${isa} and compared with wasm-${twin(isa)}`, () => {
      expect(p.native.name).toBe(`native-${isa}`);
      expect(p.wasm.name).toBe(`wasm-${twin(isa)}`);
    });

    describe.each(GEMM_FORMS.map((f) => [f] as const))('gemm %s', (form: GemmForm) => {
      // Shapes off every tile (12×32, 6×16, 6×8), single rows and columns, k about the 256-deep slices.
      const SHAPES: [number, number, number][] = [
        [1, 1, 1], [1, 37, 5], [37, 1, 300], [13, 33, 255], [12, 32, 256], [25, 47, 257], [7, 70, 1000], [30, 20, 2100],
        [64, 344, 128], [100, 65, 513], [6, 16, 3], [241, 9, 40], [5, 2100, 300], // past MC = 240 rows, NC = 2048 columns
      ];
      it.each(SHAPES)('m %i, n %i, k %i: overwrite and accumulate, plain and strided', (m, n, k) => {
        const rng = new Rng('gemm bits', isa, form, m, n, k);
        const [aRows, aCols] = form === 'tn' ? [k, m] : [m, k];
        const [bRows, bCols] = form === 'nt' ? [n, k] : [k, n];
        for (const strided of [false, true]) {
          const lda = aCols + (strided ? 5 : 0), ldb = bCols + (strided ? 3 : 0), ldc = n + (strided ? 7 : 0);
          const a = put(p, values(aRows * lda + 2, rng, false)), b = put(p, values(bRows * ldb + 1, rng, false));
          const start = values(m * ldc + 3, rng, false);
          for (const accumulate of [false, true]) {
            const got = put(p, start), want = put(p, start);
            const strides = { lda, ldb, ldc };
            p.native.gemm(form, m, n, k, a.subarray(2), b.subarray(1), got.subarray(3), accumulate, strides);
            p.wasm.gemm(form, m, n, k, a.subarray(2), b.subarray(1), want.subarray(3), accumulate, strides);
            expectSameBits(got, want, `${form} ${m}×${n}×${k} strided=${strided} accumulate=${accumulate}`);
            p.arena.free(got); p.arena.free(want);
          }
          p.arena.free(a); p.arena.free(b);
        }
      });
    });

    it('gemm with k = 0 zero-fills C, or leaves it when accumulating', () => {
      const c = p.arena.allocF32(6).fill(7), empty = p.arena.allocF32(0);
      p.native.gemm('nn', 2, 3, 0, empty, empty, c, true);
      expect(Array.from(c)).toEqual([7, 7, 7, 7, 7, 7]);
      p.native.gemm('nn', 2, 3, 0, empty, empty, c, false);
      expect(Array.from(c)).toEqual([0, 0, 0, 0, 0, 0]);
    });

    type Unary = 'relu' | 'gelu' | 'silu';
    type Binary = 'reluBackward' | 'geluBackward' | 'siluBackward' | 'swiglu' | 'add' | 'multiply';
    it.each(['relu', 'gelu', 'silu'] as const)('%s', (kernel: Unary) => {
      const rng = new Rng('unary', isa, kernel);
      for (const n of LENGTHS) {
        const x = put(p, values(n, rng)), got = p.arena.allocF32(n), want = p.arena.allocF32(n);
        p.native[kernel](x, got);
        p.wasm[kernel](x, want);
        expectSameBits(got, want, `${kernel} n=${n}`);
        p.native[kernel](got, got); // in place
        p.wasm[kernel](want, want);
        expectSameBits(got, want, `${kernel} in place n=${n}`);
      }
    });

    it.each(['reluBackward', 'geluBackward', 'siluBackward', 'swiglu', 'add', 'multiply'] as const)('%s', (kernel: Binary) => {
      const rng = new Rng('binary', isa, kernel);
      for (const n of LENGTHS) {
        const x = put(p, values(n, rng)), y = put(p, values(n, rng));
        const got = p.arena.allocF32(n), want = p.arena.allocF32(n);
        p.native[kernel](x, y, got);
        p.wasm[kernel](x, y, want);
        expectSameBits(got, want, `${kernel} n=${n}`);
      }
    });

    it('swigluBackward, apart and with dg, du aliasing dh', () => {
      const rng = new Rng('swigluBackward', isa);
      for (const n of LENGTHS) {
        const g = put(p, values(n, rng)), u = put(p, values(n, rng)), dh = values(n, rng);
        const out = [0, 1, 2, 3].map(() => p.arena.allocF32(n));
        const dhN = put(p, dh), dhW = put(p, dh);
        p.native.swigluBackward(g, u, dhN, out[0]!, out[1]!);
        p.wasm.swigluBackward(g, u, dhW, out[2]!, out[3]!);
        expectSameBits(out[0]!, out[2]!, `dg n=${n}`);
        expectSameBits(out[1]!, out[3]!, `du n=${n}`);
        p.native.swigluBackward(g, u, dhN, dhN, out[1]!);
        p.wasm.swigluBackward(g, u, dhW, dhW, out[3]!);
        expectSameBits(dhN, dhW, `dg = dh n=${n}`);
      }
    });

    it('softmaxRows and its lse, with −∞ entries and fully masked rows', () => {
      const rng = new Rng('softmax', isa);
      for (const cols of [1, 2, 3, 4, 5, 7, 8, 9, 33, 64, 100, 1000]) {
        const rows = 6;
        const x = values(rows * cols, rng, false);
        for (let i = 0; i < x.length; i++) if (rng.uniform() < 0.2) x[i] = -Infinity;
        x.fill(-Infinity, 0, cols); // a fully masked row
        for (let c = 0; c < cols; c++) x[cols + c] = x[cols + c]! * 30; // a row of large logits
        const xs = put(p, x);
        const got = p.arena.allocF32(x.length), want = p.arena.allocF32(x.length);
        const lseGot = p.arena.allocF32(rows), lseWant = p.arena.allocF32(rows);
        p.native.softmaxRows(xs, got, rows, cols, lseGot);
        p.wasm.softmaxRows(xs, want, rows, cols, lseWant);
        expectSameBits(got, want, `softmax cols=${cols}`);
        expectSameBits(lseGot, lseWant, `lse cols=${cols}`);
        const inPlaceN = put(p, x), inPlaceW = put(p, x);
        p.native.softmaxRows(inPlaceN, inPlaceN, rows, cols);
        p.wasm.softmaxRows(inPlaceW, inPlaceW, rows, cols);
        expectSameBits(inPlaceN, inPlaceW, `softmax in place cols=${cols}`);
      }
    });

    it('softmaxBackwardRows and causalMaskRows', () => {
      const rng = new Rng('softmax backward', isa);
      for (const cols of [1, 3, 4, 6, 17, 64, 130]) {
        const rows = 2 * cols + 1;
        const probs = put(p, values(rows * cols, rng, false)), dp = put(p, values(rows * cols, rng, false));
        const got = p.arena.allocF32(rows * cols), want = p.arena.allocF32(rows * cols);
        p.native.softmaxBackwardRows(probs, dp, got, rows, cols, 0.125);
        p.wasm.softmaxBackwardRows(probs, dp, want, rows, cols, 0.125);
        expectSameBits(got, want, `softmaxBackward cols=${cols}`);
        const s = values(rows * cols, rng), sN = put(p, s), sW = put(p, s);
        p.native.causalMaskRows(sN, rows, cols, 0.3);
        p.wasm.causalMaskRows(sW, rows, cols, 0.3);
        expectSameBits(sN, sW, `causalMask cols=${cols}`);
      }
    });

    it('gatherRows, scatterRows, scatterAddRows, with and without scales, repeated indices', () => {
      const rng = new Rng('rows', isa);
      for (const cols of [1, 3, 4, 5, 8, 37]) {
        const rows = 9, count = 14;
        const table = put(p, values(rows * cols, rng)), dense = put(p, values(count * cols, rng));
        const index = p.arena.allocI32(count);
        for (let i = 0; i < count; i++) index[i] = Math.floor(rng.uniform() * rows);
        const scale = put(p, values(count, rng, false));
        for (const s of [undefined, scale]) {
          const gN = p.arena.allocF32(count * cols), gW = p.arena.allocF32(count * cols);
          p.native.gatherRows(table, index, count, cols, gN, s);
          p.wasm.gatherRows(table, index, count, cols, gW, s);
          expectSameBits(gN, gW, `gather cols=${cols}`);
          for (const kernel of ['scatterRows', 'scatterAddRows'] as const) {
            const start = values(rows * cols, rng), oN = put(p, start), oW = put(p, start);
            p.native[kernel](dense, index, count, cols, oN, s);
            p.wasm[kernel](dense, index, count, cols, oW, s);
            expectSameBits(oN, oW, `${kernel} cols=${cols} scaled=${s !== undefined}`);
          }
        }
      }
    });

    it('addBias and biasGrad, on columns inside wider rows', () => {
      const rng = new Rng('bias', isa);
      for (const [rows, cols, pad] of [[1, 1, 0], [5, 3, 2], [7, 17, 0], [64, 100, 28], [3, 1027, 5]] as const) {
        const ld = cols + pad, x = values((rows - 1) * ld + cols, rng), bias = put(p, values(cols, rng)), start = values(cols, rng);
        const xN = put(p, x), xW = put(p, x);
        p.native.addBias(xN, bias, rows, cols, ld);
        p.wasm.addBias(xW, bias, rows, cols, ld);
        expectSameBits(xN, xW, `addBias ${rows}×${cols} ld=${ld}`);
        const gN = put(p, start), gW = put(p, start);
        p.native.biasGrad(xN, rows, cols, ld, gN);
        p.wasm.biasGrad(xW, rows, cols, ld, gW);
        expectSameBits(gN, gW, `biasGrad ${rows}×${cols} ld=${ld}`);
      }
    });

    it('rope, forward and inverse, on blocks inside wider rows', () => {
      const rng = new Rng('rope', isa);
      for (const [rows, groups, hd, time] of [[5, 3, 12, 3], [7, 2, 8, 7], [4, 1, 6, 2], [9, 2, 18, 4], [3, 4, 2, 5]] as const) {
        const stride = groups * hd + 3;
        const x = values(rows * stride, rng, false), cos = put(p, values(time * hd / 2, rng, false)), sin = put(p, values(time * hd / 2, rng, false));
        for (const inverse of [false, true]) {
          const xN = put(p, x), xW = put(p, x);
          p.native.rope(xN, rows, stride, groups, hd, time, cos, sin, inverse);
          p.wasm.rope(xW, rows, stride, groups, hd, time, cos, sin, inverse);
          expectSameBits(xN, xW, `rope hd=${hd} inverse=${inverse}`);
        }
      }
    });

    it('layerNorm, rmsNorm and their backwards, with and without bias', () => {
      const rng = new Rng('norms', isa);
      for (const cols of [4, 8, 36, 128, 132]) {
        const rows = 5;
        const x = values(rows * cols, rng, false);
        for (let c = 0; c < cols; c++) x[c] = x[c]! * 1e4 + 3e3; // a row with a large mean
        const xs = put(p, x), gain = put(p, values(cols, rng, false)), bias = put(p, values(cols, rng, false)), dy = put(p, values(rows * cols, rng, false));
        const out = () => [p.arena.allocF32(rows * cols), p.arena.allocF32(rows), p.arena.allocF32(rows)] as const;
        for (const b of [undefined, bias]) {
          const [yN, rN, mN] = out(), [yW, rW, mW] = out();
          p.native.layerNorm(xs, gain, b, yN, rN, mN, rows, cols, 1e-5);
          p.wasm.layerNorm(xs, gain, b, yW, rW, mW, rows, cols, 1e-5);
          expectSameBits(yN, yW, `layerNorm out cols=${cols}`);
          expectSameBits(rN, rW, `layerNorm rstd cols=${cols}`);
          expectSameBits(mN, mW, `layerNorm mean cols=${cols}`);
          const g0 = values(cols, rng, false), b0 = values(cols, rng, false);
          const [dgN, dgW, dbN, dbW] = [put(p, g0), put(p, g0), put(p, b0), put(p, b0)];
          const dxN = p.arena.allocF32(rows * cols), dxW = p.arena.allocF32(rows * cols);
          p.native.layerNormBackward(xs, gain, rN, mN, dy, dxN, dgN, b && dbN, rows, cols);
          p.wasm.layerNormBackward(xs, gain, rW, mW, dy, dxW, dgW, b && dbW, rows, cols);
          expectSameBits(dxN, dxW, `layerNormBackward dx cols=${cols}`);
          expectSameBits(dgN, dgW, `layerNormBackward dGain cols=${cols}`);
          expectSameBits(dbN, dbW, `layerNormBackward dBias cols=${cols}`);
        }
        const [yN, rN] = out(), [yW, rW] = out();
        p.native.rmsNorm(xs, gain, yN, rN, rows, cols, 1e-6);
        p.wasm.rmsNorm(xs, gain, yW, rW, rows, cols, 1e-6);
        expectSameBits(yN, yW, `rmsNorm out cols=${cols}`);
        expectSameBits(rN, rW, `rmsNorm rstd cols=${cols}`);
        const g0 = values(cols, rng, false), dgN = put(p, g0), dgW = put(p, g0);
        const dxN = p.arena.allocF32(rows * cols), dxW = p.arena.allocF32(rows * cols);
        p.native.rmsNormBackward(xs, gain, rN, dy, dxN, dgN, rows, cols);
        p.wasm.rmsNormBackward(xs, gain, rW, dy, dxW, dgW, rows, cols);
        expectSameBits(dxN, dxW, `rmsNormBackward dx cols=${cols}`);
        expectSameBits(dgN, dgW, `rmsNormBackward dGain cols=${cols}`);
      }
    });

    it('sumSquares (float32 blocks of 1024, float64 across them) and firstNonFinite', () => {
      const rng = new Rng('sums', isa);
      for (const n of [...LENGTHS, 2051, 5000]) {
        const x = put(p, values(n, rng, false));
        expect(Object.is(p.native.sumSquares(x), p.wasm.sumSquares(x)), `sumSquares n=${n}`).toBe(true);
        expect(p.native.firstNonFinite(x)).toBe(-1);
        for (const bad of NON_FINITE) {
          for (const at of [0, n >> 1, n - 1].filter((i) => i >= 0)) {
            const y = put(p, x);
            y[at] = bad;
            expect(p.native.firstNonFinite(y), `${bad} at ${at} of ${n}`).toBe(p.wasm.firstNonFinite(y));
          }
        }
      }
    });

    it('adamw: the vector body and the divided scalar tail, element by element', () => {
      const rng = new Rng('adamw', isa);
      const hypers: AdamHyper[] = [
        { lr: 1e-3, beta1: 0.9, beta2: 0.99, correct1: 1 - 0.9, correct2: 1 - 0.99, decay: 1 - 1e-4, clip: 1, eps: 1e-8 },
        { lr: 3e-4, beta1: 0.9, beta2: 0.95, correct1: 1 - 0.9 ** 7, correct2: 1 - 0.95 ** 7, decay: 1, clip: 0.37, eps: 1e-8 },
      ];
      for (const n of [1, 3, 4, 5, 7, 1027]) {
        for (const h of hypers) {
          const w = values(n, rng, false), g = values(n, rng, false), m = values(n, rng, false).map(Math.abs);
          const v = values(n, rng, false).map((x) => x * x);
          const [wN, gN, mN, vN] = [w, g, m, v].map((a) => put(p, a)) as [Float32Array, Float32Array, Float32Array, Float32Array];
          const [wW, mW, vW] = [w, m, v].map((a) => put(p, a)) as [Float32Array, Float32Array, Float32Array];
          p.native.adamw(wN, gN, mN, vN, h);
          p.wasm.adamw(wW, gN, mW, vW, h);
          expectSameBits(wN, wW, `adamw w n=${n}`);
          expectSameBits(mN, mW, `adamw m n=${n}`);
          expectSameBits(vN, vW, `adamw v n=${n}`);
        }
      }
    });
  });
});

describe(`native kernels at the boundary${skipped}`, () => {
  it.runIf(load.ok)('the offset-level calls reject bad offsets and lengths with a RangeError naming the argument', () => {
    if (!load.ok) return;
    const memory = new WebAssembly.Memory({ initial: 2, maximum: 16, shared: true });
    const k = load.addon.bind(ISAS[0]!, new Uint8Array(memory.buffer));
    const size = memory.buffer.byteLength;
    const cases: [string, () => void, RegExp][] = [
      ['misaligned offset', () => k.relu(2, 64, 4), /relu x: byte offset 2 is not a multiple of 4/],
      ['output past the end', () => k.relu(0, size - 8, 4), /relu out: 4 values at byte offset \d+ run past the registered memory of 131072 bytes/],
      ['length past the end', () => k.add(0, 64, 128, size), /add x: 131072 values/],
      ['bias rows past the end', () => k.addBias(0, 64, 1 << 14, 4, 8), /addBias x: 131068 values/],
      ['bias stride shorter than a row', () => k.biasGrad(0, 2, 8, 4, 64), /biasGrad ld: row stride 4 is shorter than a row of 8/],
      ['negative length', () => k.relu(0, 64, -1), /relu n: -1 is not an integer/],
      ['fractional offset', () => k.silu(1.5, 64, 4), /silu x: 1.5 is not an integer/],
      ['offset past 2^53', () => k.gelu(2 ** 60, 64, 4), /gelu x/],
      ['gemm C too short for its stride', () => k.gemm(0, 4, 4, 4, 0, 4, 64, 4, size - 32, 4, 0), /gemm C: 16 values/],
      ['gemm stride shorter than a row', () => k.gemm(2, 4, 8, 4, 0, 3, 64, 8, 256, 8, 0), /gemm lda: row stride 3 is shorter than a row of 4/],
      ['gemm unknown form', () => k.gemm(3, 1, 1, 1, 0, 1, 0, 1, 0, 1, 0), /gemm form: 3/],
      ['gather index outside the memory', () => {
        new Int32Array(memory.buffer, 1024, 2).set([0, 1 << 20]);
        k.gatherRows(0, 1024, 0, 2048, 2, 4);
      }, /gatherRows index\[1\]: row 1048576 lies outside the registered memory/],
      ['scatter negative index', () => {
        new Int32Array(memory.buffer, 1024, 1).set([-1]);
        k.scatterAddRows(0, 1024, 0, 2048, 1, 4);
      }, /scatterAddRows index\[0\]: row -1/],
      ['norm columns not a multiple of 4', () => k.rmsNorm(0, 64, 128, 256, 1, 6, 1e-6), /rmsNorm cols: 6 is not a multiple of 4/],
      ['rope with no positions', () => k.rope(0, 2, 8, 1, 4, 0, 64, 128, 0), /rope time: 0 positions for 2 rows/],
      ['rope odd headDim', () => k.rope(0, 1, 8, 1, 3, 1, 64, 128, 0), /rope headDim: 3 is odd/],
      ['optional lse out of range', () => k.softmaxRows(0, 64, size, 1, 4), /softmaxRows lse: 1 values/],
      ['sumSquares past the end', () => k.sumSquares(size - 4, 2), /sumSquares x/],
    ];
    for (const [what, call, message] of cases) {
      expect(call, what).toThrow(RangeError);
      expect(call, what).toThrow(message);
    }
    expect(() => (k.relu as (...args: number[]) => void)(0, 64), 'too few arguments').toThrow(TypeError);
    // Still alive, still computing.
    new Float32Array(memory.buffer, 0, 4).set([-1, 2, -3, 4]);
    k.relu(0, 64, 4);
    expect(Array.from(new Float32Array(memory.buffer, 64, 4))).toEqual([0, 2, 0, 4]);
  });

  it.runIf(load.ok)('a view that is not on the memory is a RangeError naming the argument', () => {
    const k = new NativeKernels(new Arena(), ISAS[0]);
    const inside = k.allocF32(8);
    expect(() => k.relu(new Float32Array(8), inside)).toThrow(RangeError);
    expect(() => k.relu(new Float32Array(8), inside)).toThrow(/relu x: the array of 8 is not in this backend's memory/);
    expect(() => k.gemm('nn', 2, 2, 2, inside, new Float32Array(4), inside, false)).toThrow(/gemm B: the array of 4 is not in this backend's memory/);
    const other = new Arena().allocF32(8);
    expect(() => k.add(inside, inside, other)).toThrow(/add out: the array of 8 is not in this backend's memory/);
  });

  it.runIf(load.ok)('follows the memory as it grows: arrays allocated after growth are computed in place', () => {
    const arena = new Arena(1024);
    const k = new NativeKernels(arena, ISAS[0]);
    const small = k.allocF32(4);
    small.set([-1, 1, -2, 2]);
    const big = k.allocF32(8 * 1024 * 1024); // grows the memory
    big.set([-5, 5, -6, 6], big.length - 4);
    k.relu(big.subarray(big.length - 4), big.subarray(big.length - 4));
    expect(Array.from(big.subarray(big.length - 4))).toEqual([0, 5, 0, 6]);
    k.relu(small, small);
    expect(Array.from(small)).toEqual([0, 1, 0, 2]);
  });

  it.runIf(load.ok)('two kernels objects on two memories in one thread each compute in their own', () => {
    const a = new NativeKernels(new Arena(), ISAS[0]), b = new NativeKernels(new Arena(), ISAS[0]);
    const xa = a.allocF32(4), xb = b.allocF32(4);
    expect(xa.byteOffset).toBe(xb.byteOffset); // the same offset, different memories
    xa.set([1, 2, 3, 4]); xb.set([10, 20, 30, 40]);
    a.add(xa, xa, xa);
    b.multiply(xb, xb, xb);
    expect(Array.from(xa)).toEqual([2, 4, 6, 8]);
    expect(Array.from(xb)).toEqual([100, 400, 900, 1600]);
  });

  it.runIf(load.ok)('a worker thread computes on the same memory at the same time, and one that attaches after growth sees it all', async () => {
    const arena = new Arena(1024 * 1024);
    const main = new NativeKernels(arena, ISAS[0]);
    const rng = new Rng('threads');
    const m = 256, k = 512, n = 384;
    const a = rng.fillNormal(main.allocF32(m * k)), b = rng.fillNormal(main.allocF32(k * n));
    const mine = main.allocF32(m * n), theirs = main.allocF32(m * n), want = main.allocF32(m * n);
    main.gemm('nn', m, n, k, a, b, want, false);
    const worker = new Worker(WORKER, { eval: true, workerData: { memory: arena.memory, spec: main.workerSpec(), dist: DIST } });
    const message = () => new Promise<{ ok: boolean; error?: string; size?: number }>((resolve, reject) => {
      worker.once('message', resolve);
      worker.once('error', reject);
    });
    await message(); // ready
    worker.postMessage({ kind: 'gemm', m, n, k, a: a.byteOffset, b: b.byteOffset, c: theirs.byteOffset, times: 20 });
    for (let i = 0; i < 20; i++) main.gemm('nn', m, n, k, a, b, mine, false);
    expect(await message()).toEqual({ ok: true });
    expectSameBits(mine, want, 'main thread');
    expectSameBits(theirs, want, 'worker thread');
    // Grow the memory, then have the (already running) worker compute past its old end.
    const far = main.allocF32(16 * 1024 * 1024);
    far.set([-1, 2, -3, 4], far.length - 4);
    worker.postMessage({ kind: 'relu', at: far.byteOffset + (far.length - 4) * 4 });
    expect(await message()).toEqual({ ok: true });
    expect(Array.from(far.subarray(far.length - 4))).toEqual([0, 2, 0, 4]);
    await worker.terminate();
    // A worker that attaches only now registers the grown size from the start.
    const late = new Worker(WORKER, { eval: true, workerData: { memory: arena.memory, spec: main.workerSpec(), dist: DIST } });
    await new Promise((resolve) => late.once('message', resolve));
    far.set([-7, 7, -8, 8], far.length - 4);
    late.postMessage({ kind: 'relu', at: far.byteOffset + (far.length - 4) * 4 });
    const reply = await new Promise((resolve) => late.once('message', resolve));
    expect(reply).toEqual({ ok: true });
    expect(Array.from(far.subarray(far.length - 4))).toEqual([0, 7, 0, 8]);
    await late.terminate();
  }, 60_000);
});

const DIST = new URL('../dist/kernels/index.js', import.meta.url).href;
/** A worker that builds the kernels from a spec (the compiled kernels/index.js) and runs what it is sent. */
const WORKER = `
const { parentPort, workerData } = require('node:worker_threads');
import(workerData.dist).then(({ Arena, kernelsFromSpec }) => {
  const arena = Arena.attach(workerData.memory);
  const kernels = kernelsFromSpec(arena, workerData.spec);
  parentPort.postMessage({ ready: kernels.name });
  parentPort.on('message', (job) => {
    try {
      if (job.kind === 'gemm') {
        const a = arena.f32At(job.a, job.m * job.k), b = arena.f32At(job.b, job.k * job.n), c = arena.f32At(job.c, job.m * job.n);
        for (let i = 0; i < job.times; i++) kernels.gemm('nn', job.m, job.n, job.k, a, b, c, false);
      } else {
        const x = arena.f32At(job.at, 4);
        kernels.relu(x, x);
      }
      parentPort.postMessage({ ok: true });
    } catch (error) {
      parentPort.postMessage({ ok: false, error: String(error) });
    }
  });
});
`;

describe('choosing the kernels', () => {
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-native-'));
  const corrupt = join(dir, 'corrupt.node');
  writeFileSync(corrupt, 'this is not a shared library');
  const missing = join(dir, 'missing.node');
  /** Builds the default kernels in a fresh process (the compiled dist/), under `env`. */
  const start = (env: Record<string, string>) => spawnSync(process.execPath, ['--input-type=module', '-e',
    `import { createKernels } from ${JSON.stringify(DIST)}; try { console.log(createKernels().name); } catch (e) { console.log('Error: ' + e.message); }`],
  { env: { ...process.env, SWITCHYARD_KERNELS: '', SWITCHYARD_NATIVE_ISA: '', ...env }, encoding: 'utf8' });

  it('a corrupt or missing addon is a reason, not a crash', () => {
    const bad = loadNative(corrupt);
    expect(bad.ok).toBe(false);
    if (!bad.ok) expect(bad.reason).toMatch(/^cannot load .*corrupt\.node: /);
    const gone = loadNative(missing);
    expect(gone.ok).toBe(false);
    if (!gone.ok) expect(gone.reason).toMatch(/missing\.node is missing/);
    expect(() => new NativeKernels(new Arena(), undefined, corrupt)).toThrow(/native kernels: cannot load/);
  });

  it('falls back to WebAssembly with one line saying why, where the addon is corrupt or missing', () => {
    for (const file of [corrupt, missing]) {
      const run = start({ SWITCHYARD_NATIVE_ADDON: file });
      expect(run.stdout.trim()).toMatch(/^wasm-(relaxed-)?simd$/);
      const lines = run.stderr.trim().split('\n');
      expect(lines).toHaveLength(1);
      expect(lines[0]).toMatch(/^switchyard: native kernels not used \((cannot load|.*is missing).*\); running wasm-/);
    }
  }, 60_000);

  it('SWITCHYARD_KERNELS forces a side; forcing native where it does not load names the reason', () => {
    const wasm = start({ SWITCHYARD_KERNELS: 'wasm' });
    expect(wasm.stdout.trim()).toMatch(/^wasm-(relaxed-)?simd$/);
    expect(wasm.stderr).toBe('');
    const broken = start({ SWITCHYARD_KERNELS: 'native', SWITCHYARD_NATIVE_ADDON: corrupt });
    expect(broken.stdout.trim()).toMatch(/^Error: native kernels: cannot load .*corrupt\.node/);
    expect(start({ SWITCHYARD_KERNELS: 'gpu' }).stdout.trim()).toBe('Error: SWITCHYARD_KERNELS=gpu: use native or wasm');
    if (load.ok) {
      const native = start({ SWITCHYARD_KERNELS: 'native' });
      expect(native.stdout.trim()).toBe(`native-${ISAS[0]}`);
      expect(start({}).stdout.trim()).toBe(`native-${ISAS[0]}`);
      expect(start({ SWITCHYARD_NATIVE_ISA: 'portable' }).stdout.trim()).toBe('native-portable');
      expect(start({ SWITCHYARD_NATIVE_ISA: 'mmx' }).stdout.trim()).toMatch(/^Error: SWITCHYARD_NATIVE_ISA=mmx: use one of/);
    }
  }, 60_000);

  it('kernelInfo says which kernels run and why, for switchyard info', () => {
    const info = kernelInfo();
    expect(info.kernels).toBe(createKernels().name);
    expect(['native-avx512', 'native-avx2', 'native-neon', 'native-portable', 'wasm-relaxed-simd', 'wasm-simd']).toContain(info.kernels);
    expect(info).toMatchObject({ node: process.version, arch: process.arch, cpu: { model: expect.any(String), cores: expect.any(Number) } });
    expect(formatKernelInfo(info)).toMatch(new RegExp(`^kernels: +${info.kernels} \\(`));
    if (load.ok) expect(info.native).toMatchObject({ loaded: true, isas: ISAS, isa: ISAS[0] });
    else expect(info.why).toContain(load.reason);
    const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
    const broken = spawnSync(process.execPath, [cli, 'info', '--json'], { env: { ...process.env, SWITCHYARD_NATIVE_ADDON: corrupt }, encoding: 'utf8' });
    const json = JSON.parse(broken.stdout) as ReturnType<typeof kernelInfo>;
    expect(json.kernels).toMatch(/^wasm-/);
    expect(json.native.loaded).toBe(false);
    expect(json.why).toMatch(/^native kernels not used: cannot load .*corrupt\.node/);
    const text = spawnSync(process.execPath, [cli, 'info'], { encoding: 'utf8' });
    expect(text.status).toBe(0);
    expect(text.stdout).toMatch(new RegExp(`^kernels: +${info.kernels} \\(.*\ncpu: .*\nnative: .*\n(.*\n)?wasm: .*\nnode: .*\ngpu: +gpu\.js: .*\nauto: .+`));
  }, 60_000);

  it('a worker builds the same kernels from the spec', () => {
    const wasm = createKernels({ backend: 'wasm' });
    const spec = wasm.workerSpec();
    expect(spec).toMatchObject({ backend: 'wasm', variant: (wasm as WasmKernels).variant });
    expect(kernelsFromSpec(Arena.attach(wasm.arena.memory), spec).name).toBe(wasm.name);
    if (load.ok) {
      const native = createKernels({ backend: 'native' });
      expect(native.workerSpec()).toEqual({ backend: 'native', isa: ISAS[0] });
      expect(kernelsFromSpec(Arena.attach(native.arena.memory), native.workerSpec()).name).toBe(native.name);
    }
  });
});

function batchOf(config: ModelConfig, rng: Rng) {
  const B = 3, T = config.context;
  const tokens = Int32Array.from({ length: B * (T + 1) }, () => rng.nextU32() % config.vocabSize);
  return {
    batch: B, context: T,
    inputs: Int32Array.from({ length: B * T }, (_, i) => tokens[Math.floor(i / T) * (T + 1) + (i % T)]!),
    targets: Int32Array.from({ length: B * T }, (_, i) => tokens[Math.floor(i / T) * (T + 1) + (i % T) + 1]!),
  };
}

describe.skipIf(!load.ok)(`training gives wasm's losses bit for bit${skipped}`, () => {
  describe.each(ISAS.map((isa) => [isa] as const))('on native-%s', (isa) => {
    const BASE: ModelConfig = {
      vocabSize: 29, context: 16, layers: 2, heads: 2, dModel: 32, dFF: 48, norm: 'layernorm', positions: 'learned',
      activation: 'gelu', bias: true, dropout: 0.1, numExperts: 4, sparseStep: 2, topK: 1, capacityFactor: 1.25,
      normalizeTopK: true, auxLossCoef: 0.01, zLossCoef: 0.001, routerJitter: 0.01, expertDropout: 0, expertDtype: 'f32',
    };
    const TRAIN: TrainConfig = {
      batch: 3, steps: 6, learningRate: 1e-2, minLearningRate: 3e-4, warmupSteps: 2, beta1: 0.9, beta2: 0.99, weightDecay: 0.1,
      gradClip: 1, evalEvery: 5, evalBatches: 1, seed: 5,
    };
    it.each([
      ['gpt layout: layernorm, learned positions, gelu, biases', {}],
      ['qwen2-moe layout: rmsnorm, rope, swiglu, top-2', { norm: 'rmsnorm', positions: 'rope', activation: 'swiglu', bias: false, topK: 2 }],
      ['relu, dense', { activation: 'relu', numExperts: 0 }],
    ] as [string, Partial<ModelConfig>][])('%s', async (_name, overrides) => {
      const config = { ...BASE, ...overrides };
      const losses = [];
      for (const kernels of [new NativeKernels(new Arena(), isa), new WasmKernels(new Arena(), twin(isa))]) {
        const model = new Transformer(kernels, config, { seed: 11 });
        const optimizer = new AdamW(kernels, model.params.list, TRAIN);
        const run: number[] = [];
        for (let step = 0; step < TRAIN.steps; step++) {
          const batch = batchOf(config, new Rng('batch', step % 2)); // two batches, alternating: the loss falls
          run.push((await model.forward(batch, { training: true, step })).loss);
          await model.backward();
          optimizer.step(step);
          model.syncComputeCopies();
        }
        await model.dispose();
        losses.push(run);
      }
      expect(losses[0]).toEqual(losses[1]);
      expect(losses[0]![TRAIN.steps - 1]).toBeLessThan(losses[0]![0]!);
    }, 60_000);
  });
});
