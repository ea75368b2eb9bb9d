// The kernels that compute in an Arena's shared memory, whichever code runs them: the argument
// checks live here, once, over an offset-level function table that each backend provides (the
// WebAssembly instance's exports, or the native addon's functions). A check failing here throws
// before any backend code runs, with the same message on every backend.
import type { Arena } from './arena.js';
import { type AdamHyper, type GemmForm, type GemmStrides, type Kernels, checkBias, checkRope, gemmLayout, requireLength } from './kernels.js';

const FORM_CODE: Record<GemmForm, number> = { nn: 0, nt: 1, tn: 2 };
const GRAD = ['x', 'dy', 'dx'] as const, SUM = ['x', 'y', 'out'] as const;

/**
 * The kernels by byte offset into the memory, in the WebAssembly exports' argument order. An
 * optional array (lse, scale, bias, dBias) is offset 0 when absent: the arena never hands out
 * the first page. Booleans are 0 or 1.
 */
export interface OffsetKernels {
  gemm(form: number, m: number, n: number, k: number, a: number, lda: number, b: number, ldb: number,
    c: number, ldc: number, accumulate: number): void;
  relu(x: number, out: number, n: number): void;
  reluBackward(x: number, dy: number, dx: number, n: number): void;
  gelu(x: number, out: number, n: number): void;
  geluBackward(x: number, dy: number, dx: number, n: number): void;
  silu(x: number, out: number, n: number): void;
  siluBackward(x: number, dy: number, dx: number, n: number): void;
  swiglu(g: number, u: number, out: number, n: number): void;
  swigluBackward(g: number, u: number, dh: number, dg: number, du: number, n: number): void;
  softmaxRows(x: number, out: number, lse: number, rows: number, cols: number): void;
  gatherRows(src: number, index: number, scale: number, out: number, count: number, cols: number): void;
  scatterAddRows(src: number, index: number, scale: number, out: number, count: number, cols: number): void;
  scatterRows(src: number, index: number, scale: number, out: number, count: number, cols: number): void;
  softmaxBackwardRows(p: number, dp: number, out: number, rows: number, cols: number, scale: number): void;
  causalMaskRows(s: number, rows: number, cols: number, scale: number): void;
  layerNorm(x: number, gain: number, bias: number, out: number, rstd: number, mean: number, rows: number, cols: number, eps: number): void;
  layerNormBackward(x: number, gain: number, rstd: number, mean: number, dy: number, dx: number, dGain: number, dBias: number,
    rows: number, cols: number): void;
  rmsNorm(x: number, gain: number, out: number, rstd: number, rows: number, cols: number, eps: number): void;
  rmsNormBackward(x: number, gain: number, rstd: number, dy: number, dx: number, dGain: number, rows: number, cols: number): void;
  sumSquares(x: number, n: number): number;
  firstNonFinite(x: number, n: number): number;
  add(x: number, y: number, out: number, n: number): void;
  multiply(x: number, y: number, out: number, n: number): void;
  addBias(x: number, bias: number, rows: number, cols: number, ld: number): void;
  biasGrad(dy: number, rows: number, cols: number, ld: number, dBias: number): void;
  rope(x: number, rows: number, stride: number, groups: number, hd: number, time: number, cos: number, sin: number, inverse: number): void;
  adamw(w: number, g: number, m: number, v: number, n: number, lr: number, beta1: number, beta2: number,
    correct1: number, correct2: number, decay: number, clip: number, eps: number): void;
}

/**
 * What a worker thread needs to build the same kernels on the same memory (it is plain data, for
 * workerData or postMessage): the backend and its build, and for WebAssembly the byte offset of
 * the worker's own GEMM scratch in the arena. See `kernelsFromSpec` (kernels/index.ts).
 */
export type KernelSpec =
  | { backend: 'native'; isa: 'avx512' | 'avx2' | 'neon' | 'portable' }
  | { backend: 'wasm'; variant: 'simd' | 'relaxed-simd'; scratch: number };

export abstract class ArenaKernels implements Kernels {
  abstract readonly name: string;
  readonly arena: Arena;
  private readonly k: OffsetKernels;

  constructor(arena: Arena, k: OffsetKernels) {
    this.arena = arena;
    this.k = k;
  }

  /**
   * The spec from which `kernelsFromSpec` builds these kernels in a worker thread on the same
   * memory. For WebAssembly it allocates the worker's GEMM scratch, so call it in the thread that
   * owns the arena, once per worker.
   */
  abstract workerSpec(): KernelSpec;

  allocF32(length: number): Float32Array { return this.arena.allocF32(length); }
  allocI32(length: number): Int32Array { return this.arena.allocI32(length); }
  free(array: Float32Array | Int32Array): void { this.arena.free(array); }

  gemm(form: GemmForm, m: number, n: number, k: number, a: Float32Array, b: Float32Array, c: Float32Array,
    accumulate: boolean, strides?: GemmStrides): void {
    const code = FORM_CODE[form];
    if (code === undefined) throw new Error(`gemm: unknown form '${form}' (use nn, nt or tn)`);
    const { lda, ldb, ldc } = gemmLayout(form, m, n, k, a, b, c, strides);
    this.k.gemm(code, m, n, k, this.ptr('gemm', 'A', a), lda, this.ptr('gemm', 'B', b), ldb, this.ptr('gemm', 'C', c), ldc, accumulate ? 1 : 0);
  }

  relu(x: Float32Array, out: Float32Array): void { this.unary('relu', this.k.relu, x, out); }
  gelu(x: Float32Array, out: Float32Array): void { this.unary('gelu', this.k.gelu, x, out); }
  silu(x: Float32Array, out: Float32Array): void { this.unary('silu', this.k.silu, x, out); }
  reluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { this.binary('reluBackward', GRAD, this.k.reluBackward, x, dy, dx); }
  geluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { this.binary('geluBackward', GRAD, this.k.geluBackward, x, dy, dx); }
  siluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { this.binary('siluBackward', GRAD, this.k.siluBackward, x, dy, dx); }
  swiglu(g: Float32Array, u: Float32Array, out: Float32Array): void { this.binary('swiglu', ['g', 'u', 'out'], this.k.swiglu, g, u, out); }
  add(x: Float32Array, y: Float32Array, out: Float32Array): void { this.binary('add', SUM, this.k.add, x, y, out); }
  multiply(x: Float32Array, y: Float32Array, out: Float32Array): void { this.binary('multiply', SUM, this.k.multiply, x, y, out); }

  addBias(x: Float32Array, bias: Float32Array, rows: number, cols: number, ld: number): void {
    checkBias('addBias', 'x', x, bias, rows, cols, ld);
    if (rows > 0 && cols > 0) this.k.addBias(this.ptr('addBias', 'x', x), this.ptr('addBias', 'bias', bias), rows, cols, ld);
  }

  biasGrad(dy: Float32Array, rows: number, cols: number, ld: number, dBias: Float32Array): void {
    checkBias('biasGrad', 'dy', dy, dBias, rows, cols, ld);
    if (rows > 0 && cols > 0) this.k.biasGrad(this.ptr('biasGrad', 'dy', dy), rows, cols, ld, this.ptr('biasGrad', 'dBias', dBias));
  }

  rope(x: Float32Array, rows: number, stride: number, groups: number, headDim: number, time: number,
    cos: Float32Array, sin: Float32Array, inverse: boolean): void {
    checkRope(x, rows, stride, groups, headDim, time, cos, sin);
    if (rows > 0 && !(time >= 1)) throw new RangeError(`rope: ${rows} rows need at least one position, got time ${time}`);
    this.k.rope(this.ptr('rope', 'x', x), rows, stride, groups, headDim, time, this.ptr('rope', 'cos', cos), this.ptr('rope', 'sin', sin), inverse ? 1 : 0);
  }

  swigluBackward(g: Float32Array, u: Float32Array, dh: Float32Array, dg: Float32Array, du: Float32Array): void {
    const n = dh.length;
    for (const [what, v] of [['g', g], ['u', u], ['dg', dg], ['du', du]] as const) requireLength(`swigluBackward ${what}`, v, n);
    this.k.swigluBackward(this.ptr('swigluBackward', 'g', g), this.ptr('swigluBackward', 'u', u), this.ptr('swigluBackward', 'dh', dh),
      this.ptr('swigluBackward', 'dg', dg), this.ptr('swigluBackward', 'du', du), n);
  }

  softmaxRows(x: Float32Array, out: Float32Array, rows: number, cols: number, lse?: Float32Array): void {
    requireLength('softmaxRows x', x, rows * cols);
    requireLength('softmaxRows out', out, rows * cols);
    if (lse) requireLength('softmaxRows lse', lse, rows);
    if (cols > 0) {
      this.k.softmaxRows(this.ptr('softmaxRows', 'x', x), this.ptr('softmaxRows', 'out', out), lse ? this.ptr('softmaxRows', 'lse', lse) : 0, rows, cols);
    }
  }

  gatherRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array,
    scale?: Float32Array): void {
    checkRows('gatherRows', index, count, cols, scale, out.length, src.length);
    this.k.gatherRows(this.ptr('gatherRows', 'src', src), this.ptr('gatherRows', 'index', index),
      scale ? this.ptr('gatherRows', 'scale', scale) : 0, this.ptr('gatherRows', 'out', out), count, cols);
  }

  scatterAddRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array,
    scale?: Float32Array): void {
    checkRows('scatterAddRows', index, count, cols, scale, src.length, out.length);
    this.k.scatterAddRows(this.ptr('scatterAddRows', 'src', src), this.ptr('scatterAddRows', 'index', index),
      scale ? this.ptr('scatterAddRows', 'scale', scale) : 0, this.ptr('scatterAddRows', 'out', out), count, cols);
  }

  scatterRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array, scale?: Float32Array): void {
    checkRows('scatterRows', index, count, cols, scale, src.length, out.length);
    this.k.scatterRows(this.ptr('scatterRows', 'src', src), this.ptr('scatterRows', 'index', index),
      scale ? this.ptr('scatterRows', 'scale', scale) : 0, this.ptr('scatterRows', 'out', out), count, cols);
  }

  softmaxBackwardRows(p: Float32Array, dp: Float32Array, out: Float32Array, rows: number, cols: number, scale: number): void {
    for (const a of [p, dp, out]) requireLength('softmaxBackwardRows', a, rows * cols);
    this.k.softmaxBackwardRows(this.ptr('softmaxBackwardRows', 'p', p), this.ptr('softmaxBackwardRows', 'dp', dp),
      this.ptr('softmaxBackwardRows', 'out', out), rows, cols, scale);
  }

  causalMaskRows(s: Float32Array, rows: number, cols: number, scale: number): void {
    requireLength('causalMaskRows', s, rows * cols);
    if (rows > 0 && cols > 0) this.k.causalMaskRows(this.ptr('causalMaskRows', 's', s), rows, cols, scale);
  }

  layerNorm(x: Float32Array, gain: Float32Array, bias: Float32Array | undefined, out: Float32Array, rstd: Float32Array,
    mean: Float32Array, rows: number, cols: number, eps: number): void {
    checkNorm('layerNorm', [x, out], [gain, ...(bias ? [bias] : [])], [rstd, mean], rows, cols);
    this.k.layerNorm(this.ptr('layerNorm', 'x', x), this.ptr('layerNorm', 'gain', gain), bias ? this.ptr('layerNorm', 'bias', bias) : 0,
      this.ptr('layerNorm', 'out', out), this.ptr('layerNorm', 'rstd', rstd), this.ptr('layerNorm', 'mean', mean), rows, cols, eps);
  }

  layerNormBackward(x: Float32Array, gain: Float32Array, rstd: Float32Array, mean: Float32Array, dy: Float32Array,
    dx: Float32Array, dGain: Float32Array, dBias: Float32Array | undefined, rows: number, cols: number): void {
    checkNorm('layerNormBackward', [x, dy, dx], [gain, dGain, ...(dBias ? [dBias] : [])], [rstd, mean], rows, cols);
    const at = 'layerNormBackward';
    this.k.layerNormBackward(this.ptr(at, 'x', x), this.ptr(at, 'gain', gain), this.ptr(at, 'rstd', rstd), this.ptr(at, 'mean', mean),
      this.ptr(at, 'dy', dy), this.ptr(at, 'dx', dx), this.ptr(at, 'dGain', dGain), dBias ? this.ptr(at, 'dBias', dBias) : 0, rows, cols);
  }

  rmsNorm(x: Float32Array, gain: Float32Array, out: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void {
    checkNorm('rmsNorm', [x, out], [gain], [rstd], rows, cols);
    this.k.rmsNorm(this.ptr('rmsNorm', 'x', x), this.ptr('rmsNorm', 'gain', gain), this.ptr('rmsNorm', 'out', out), this.ptr('rmsNorm', 'rstd', rstd),
      rows, cols, eps);
  }

  rmsNormBackward(x: Float32Array, gain: Float32Array, rstd: Float32Array, dy: Float32Array, dx: Float32Array,
    dGain: Float32Array, rows: number, cols: number): void {
    checkNorm('rmsNormBackward', [x, dy, dx], [gain, dGain], [rstd], rows, cols);
    const at = 'rmsNormBackward';
    this.k.rmsNormBackward(this.ptr(at, 'x', x), this.ptr(at, 'gain', gain), this.ptr(at, 'rstd', rstd), this.ptr(at, 'dy', dy),
      this.ptr(at, 'dx', dx), this.ptr(at, 'dGain', dGain), rows, cols);
  }

  sumSquares(x: Float32Array): number {
    return this.k.sumSquares(this.ptr('sumSquares', 'x', x), x.length);
  }

  firstNonFinite(x: Float32Array): number {
    return this.k.firstNonFinite(this.ptr('firstNonFinite', 'x', x), x.length);
  }

  adamw(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamHyper): void {
    for (const a of [g, m, v]) requireLength('adamw', a, w.length);
    this.k.adamw(this.ptr('adamw', 'w', w), this.ptr('adamw', 'g', g), this.ptr('adamw', 'm', m), this.ptr('adamw', 'v', v), w.length,
      h.lr, h.beta1, h.beta2, h.correct1, h.correct2, h.decay, h.clip, h.eps);
  }

  /** The byte offset of `array` in the arena's memory; `kernel` and `arg` name it in the error. */
  protected ptr(kernel: string, arg: string, array: Float32Array | Int32Array): number {
    if (!this.arena.owns(array)) {
      throw new RangeError(`${kernel} ${arg}: the array of ${array.length} is not in this backend's memory; allocate it with allocF32/allocI32`);
    }
    return array.byteOffset;
  }

  private unary(what: string, f: (x: number, out: number, n: number) => void, x: Float32Array, out: Float32Array): void {
    const n = out.length;
    if (x.length < n) requireLength(`${what} x`, x, n);
    f(this.ptr(what, 'x', x), this.ptr(what, 'out', out), n);
  }

  private binary(what: string, names: readonly [string, string, string], f: (x: number, y: number, out: number, n: number) => void,
    x: Float32Array, y: Float32Array, out: Float32Array): void {
    const n = out.length;
    if (x.length < n) requireLength(`${what} ${names[0]}`, x, n);
    if (y.length < n) requireLength(`${what} ${names[1]}`, y, n);
    f(this.ptr(what, names[0], x), this.ptr(what, names[1], y), this.ptr(what, names[2], out), n);
  }
}

function checkNorm(what: string, matrices: Float32Array[], vectors: Float32Array[], perRow: Float32Array[], rows: number, cols: number): void {
  if (cols % 4 !== 0) throw new RangeError(`${what}: ${cols} columns; the vectorised norms need a multiple of 4`);
  for (const a of matrices) requireLength(what, a, rows * cols);
  for (const a of vectors) requireLength(what, a, cols);
  for (const a of perRow) requireLength(what, a, rows);
}

/**
 * Row kernels address memory through the index list, so every index is range-checked here, once:
 * the dense side needs `count` rows, the indexed side `indexedLength / cols` rows.
 */
function checkRows(what: string, index: Int32Array, count: number, cols: number, scale: Float32Array | undefined,
  denseLength: number, indexedLength: number): void {
  requireLength(`${what} index`, index, count);
  if (scale) requireLength(`${what} scale`, scale, count);
  if (denseLength < count * cols) throw new RangeError(`${what}: ${count} rows of ${cols} do not fit an array of ${denseLength}`);
  const rows = cols > 0 ? Math.floor(indexedLength / cols) : Infinity;
  for (let i = 0; i < count; i++) {
    const row = index[i]!;
    if (!(row >= 0 && row < rows)) throw new RangeError(`${what}: index[${i}] = ${row} is outside 0..${rows - 1}`);
  }
}
