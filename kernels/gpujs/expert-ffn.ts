// The expert FFN (model/ffn.ts's ffnForward and ffnBackward over all hidden units) on gpu.js. Each direction is one
// gpu.js pipeline (`createPipeline`): the kernels are chained on the device, so a, g and h never
// come back between the FFN's steps; one upload of the inputs, one readback of the results.
//
// A gpu.js kernel's output size is fixed when it is built, and an expert's token count changes
// every step, so rows are padded with zeros up to one of a few sizes (at most 1/8 more rows).
// Zero rows are exact: act(0)·W = 0 forward, and they add nothing to the weight gradients.
import type { IKernelRunShortcut, IPipelineRunShortcut, KernelFunction, KernelOutput, KernelVariable } from 'gpu.js';
import { type GpujsMode, type GpujsModule, isGpuMode, loadGpujs } from './device.js';
import * as fn from './functions.js';

type Matrices = Record<string, KernelOutput>;

/** The FFN's shape: d model width, f hidden units. */
export interface FfnDims { d: number; f: number; activation: 'relu' | 'gelu' | 'swiglu' }
/** Weights [d×f], [f×d] and (swiglu) [d×f]. */
export interface FfnMatrices { wIn: Float32Array; wOut: Float32Array; wGate?: Float32Array }
/** One block of n rows: x and dy [n×d] in, a, g, h, mask [n×f], y and dx [n×d] (the layout of model/expert.ts). */
export interface FfnRows {
  x: Float32Array; a: Float32Array; g?: Float32Array; h: Float32Array; mask?: Float32Array;
  y: Float32Array; dy: Float32Array; dx: Float32Array;
}

/** Rows padded to the next size with at most 4 significant bits (16, 18, 20, …, 240, 256, 288, …). */
export function paddedRows(n: number): number {
  if (n <= 16) return 16;
  const step = 2 ** (Math.floor(Math.log2(n)) - 3);
  return Math.ceil(n / step) * step;
}

const CACHED_PIPELINES = 32;

export class GpujsExpertFfn {
  private readonly pipelines = new Map<string, IPipelineRunShortcut>();

  private constructor(private readonly gpujs: GpujsModule, private readonly gpu: InstanceType<GpujsModule['GPU']>,
    readonly mode: GpujsMode) {}

  /** On `mode`, or on the fastest mode this machine has. */
  static async create(mode?: GpujsMode): Promise<GpujsExpertFfn> {
    const { gpujs, probe } = await loadGpujs();
    const chosen = mode ?? probe.modes[0]!;
    if (!probe.modes.includes(chosen)) {
      throw new Error(`gpu.js mode '${chosen}' is not available here (available: ${probe.modes.join(', ')}; ${probe.missing.join('; ')})`);
    }
    return new GpujsExpertFfn(gpujs, new gpujs.GPU({ mode: chosen }), chosen);
  }

  get onGpu(): boolean { return isGpuMode(this.mode); }

  /** Reads b.x (and b.mask); writes b.a (and b.g), b.h after the mask, and b.y. */
  async forward(s: FfnDims, w: FfnMatrices, b: FfnRows): Promise<void> {
    const n = b.x.length / s.d, rows = paddedRows(n);
    const run = this.pipeline(`forward ${s.activation} ${rows}×${s.d}×${s.f}${b.mask ? ' masked' : ''}`, () => this.buildForward(s, rows, !!b.mask));
    const args = [this.rows(b.x, n, rows, s.d), this.matrix(w.wIn, s.d, s.f), this.matrix(w.wOut, s.f, s.d)];
    if (w.wGate) args.push(this.matrix(w.wGate, s.d, s.f));
    if (b.mask) args.push(this.rows(b.mask, n, rows, s.f));
    const r = await run(...args) as Matrices;
    readRows(r.a!, b.a, n, s.f);
    if (b.g) readRows(r.g!, b.g, n, s.f);
    readRows(r.h!, b.h, n, s.f);
    readRows(r.out!, b.y, n, s.d);
  }

  /** Reads b.x, b.a (b.g), b.h, b.mask and b.dy; overwrites `grads` and writes b.dx. */
  async backward(s: FfnDims, w: FfnMatrices, b: FfnRows, grads: FfnMatrices): Promise<void> {
    const n = b.x.length / s.d, rows = paddedRows(n);
    const run = this.pipeline(`backward ${s.activation} ${rows}×${s.d}×${s.f}${b.mask ? ' masked' : ''}`, () => this.buildBackward(s, rows, !!b.mask));
    const args = [
      this.rows(b.x, n, rows, s.d), this.rows(b.a, n, rows, s.f), this.rows(b.h, n, rows, s.f), this.rows(b.dy, n, rows, s.d),
      this.matrix(w.wIn, s.d, s.f), this.matrix(w.wOut, s.f, s.d),
    ];
    if (b.g) args.push(this.rows(b.g, n, rows, s.f), this.matrix(w.wGate!, s.d, s.f));
    if (b.mask) args.push(this.rows(b.mask, n, rows, s.f));
    const r = await run(...args) as Matrices;
    readRows(r.dWOut!, grads.wOut, s.f, s.d);
    readRows(r.dWIn!, grads.wIn, s.d, s.f);
    if (grads.wGate) readRows(r.dWGate!, grads.wGate, s.d, s.f);
    readRows(r.dx!, b.dx, n, s.d);
  }

  /**
   * A single GEMM in this mode, for the kernel benchmarks: C [m×n] from A and B as `form` reads them,
   * read back. Await it: on webgpu a kernel call answers with a promise.
   */
  gemm(form: 'nn' | 'nt' | 'tn', m: number, n: number, k: number): (a: Float32Array, b: Float32Array) => Promise<KernelOutput> {
    const body = { nn: fn.matmulNN, nt: fn.matmulNT, tn: fn.matmulTN }[form];
    const kernel = this.kernel(body, m, n, k);
    const [aRows, aCols] = form === 'tn' ? [k, m] : [m, k];
    const [bRows, bCols] = form === 'nt' ? [n, k] : [k, n];
    return async (a, b) => await (kernel(this.matrix(a, aRows, aCols), this.matrix(b, bRows, bCols)) as KernelOutput | Promise<KernelOutput>);
  }

  /** How gpu.js ran each pipeline built so far: its `executorKind` ('fused-sync' on webasm keeps the intermediates in one memory). */
  executors(): string[] {
    return [...this.pipelines.values()].map((p) => p.pipeline.executorKind);
  }

  async destroy(): Promise<void> {
    this.pipelines.clear();
    await this.gpu.destroy();
  }

  private buildForward(s: FfnDims, rows: number, masked: boolean): IPipelineRunShortcut {
    const { d, f } = s;
    const up = this.kernel(fn.matmulNN, rows, f, d), down = this.kernel(fn.matmulNN, rows, d, f);
    const mask = this.kernel(fn.multiply, rows, f);
    const act = this.kernel(s.activation === 'swiglu' ? fn.swiglu : s.activation === 'gelu' ? fn.gelu : fn.relu, rows, f);
    const swiglu = s.activation === 'swiglu';
    return this.gpu.createPipeline(withArity(3 + (swiglu ? 1 : 0) + (masked ? 1 : 0), function (...m: KernelVariable[]) {
      const [x, wIn, wOut] = m as [KernelVariable, KernelVariable, KernelVariable];
      const gated = swiglu ? 1 : 0;
      const a = up(x, wIn);
      const g = swiglu ? up(x, m[3]!) : undefined;
      let h = swiglu ? act(g!, a) : act(a);
      if (masked) h = mask(h, m[3 + gated]!);
      const out = down(h, wOut);
      return swiglu ? { a, g, h, out } : { a, h, out };
    }), { threads: false });
  }

  private buildBackward(s: FfnDims, rows: number, masked: boolean): IPipelineRunShortcut {
    const { d, f } = s;
    const swiglu = s.activation === 'swiglu';
    const dWeightUp = this.kernel(fn.matmulTN, d, f, rows), dWeightDown = this.kernel(fn.matmulTN, f, d, rows);
    const dHidden = this.kernel(fn.matmulNT, rows, f, d);
    const dInput = swiglu ? this.kernel(fn.matmulNTPair, rows, d, f) : this.kernel(fn.matmulNT, rows, d, f);
    const mask = this.kernel(fn.multiply, rows, f);
    const actBackward = this.kernel(s.activation === 'gelu' ? fn.geluBackward : fn.reluBackward, rows, f);
    const gateBackward = this.kernel(fn.swigluBackwardGate, rows, f), upBackward = this.kernel(fn.swigluBackwardUp, rows, f);
    return this.gpu.createPipeline(withArity(6 + (swiglu ? 2 : 0) + (masked ? 1 : 0), function (...m: KernelVariable[]) {
      const [x, a, h, dOut, wIn, wOut] = m as KernelVariable[] as [KernelVariable, KernelVariable, KernelVariable, KernelVariable, KernelVariable, KernelVariable];
      const dWOut = dWeightDown(h, dOut);
      let dh = dHidden(dOut, wOut);
      if (masked) dh = mask(dh, m[swiglu ? 8 : 6]!);
      if (swiglu) {
        const [g, wGate] = [m[6]!, m[7]!];
        const dg = gateBackward(g, a, dh);
        const da = upBackward(g, dh);
        return { dWOut, dWIn: dWeightUp(x, da), dWGate: dWeightUp(x, dg), dx: dInput(da, wIn, dg, wGate) };
      }
      const da = actBackward(a, dh);
      return { dWOut, dWIn: dWeightUp(x, da), dx: dInput(da, wIn) };
    }), { threads: false });
  }

  private kernel(body: fn.KernelBody, rows: number, cols: number, inner?: number): IKernelRunShortcut {
    return this.gpu.createKernel(body as unknown as KernelFunction, {
      output: [cols, rows], precision: 'single', tactic: 'precision', ...(inner !== undefined && { constants: { inner } }),
      ...((body === fn.gelu || body === fn.geluBackward) && { functions: [fn.erf] }),
    });
  }

  private pipeline(key: string, build: () => IPipelineRunShortcut): IPipelineRunShortcut {
    let p = this.pipelines.get(key);
    if (!p) {
      if (this.pipelines.size >= CACHED_PIPELINES) {
        const [oldest, evicted] = this.pipelines.entries().next().value!;
        this.pipelines.delete(oldest);
        void evicted.pipeline.destroy();
      }
      p = build();
      this.pipelines.set(key, p);
    }
    return p;
  }

  private matrix(values: Float32Array, rows: number, cols: number) {
    return new this.gpujs.Input(values as unknown as number[], [cols, rows]);
  }

  /** The first n rows of `values`, zero-padded to `rows`. */
  private rows(values: Float32Array, n: number, rows: number, cols: number) {
    if (n === rows) return this.matrix(values, rows, cols);
    const padded = new Float32Array(rows * cols);
    padded.set(values.subarray(0, n * cols));
    return this.matrix(padded, rows, cols);
  }
}

/** gpu.js gives an orchestration function one handle per declared parameter (`fn.length`). */
function withArity<F extends (...args: KernelVariable[]) => unknown>(parameters: number, orchestrate: F): F {
  return Object.defineProperty(orchestrate, 'length', { value: parameters });
}

/** Copies the first `rows` rows of a kernel's [rows][cols] result into a flat array. */
function readRows(result: KernelOutput, into: Float32Array, rows: number, cols: number): void {
  const matrix = result as ArrayLike<ArrayLike<number>>;
  for (let r = 0; r < rows; r++) into.set(matrix[r]!, r * cols);
}
