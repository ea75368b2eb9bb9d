// The Switch FFN layer, in process: router → dispatch (gather each expert's tokens) → experts →
// combine (each expert writes gate × output into its tokens' slots; a token sums its k slots;
// dropped tokens get 0, the residual carries them). Exactly
// docs/SPEC.md, forward and backward. The engine (engine/) runs the same router and expert
// functions with the experts spread over worker threads.
import type { Kernels } from '../kernels/index.js';
import { type SwitchLayerConfig, type SwitchLayerOptions, switchLayerConfig } from './config.js';
import {
  type Assignment, type ExpertBuffers, type ExpertShape, type ExpertWeights, expertBackward, expertBlockLength, expertBuffers,
  expertForward, gateGradients,
} from './expert.js';
import { Rng } from './rng.js';
import { type RouterBackwardArrays, type Routing, route, routerBackward } from './router.js';
import { Workspace } from './workspace.js';

export interface SwitchWeights {
  router: Float32Array; // [d×E]
  wIn: Float32Array; // [E×d×f]
  wOut: Float32Array; // [E×f×d]
  wGate?: Float32Array; // [E×d×f], swiglu only
}

/** What every forward reports (SPEC, "Statistics"). */
export interface SwitchStats {
  expertIndex: Int32Array; // [T×k]
  kept: Uint8Array; // [T×k]
  tokensPerExpert: Int32Array; // [E], first choices before drops
  keptPerExpert: Int32Array; // [E]
  capacity: number;
  dropped: number;
  routerProbs: Float32Array; // [T×E]
  auxLoss: number;
  zLoss: number;
}

export interface ForwardOptions {
  /** Enables router jitter and expert dropout. */
  training?: boolean;
  /** Keys this step's random draws. */
  step?: number;
}

export interface SwitchLayerInit {
  /** Seeds the initial weights and every training-time draw. */
  seed?: number;
  /** This layer's index in a model, so each layer draws its own numbers. */
  layerIndex?: number;
}

/** One expert's share of a step: its tokens, their gates and slots, and its buffers. */
export interface ExpertTask extends Assignment {
  expert: number;
  block: Float32Array; // one allocation that `buffers` are views of
  buffers: ExpertBuffers;
}

/** What a step keeps between its phases. All arrays live in the kernels' memory. */
export interface StepState {
  step: number;
  training: boolean;
  x: Float32Array;
  xr: Float32Array;
  jitter?: Float32Array;
  routing: Routing;
  /** Milliseconds the router's forward took: the engine reports it apart from dispatch and combine. */
  routeMs: number;
  tasks: ExpertTask[];
  /** [T·k×d] each slot's gate · expert output, zero where dropped; for k = 1 this is y itself. */
  ySlots: Float32Array;
  y: Float32Array;
  dy?: Float32Array;
  dGates?: Float32Array;
  /** [T·k×d] each slot's expert input gradient; for k = 1 this is dx itself. */
  dxSlots?: Float32Array;
  /** [T×E] d loss / d logits. */
  dLogits?: Float32Array;
  /** [T×d] the router's share of dx. */
  dxRouter?: Float32Array;
  dx?: Float32Array;
}

export class SwitchLayer {
  readonly config: SwitchLayerConfig;
  readonly weights: SwitchWeights;
  /** Written by each backward: d loss / d weights, loss = Σ y ⊙ dy + aux + z. */
  readonly grads: SwitchWeights;
  private readonly kernels: Kernels;
  readonly seed: number;
  readonly layerIndex: number;
  private readonly ws: Workspace;
  /** The current step, from beginForward until the next one. */
  state: StepState | undefined;

  constructor(kernels: Kernels, options: SwitchLayerOptions, init: SwitchLayerInit = {}) {
    this.config = switchLayerConfig(options);
    this.kernels = kernels;
    this.seed = init.seed ?? 0;
    this.layerIndex = init.layerIndex ?? 0;
    this.ws = new Workspace(kernels);
    this.weights = this.allocWeights();
    this.grads = this.allocWeights();
    this.initialize();
  }

  /**
   * The paper's reduced initialization: truncated normal with std = sqrt(0.1 / fan_in).
   */
  initialize(): void {
    const { dModel: d, dFF: f } = this.config;
    const fill = (a: Float32Array, fanIn: number, name: string) => {
      const rng = new Rng(this.seed, 'init', this.layerIndex, name);
      const std = Math.sqrt(0.1 / fanIn);
      for (let i = 0; i < a.length; i++) a[i] = rng.truncatedNormal(std);
    };
    fill(this.weights.router, d, 'router');
    fill(this.weights.wIn, d, 'w_in');
    fill(this.weights.wOut, f, 'w_out');
    if (this.weights.wGate) fill(this.weights.wGate, d, 'w_gate');
  }

  /** Copies weights in, checking each one's length and values. */
  setWeights(w: { router: ArrayLike<number>; wIn: ArrayLike<number>; wOut: ArrayLike<number>; wGate?: ArrayLike<number> }): void {
    for (const name of ['router', 'wIn', 'wOut', 'wGate'] as const) {
      const dst = this.weights[name];
      const src = w[name];
      if (!dst) {
        if (src) throw new Error(`switch layer: wGate given but the activation is ${this.config.activation} (only swiglu has a gate)`);
        continue;
      }
      if (!src) throw new Error(`switch layer: weight ${name} is missing`);
      if (src.length !== dst.length) {
        throw new RangeError(`switch layer: weight ${name} has ${src.length} values, expected ${dst.length} (${this.shapeOf(name)})`);
      }
      // Checked as float32 (1e39 is finite as a double, Inf as a float) before it replaces the weight.
      const staged = this.kernels.allocF32(src.length);
      try {
        staged.set(src);
        requireFinite(this.kernels, `weight ${name}`, staged);
        dst.set(staged);
      } finally {
        this.kernels.free(staged);
      }
    }
  }

  /** The expert's own slices of the stacked weights (views, not copies). */
  expertWeights(e: number, of: SwitchWeights = this.weights): ExpertWeights {
    const { dModel: d, dFF: f } = this.config;
    const n = d * f;
    return {
      wIn: of.wIn.subarray(e * n, (e + 1) * n),
      wOut: of.wOut.subarray(e * n, (e + 1) * n),
      ...(of.wGate && { wGate: of.wGate.subarray(e * n, (e + 1) * n) }),
    };
  }

  get shape(): ExpertShape {
    return { d: this.config.dModel, f: this.config.dFF, activation: this.config.activation };
  }

  /** y [T×d] for x [T×d], every expert in this thread. The result stays valid until the next forward. */
  forward(x: ArrayLike<number>, tokens: number, options: ForwardOptions = {}): { y: Float32Array; stats: SwitchStats } {
    for (const task of this.beginForward(x, tokens, options)) this.runForward(task);
    return this.endForward();
  }

  /**
   * Given dy = d loss / d y [T×d], writes the weight gradients into `grads` and returns
   * d loss / d x [T×d] (valid until the next forward). The aux and z losses enter with weight 1.
   */
  backward(dy: ArrayLike<number>): Float32Array {
    const tasks = this.beginBackward(dy);
    this.runRouterBackward();
    for (const task of tasks) this.runBackward(task);
    return this.endBackward();
  }

  /** Router and dispatch plan: what each expert must compute. The engine runs the tasks on workers. */
  beginForward(x: ArrayLike<number>, tokens: number, options: ForwardOptions = {}): ExpertTask[] {
    const c = this.config;
    const d = c.dModel;
    if (!Number.isInteger(tokens) || tokens <= 0) throw new RangeError(`switch layer: tokens must be a positive integer, got ${tokens}`);
    if (x.length !== tokens * d) {
      throw new RangeError(`switch layer: x has ${x.length} values, expected tokens × dModel = ${tokens} × ${d} = ${tokens * d}`);
    }
    this.ws.release();
    this.state = undefined;
    const ws = this.ws;
    const training = options.training ?? false;
    const step = options.step ?? 0;

    const xs = ws.copy(x);
    requireFinite(this.kernels, 'input x', xs);
    let xr = xs;
    let jitter: Float32Array | undefined;
    if (training && c.routerJitter > 0) {
      // The router sees x ⊙ u, u ~ Uniform(1−ε, 1+ε); the experts see the clean x.
      jitter = new Rng(this.seed, step, this.layerIndex, 'jitter').fillUniform(ws.scratch(xs.length), 1 - c.routerJitter, 1 + c.routerJitter);
      xr = ws.scratch(xs.length);
      this.kernels.multiply(xs, jitter, xr);
    }
    const routeStart = performance.now();
    const routing = route(ws, c, xr, tokens, this.weights.router);
    const routeMs = performance.now() - routeStart;
    const dropout = training && c.expertDropout > 0;
    const tasks: ExpertTask[] = [];
    for (let e = 0; e < c.numExperts; e++) {
      const start = routing.offsets[e]!, n = routing.offsets[e + 1]! - start;
      if (n === 0) continue;
      const block = ws.scratch(expertBlockLength(this.shape, n, dropout));
      tasks.push({
        expert: e,
        tokens: routing.planToken.subarray(start, start + n),
        gates: routing.planGate.subarray(start, start + n),
        slots: routing.planSlot.subarray(start, start + n),
        block,
        buffers: expertBuffers(block, this.shape, n, dropout),
      });
    }
    const ySlots = this.slotBuffer(routing);
    const y = c.topK === 1 ? ySlots : ws.f32(tokens * d);
    this.state = { step, training, x: xs, xr, ...(jitter && { jitter }), routing, routeMs, tasks, ySlots, y };
    return tasks;
  }

  runForward(task: ExpertTask): void {
    const s = this.current();
    const rate = this.config.expertDropout;
    const dropout = s.training && rate > 0
      ? { rate, seed: this.seed, step: s.step, layerIndex: this.layerIndex, expert: task.expert } : undefined;
    expertForward(this.kernels, this.shape, this.expertWeights(task.expert), task.buffers, s.x, task, s.ySlots, dropout);
  }

  /** Combine: y_t = Σ_j ySlots[t·k + j], in choice order (nothing to add for k = 1). */
  endForward(): { y: Float32Array; stats: SwitchStats } {
    const s = this.current();
    this.sumSlots(s.ySlots, s.y);
    const r = s.routing;
    return {
      y: s.y,
      stats: {
        expertIndex: r.expertIndex, kept: r.kept, tokensPerExpert: r.tokensPerExpert, keptPerExpert: r.keptPerExpert,
        capacity: r.capacity, dropped: r.dropped, routerProbs: r.probs, auxLoss: r.auxLoss, zLoss: r.zLoss,
      },
    };
  }

  beginBackward(dy: ArrayLike<number>): ExpertTask[] {
    const s = this.state;
    if (!s) throw new Error('switch layer: backward called before forward');
    const { dModel: d, topK } = this.config;
    const T = s.routing.tokens;
    if (dy.length !== T * d) throw new RangeError(`switch layer: dy has ${dy.length} values, expected ${T} × ${d} = ${T * d}`);
    s.dy = this.ws.copy(dy);
    requireFinite(this.kernels, 'gradient dy', s.dy);
    s.dGates = this.ws.f32(T * topK);
    s.dLogits = this.ws.scratch(T * this.config.numExperts);
    s.dxRouter = this.ws.scratch(T * d);
    s.dxSlots = this.slotBuffer(s.routing);
    s.dx = topK === 1 ? s.dxSlots : this.ws.f32(T * d);
    // Experts that received no token have zero gradient.
    const busy = new Set(s.tasks.map((t) => t.expert));
    for (let e = 0; e < this.config.numExperts; e++) {
      if (busy.has(e)) continue;
      const g = this.expertWeights(e, this.grads);
      g.wIn.fill(0); g.wOut.fill(0); g.wGate?.fill(0);
    }
    return s.tasks;
  }

  runBackward(task: ExpertTask): void {
    const s = this.current();
    expertBackward(this.kernels, this.shape, this.expertWeights(task.expert), task.buffers, s.dy!, task, s.dxSlots!,
      this.expertWeights(task.expert, this.grads));
  }

  /**
   * The router's backward, which needs no expert's backward: the gates' gradients (dy · the
   * experts' forward outputs), then d loss / d logits with the aux and z losses, the router
   * weight's gradient, and the router's share of dx. The engine runs the same on a worker.
   */
  private runRouterBackward(): void {
    const s = this.current();
    for (const task of s.tasks) gateGradients(this.shape, task.buffers, s.dy!, task, s.dGates!);
    routerBackward(this.kernels, this.config, s.routing.tokens, this.routerBackwardArrays());
  }

  /** This step's arrays for the router's backward (after beginBackward). */
  routerBackwardArrays(): RouterBackwardArrays {
    const s = this.current();
    if (!s.dGates || !s.dLogits || !s.dxRouter) throw new Error('switch layer: the router\'s backward needs beginBackward first');
    const r = s.routing;
    return {
      probs: r.probs, lse: r.lse, expertIndex: r.expertIndex, gates: r.gates, tokensPerExpert: r.tokensPerExpert,
      xr: s.xr, weight: this.weights.router, ...(s.jitter && { jitter: s.jitter }),
      dGates: s.dGates, dLogits: s.dLogits, dWeight: this.grads.router, dx: s.dxRouter,
    };
  }

  /** Combine: the experts' dx over each token's slots, plus the router's share. */
  endBackward(): Float32Array {
    const s = this.current();
    if (!s.dx || !s.dxRouter) throw new Error('switch layer: endBackward called before beginBackward');
    this.sumSlots(s.dxSlots!, s.dx);
    this.kernels.add(s.dx, s.dxRouter, s.dx);
    return s.dx;
  }

  /** Frees this layer's memory in the kernels' arena. */
  dispose(): void {
    this.ws.release();
    for (const set of [this.weights, this.grads]) {
      for (const a of [set.router, set.wIn, set.wOut, set.wGate]) if (a) this.kernels.free(a);
    }
  }

  /** A [T·k × d] slot buffer: the experts write the kept slots' rows; the dropped ones are zeroed here. */
  private slotBuffer(r: Routing): Float32Array {
    const d = this.config.dModel;
    const slots = this.ws.scratch(r.kept.length * d);
    for (let s = 0; s < r.kept.length; s++) if (!r.kept[s]) slots.fill(0, s * d, (s + 1) * d);
    return slots;
  }

  /** out[t] = Σ_j slots[t·k + j]; for k = 1 `out` is `slots` and there is nothing to do. */
  private sumSlots(slots: Float32Array, out: Float32Array): void {
    const { dModel: d, topK: k } = this.config;
    if (k === 1) return;
    const T = out.length / d;
    const token = this.ws.i32(T * k);
    for (let i = 0; i < token.length; i++) token[i] = Math.floor(i / k);
    this.kernels.scatterAddRows(slots, token, T * k, d, out);
  }

  private current(): StepState {
    if (!this.state) throw new Error('switch layer: no step in progress; call beginForward first');
    return this.state;
  }

  private allocWeights(): SwitchWeights {
    const { dModel: d, dFF: f, numExperts: E, activation } = this.config;
    const k = this.kernels;
    return {
      router: k.allocF32(d * E),
      wIn: k.allocF32(E * d * f),
      wOut: k.allocF32(E * f * d),
      ...(activation === 'swiglu' && { wGate: k.allocF32(E * d * f) }),
    };
  }

  private shapeOf(name: keyof SwitchWeights): string {
    const { dModel: d, dFF: f, numExperts: E } = this.config;
    return { router: `[${d}×${E}]`, wIn: `[${E}×${d}×${f}]`, wOut: `[${E}×${f}×${d}]`, wGate: `[${E}×${d}×${f}]` }[name];
  }
}

/** Throws naming the first NaN or ±Inf of `values` (an array in the kernels' memory). */
function requireFinite(kernels: Kernels, what: string, values: Float32Array): void {
  const at = kernels.firstNonFinite(values);
  if (at >= 0) throw new RangeError(`${what} contains ${values[at]} at index ${at}`);
}
