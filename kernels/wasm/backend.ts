// The WebAssembly SIMD backend: the AssemblyScript module in ./assembly, compiled at install into
// two variants (plain SIMD, and relaxed SIMD whose f32x4.relaxed_madd becomes a fused multiply-add),
// instantiated against an Arena's shared memory.
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import type { Arena } from '../arena.js';
import { type AdamHyper, type GemmForm, type GemmStrides, type Kernels, checkRope, gemmLayout, requireLength } from '../kernels.js';

export type WasmVariant = 'simd' | 'relaxed-simd';
export const WASM_VARIANTS: readonly WasmVariant[] = ['simd', 'relaxed-simd'];

const FORM_CODE: Record<GemmForm, number> = { nn: 0, nt: 1, tn: 2 };

interface KernelExports {
  gemm(form: number, m: number, n: number, k: number, a: number, lda: number, b: number, ldb: number,
    c: number, ldc: number, accumulate: number, scratch: number): void;
  gemmScratchBytes(): number;
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
  rope(x: number, rows: number, stride: number, groups: number, hd: number, time: number, cos: number, sin: number, inverse: number): void;
  adamw(w: number, g: number, m: number, v: number, n: number, lr: number, beta1: number, beta2: number,
    correct1: number, correct2: number, decay: number, clip: number, eps: number): void;
}

const modules = new Map<WasmVariant, WebAssembly.Module | null>();

/**
 * The compiled module of a variant, or null where this Node cannot run it. Node 20 compiles
 * relaxed SIMD only behind a V8 flag, which must be set before the module is compiled.
 */
export function kernelModule(variant: WasmVariant): WebAssembly.Module | null {
  if (!modules.has(variant)) {
    if (variant === 'relaxed-simd') setFlagsFromString('--experimental-wasm-relaxed-simd');
    const file = new URL(`./build/kernels-${variant === 'simd' ? 'simd' : 'relaxed'}.wasm`, import.meta.url);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(file));
    } catch (cause) {
      throw new Error(`wasm kernels: ${file.pathname} is missing; run \`npm run build\``, { cause });
    }
    modules.set(variant, WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null);
  }
  return modules.get(variant)!;
}

export class WasmKernels implements Kernels {
  readonly name: string;
  readonly variant: WasmVariant;
  readonly arena: Arena;
  private readonly k: KernelExports;
  private readonly scratch: number;

  /** `scratch`: byte offset of this instance's GEMM scratch; allocated from the arena when omitted. */
  constructor(arena: Arena, variant: WasmVariant, scratch?: number) {
    const module = kernelModule(variant);
    if (!module) throw new Error(`wasm kernels: this Node.js (${process.version}) cannot compile the ${variant} variant`);
    const instance = new WebAssembly.Instance(module, { env: { memory: arena.memory } });
    this.k = instance.exports as unknown as KernelExports;
    this.arena = arena;
    this.variant = variant;
    this.name = `wasm-${variant}`;
    this.scratch = scratch ?? arena.allocBytes(this.k.gemmScratchBytes());
  }

  /** Bytes of GEMM scratch each instance needs. */
  get scratchBytes(): number { return this.k.gemmScratchBytes(); }

  allocF32(length: number): Float32Array { return this.arena.allocF32(length); }
  allocI32(length: number): Int32Array { return this.arena.allocI32(length); }
  free(array: Float32Array | Int32Array): void { this.arena.free(array); }

  gemm(form: GemmForm, m: number, n: number, k: number, a: Float32Array, b: Float32Array, c: Float32Array,
    accumulate: boolean, strides?: GemmStrides): void {
    const code = FORM_CODE[form];
    if (code === undefined) throw new Error(`gemm: unknown form '${form}' (use nn, nt or tn)`);
    const { lda, ldb, ldc } = gemmLayout(form, m, n, k, a, b, c, strides);
    this.k.gemm(code, m, n, k, this.ptr(a), lda, this.ptr(b), ldb, this.ptr(c), ldc, accumulate ? 1 : 0, this.scratch);
  }

  relu(x: Float32Array, out: Float32Array): void { this.unary(this.k.relu, x, out); }
  gelu(x: Float32Array, out: Float32Array): void { this.unary(this.k.gelu, x, out); }
  silu(x: Float32Array, out: Float32Array): void { this.unary(this.k.silu, x, out); }
  reluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { this.binary(this.k.reluBackward, x, dy, dx); }
  geluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { this.binary(this.k.geluBackward, x, dy, dx); }
  siluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { this.binary(this.k.siluBackward, x, dy, dx); }
  swiglu(g: Float32Array, u: Float32Array, out: Float32Array): void { this.binary(this.k.swiglu, g, u, out); }
  add(x: Float32Array, y: Float32Array, out: Float32Array): void { this.binary(this.k.add, x, y, out); }
  multiply(x: Float32Array, y: Float32Array, out: Float32Array): void { this.binary(this.k.multiply, x, y, out); }

  rope(x: Float32Array, rows: number, stride: number, groups: number, headDim: number, time: number,
    cos: Float32Array, sin: Float32Array, inverse: boolean): void {
    checkRope(x, rows, stride, groups, headDim, time, cos, sin);
    this.k.rope(this.ptr(x), rows, stride, groups, headDim, time, this.ptr(cos), this.ptr(sin), inverse ? 1 : 0);
  }

  swigluBackward(g: Float32Array, u: Float32Array, dh: Float32Array, dg: Float32Array, du: Float32Array): void {
    const n = dh.length;
    for (const [what, v] of [['g', g], ['u', u], ['dg', dg], ['du', du]] as const) requireLength(`swigluBackward ${what}`, v, n);
    this.k.swigluBackward(this.ptr(g), this.ptr(u), this.ptr(dh), this.ptr(dg), this.ptr(du), n);
  }

  softmaxRows(x: Float32Array, out: Float32Array, rows: number, cols: number, lse?: Float32Array): void {
    requireLength('softmaxRows x', x, rows * cols);
    requireLength('softmaxRows out', out, rows * cols);
    if (lse) requireLength('softmaxRows lse', lse, rows);
    if (cols > 0) this.k.softmaxRows(this.ptr(x), this.ptr(out), lse ? this.ptr(lse) : 0, rows, cols);
  }

  gatherRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array,
    scale?: Float32Array): void {
    checkRows('gatherRows', index, count, cols, scale, out.length, src.length);
    this.k.gatherRows(this.ptr(src), this.ptr(index), scale ? this.ptr(scale) : 0, this.ptr(out), count, cols);
  }

  scatterAddRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array,
    scale?: Float32Array): void {
    checkRows('scatterAddRows', index, count, cols, scale, src.length, out.length);
    this.k.scatterAddRows(this.ptr(src), this.ptr(index), scale ? this.ptr(scale) : 0, this.ptr(out), count, cols);
  }

  scatterRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array, scale?: Float32Array): void {
    checkRows('scatterRows', index, count, cols, scale, src.length, out.length);
    this.k.scatterRows(this.ptr(src), this.ptr(index), scale ? this.ptr(scale) : 0, this.ptr(out), count, cols);
  }

  softmaxBackwardRows(p: Float32Array, dp: Float32Array, out: Float32Array, rows: number, cols: number, scale: number): void {
    for (const a of [p, dp, out]) requireLength('softmaxBackwardRows', a, rows * cols);
    this.k.softmaxBackwardRows(this.ptr(p), this.ptr(dp), this.ptr(out), rows, cols, scale);
  }

  causalMaskRows(s: Float32Array, rows: number, cols: number, scale: number): void {
    requireLength('causalMaskRows', s, rows * cols);
    this.k.causalMaskRows(this.ptr(s), rows, cols, scale);
  }

  layerNorm(x: Float32Array, gain: Float32Array, bias: Float32Array | undefined, out: Float32Array, rstd: Float32Array,
    mean: Float32Array, rows: number, cols: number, eps: number): void {
    this.checkNorm('layerNorm', [x, out], [gain, ...(bias ? [bias] : [])], [rstd, mean], rows, cols);
    this.k.layerNorm(this.ptr(x), this.ptr(gain), bias ? this.ptr(bias) : 0, this.ptr(out), this.ptr(rstd), this.ptr(mean), rows, cols, eps);
  }

  layerNormBackward(x: Float32Array, gain: Float32Array, rstd: Float32Array, mean: Float32Array, dy: Float32Array,
    dx: Float32Array, dGain: Float32Array, dBias: Float32Array | undefined, rows: number, cols: number): void {
    this.checkNorm('layerNormBackward', [x, dy, dx], [gain, dGain, ...(dBias ? [dBias] : [])], [rstd, mean], rows, cols);
    this.k.layerNormBackward(this.ptr(x), this.ptr(gain), this.ptr(rstd), this.ptr(mean), this.ptr(dy), this.ptr(dx),
      this.ptr(dGain), dBias ? this.ptr(dBias) : 0, rows, cols);
  }

  rmsNorm(x: Float32Array, gain: Float32Array, out: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void {
    this.checkNorm('rmsNorm', [x, out], [gain], [rstd], rows, cols);
    this.k.rmsNorm(this.ptr(x), this.ptr(gain), this.ptr(out), this.ptr(rstd), rows, cols, eps);
  }

  rmsNormBackward(x: Float32Array, gain: Float32Array, rstd: Float32Array, dy: Float32Array, dx: Float32Array,
    dGain: Float32Array, rows: number, cols: number): void {
    this.checkNorm('rmsNormBackward', [x, dy, dx], [gain, dGain], [rstd], rows, cols);
    this.k.rmsNormBackward(this.ptr(x), this.ptr(gain), this.ptr(rstd), this.ptr(dy), this.ptr(dx), this.ptr(dGain), rows, cols);
  }

  sumSquares(x: Float32Array): number {
    return this.k.sumSquares(this.ptr(x), x.length);
  }

  firstNonFinite(x: Float32Array): number {
    return this.k.firstNonFinite(this.ptr(x), x.length);
  }

  adamw(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamHyper): void {
    for (const a of [g, m, v]) requireLength('adamw', a, w.length);
    this.k.adamw(this.ptr(w), this.ptr(g), this.ptr(m), this.ptr(v), w.length, h.lr, h.beta1, h.beta2,
      h.correct1, h.correct2, h.decay, h.clip, h.eps);
  }

  private checkNorm(what: string, matrices: Float32Array[], vectors: Float32Array[], perRow: Float32Array[], rows: number, cols: number): void {
    if (cols % 4 !== 0) throw new RangeError(`${what}: ${cols} columns; the vectorised norms need a multiple of 4`);
    for (const a of matrices) requireLength(what, a, rows * cols);
    for (const a of vectors) requireLength(what, a, cols);
    for (const a of perRow) requireLength(what, a, rows);
  }

  private unary(f: (x: number, out: number, n: number) => void, x: Float32Array, out: Float32Array): void {
    requireLength('activation input', x, out.length);
    f(this.ptr(x), this.ptr(out), out.length);
  }

  private binary(f: (x: number, y: number, out: number, n: number) => void, x: Float32Array, y: Float32Array,
    out: Float32Array): void {
    requireLength('activation input', x, out.length);
    requireLength('activation input', y, out.length);
    f(this.ptr(x), this.ptr(y), this.ptr(out), out.length);
  }

  private ptr(array: Float32Array | Int32Array): number {
    if (!this.arena.owns(array)) {
      throw new Error(`${this.name}: array of ${array.length} is not in this backend's memory; allocate it with allocF32/allocI32`);
    }
    return array.byteOffset;
  }
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

/**
 * The variant to run: relaxed SIMD wherever this Node compiles it and the CPU fuses multiply-add
 * (every arm64 CPU; x86-64 with FMA3, read from /proc/cpuinfo on Linux), else plain SIMD.
 * Measured on this project's Ice Lake machines, FMA runs GEMM 1.5–1.6× faster (docs/kernels.md);
 * without FMA, V8 lowers relaxed_madd to a multiply and an add, no faster than plain SIMD.
 * Decided from the machine, not by timing it, so every run on a machine rounds the same way
 * (a run's loss curve is reproducible) however busy the machine is. SWITCHYARD_WASM_VARIANT overrides.
 */
export function fastestVariant(): WasmVariant {
  const forced = process.env.SWITCHYARD_WASM_VARIANT;
  if (forced !== undefined && forced !== '') {
    if (!(WASM_VARIANTS as readonly string[]).includes(forced)) {
      throw new Error(`SWITCHYARD_WASM_VARIANT=${forced}: use one of ${WASM_VARIANTS.join(', ')}`);
    }
    return forced as WasmVariant;
  }
  return kernelModule('relaxed-simd') && cpuHasFma() ? 'relaxed-simd' : 'simd';
}

function cpuHasFma(): boolean {
  if (process.arch === 'arm64') return true;
  if (process.arch !== 'x64') return false;
  try {
    return /^flags\s*:.*\bfma\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return true; // not Linux: every x86-64 Mac and current PC CPU has FMA3
  }
}
