// The Switch FFN layer, exactly docs/SPEC.md forward and backward, in three seams:
//   beginForward: route (model/router.ts): logits → softmax → top-k → capacity → a plan per expert
//   runForward:   each expert (model/expert.ts): gather its tokens → FFN → gate · y into slots
//   endForward:   combine (model/combine.ts): each token's slots summed
// and the same three for the backward. In process, `forward` and `backward` run them in order;
// the engine (engine/) runs the middle seam on worker threads over shared memory.
import type { Kernels } from '../kernels/index.js';
import { slotBuffer, sumSlots } from './combine.js';
import { type SwitchLayerConfig, type SwitchLayerOptions, switchLayerConfig } from './config.js';
import {
  type Assignment, type ExpertBuffers, type ExpertDropout, type ExpertWeights, expertBackward, expertBlockLength, expertBuffers,
  expertForward, expertWeights, gateGradients,
} from './expert.js';
import type { FfnShape } from './ffn.js';
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
  gates: Float32Array; // [T×k], the weight of each chosen expert's output
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
  /**
   * Route every token whatever the capacity factor. Inference uses it: a decode step routes a
   * handful of tokens, and a capacity over them would make a sequence's output depend on which
   * others share its step (docs/inference.md).
   */
  dropless?: boolean;
  /**
   * Capacity is counted per group of this many consecutive tokens: one sequence each, as
   * transformers' SwitchTransformers routes. Default: the T tokens are one group.
   */
  groupSize?: number;
}

export interface SwitchLayerInit {
  /** Seeds the initial weights and every training-time draw. */
  seed?: number;
  /** This layer's index in a model, so each layer draws its own numbers. */
  layerIndex?: number;
  /** False: the caller sets every weight (a loaded checkpoint), so the random initialization is skipped. Default true. */
  initialize?: boolean;
  /** False: no gradient arrays (inference only; backward then throws). Default true. */
  gradients?: boolean;
}

/** One expert's share of a step: its tokens, their gates and slots, and its buffers. */
export interface ExpertTask extends Assignment {
  expert: number;
  block: Float32Array; // one allocation that `buffers` are views of
  buffers: ExpertBuffers;
}

/** What the forward's route seam hands to whatever computes the experts. Arrays in the kernels' memory. */
export interface ForwardPlan {
  step: number;
  training: boolean;
  tokens: number;
  /** [T×d] the layer's input. */
  x: Float32Array;
  /** [T·k×d] each slot's gate · expert output, zero where dropped; for k = 1 this is y itself. */
  ySlots: Float32Array;
  /** Experts with at least one token, in expert order. */
  tasks: ExpertTask[];
  /** [E] assignments each expert keeps this step. */
  keptPerExpert: Int32Array;
  /** Expert e's dropout is { ...dropout, expert: e }; absent outside training or at rate 0. */
  dropout?: Omit<ExpertDropout, 'expert'>;
}

/** What the backward's first seam hands over: the forward's tasks, and the router's backward arrays. */
export interface BackwardPlan {
  tasks: ExpertTask[];
  /** [T×d] d loss / d y. */
  dy: Float32Array;
  /** [T·k×d] each slot's expert input gradient; for k = 1 this is the experts' share of dx. */
  dxSlots: Float32Array;
  router: RouterBackwardArrays;
}

/** What a step keeps between its seams. */
interface StepState {
  forward: ForwardPlan;
  routing: Routing;
  xr: Float32Array;
  jitter?: Float32Array;
  y: Float32Array;
  backward?: BackwardPlan & { dGates: Float32Array; dxRouter: Float32Array; dx: Float32Array };
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
  private state: StepState | undefined;

  constructor(kernels: Kernels, options: SwitchLayerOptions, init: SwitchLayerInit = {}) {
    this.config = switchLayerConfig(options);
    this.kernels = kernels;
    this.seed = init.seed ?? 0;
    this.layerIndex = init.layerIndex ?? 0;
    this.ws = new Workspace(kernels);
    this.weights = this.allocWeights();
    this.grads = init.gradients === false ? NO_GRADIENTS : this.allocWeights();
    if (init.initialize !== false) this.initialize();
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
    return expertWeights(of, this.shape, e);
  }

  get shape(): FfnShape {
    return { d: this.config.dModel, f: this.config.dFF, activation: this.config.activation };
  }

  /** y [T×d] for x [T×d], every expert in this thread. The result stays valid until the next forward. */
  forward(x: ArrayLike<number>, tokens: number, options: ForwardOptions = {}): { y: Float32Array; stats: SwitchStats } {
    for (const task of this.beginForward(x, tokens, options).tasks) this.runForward(task);
    return this.endForward();
  }

  /**
   * Given dy = d loss / d y [T×d], writes the weight gradients into `grads` and returns
   * d loss / d x [T×d] (valid until the next forward). The aux and z losses enter with weight 1.
   */
  backward(dy: ArrayLike<number>, auxGrad?: ArrayLike<number>): Float32Array {
    const { tasks } = this.beginBackward(dy, auxGrad);
    this.runRouterBackward();
    for (const task of tasks) this.runBackward(task);
    return this.endBackward();
  }

  /** Route: the router, and what each expert must compute. */
  beginForward(x: ArrayLike<number>, tokens: number, options: ForwardOptions = {}): ForwardPlan {
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
    const routing = route(ws, options.dropless ? { ...c, capacityFactor: null } : c, xr, tokens, this.weights.router, options.groupSize);
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
    const ySlots = slotBuffer(ws, routing.kept, d);
    const forward: ForwardPlan = {
      step, training, tokens, x: xs, ySlots, tasks, keptPerExpert: routing.keptPerExpert,
      ...(dropout && { dropout: { rate: c.expertDropout, seed: this.seed, step, layerIndex: this.layerIndex } }),
    };
    this.state = { forward, routing, xr, ...(jitter && { jitter }), y: c.topK === 1 ? ySlots : ws.f32(tokens * d) };
    return forward;
  }

  runForward(task: ExpertTask): void {
    const { forward: f } = this.current();
    expertForward(this.kernels, this.shape, this.expertWeights(task.expert), task.buffers, f.x, task, f.ySlots,
      f.dropout && { ...f.dropout, expert: task.expert });
  }

  /** Combine: y_t = Σ_j ySlots[t·k + j], in choice order (nothing to add for k = 1). */
  endForward(): { y: Float32Array; stats: SwitchStats } {
    const s = this.current();
    sumSlots(this.kernels, this.ws, this.config.topK, s.forward.ySlots, s.y, this.config.dModel);
    const r = s.routing;
    return {
      y: s.y,
      stats: {
        expertIndex: r.expertIndex, gates: r.gates, kept: r.kept, tokensPerExpert: r.tokensPerExpert, keptPerExpert: r.keptPerExpert,
        capacity: r.capacity, dropped: r.dropped, routerProbs: r.probs, auxLoss: r.auxLoss, zLoss: r.zLoss,
      },
    };
  }

  /** `auxGrad`: [T×E], a load-balancing loss's d loss / d probs computed by the caller (RouterBackwardArrays). */
  beginBackward(dy: ArrayLike<number>, auxGrad?: ArrayLike<number>): BackwardPlan {
    const s = this.state;
    if (!s) throw new Error('switch layer: backward called before forward');
    if (this.grads === NO_GRADIENTS) throw new Error('switch layer: built without gradients (inference only); backward is not available');
    const { dModel: d, topK, numExperts: E } = this.config;
    const T = s.routing.tokens;
    if (dy.length !== T * d) throw new RangeError(`switch layer: dy has ${dy.length} values, expected ${T} × ${d} = ${T * d}`);
    const dys = this.ws.copy(dy);
    requireFinite(this.kernels, 'gradient dy', dys);
    if (auxGrad && auxGrad.length !== T * E) {
      throw new RangeError(`switch layer: auxGrad has ${auxGrad.length} values, expected tokens × experts = ${T} × ${E}`);
    }
    const dGates = this.ws.f32(T * topK), dxRouter = this.ws.scratch(T * d);
    const dxSlots = slotBuffer(this.ws, s.routing.kept, d);
    // Experts that received no token have zero gradient.
    const busy = new Set(s.forward.tasks.map((t) => t.expert));
    for (let e = 0; e < E; e++) {
      if (busy.has(e)) continue;
      const g = this.expertWeights(e, this.grads);
      g.wIn.fill(0); g.wOut.fill(0); g.wGate?.fill(0);
    }
    const r = s.routing;
    const router: RouterBackwardArrays = {
      probs: r.probs, lse: r.lse, expertIndex: r.expertIndex, gates: r.gates, tokensPerExpert: r.tokensPerExpert,
      xr: s.xr, weight: this.weights.router, ...(s.jitter && { jitter: s.jitter }),
      dGates, dLogits: this.ws.scratch(T * E), dWeight: this.grads.router, dx: dxRouter, ...(auxGrad && { auxGrad: this.ws.copy(auxGrad) }),
    };
    s.backward = { tasks: s.forward.tasks, dy: dys, dxSlots, router, dGates, dxRouter, dx: topK === 1 ? dxSlots : this.ws.f32(T * d) };
    return s.backward;
  }

  runBackward(task: ExpertTask): void {
    const b = this.currentBackward();
    expertBackward(this.kernels, this.shape, this.expertWeights(task.expert), task.buffers, b.dy, task, b.dxSlots,
      this.expertWeights(task.expert, this.grads));
  }

  /**
   * The router's backward, which needs no expert's backward: the gates' gradients (dy · the
   * experts' forward outputs), then d loss / d logits with the aux and z losses, the router
   * weight's gradient, and the router's share of dx. The engine runs the same on a worker.
   */
  private runRouterBackward(): void {
    const b = this.currentBackward();
    for (const task of b.tasks) gateGradients(this.shape, task.buffers, b.dy, task, b.dGates);
    routerBackward(this.kernels, this.config, b.dy.length / this.config.dModel, b.router);
  }

  /** Combine: the experts' dx over each token's slots, plus the router's share. */
  endBackward(): Float32Array {
    const b = this.currentBackward();
    sumSlots(this.kernels, this.ws, this.config.topK, b.dxSlots, b.dx, this.config.dModel);
    this.kernels.add(b.dx, b.dxRouter, b.dx);
    return b.dx;
  }

  /** Frees this layer's memory in the kernels' arena. */
  dispose(): void {
    this.ws.release();
    for (const set of this.grads === NO_GRADIENTS ? [this.weights] : [this.weights, this.grads]) {
      for (const a of [set.router, set.wIn, set.wOut, set.wGate]) if (a) this.kernels.free(a);
    }
  }

  private current(): StepState {
    if (!this.state) throw new Error('switch layer: no step in progress; call beginForward first');
    return this.state;
  }

  private currentBackward(): NonNullable<StepState['backward']> {
    const b = this.current().backward;
    if (!b) throw new Error('switch layer: no backward in progress; call beginBackward first');
    return b;
  }

  private allocWeights(): SwitchWeights {
    const { dModel: d, dFF: f, numExperts: E, activation } = this.config;
    const kernels = this.kernels;
    return {
      router: kernels.allocF32(d * E),
      wIn: kernels.allocF32(E * d * f),
      wOut: kernels.allocF32(E * f * d),
      ...(activation === 'swiglu' && { wGate: kernels.allocF32(E * d * f) }),
    };
  }

  private shapeOf(name: keyof SwitchWeights): string {
    const { dModel: d, dFF: f, numExperts: E } = this.config;
    return { router: `[${d}×${E}]`, wIn: `[${E}×${d}×${f}]`, wOut: `[${E}×${f}×${d}]`, wGate: `[${E}×${d}×${f}]` }[name];
  }
}

/** The `grads` of a layer built without gradients. */
const NO_GRADIENTS: SwitchWeights = { router: new Float32Array(0), wIn: new Float32Array(0), wOut: new Float32Array(0) };

/** Throws naming the first NaN or ±Inf of `values` (an array in the kernels' memory). */
function requireFinite(kernels: Kernels, what: string, values: Float32Array): void {
  const at = kernels.firstNonFinite(values);
  if (at >= 0) throw new RangeError(`${what} contains ${values[at]} at index ${at}`);
}
