// The Switch FFN layer, in process: router → dispatch (gather each expert's tokens) → experts →
// combine (gate × expert output; dropped tokens get 0, the residual carries them). Exactly
// shared/SPEC.md, forward and backward. The engine (engine/) runs the same router and expert
// functions with the experts spread over worker threads.
import type { Kernels } from '../kernels/index.js';
import { type SwitchLayerConfig, type SwitchLayerOptions, switchLayerConfig } from './config.js';
import { type ExpertActivations, type ExpertWeights, expertBackward, expertForward } from './expert.js';
import { Rng } from './rng.js';
import { type Routing, route, routerBackward } from './router.js';
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

interface Saved {
  x: Float32Array;
  xr: Float32Array;
  jitter?: Float32Array;
  routing: Routing;
  experts: (ExpertActivations | undefined)[];
}

export class SwitchLayer {
  readonly config: SwitchLayerConfig;
  readonly weights: SwitchWeights;
  /** Written by each backward: d loss / d weights, loss = Σ y ⊙ dy + aux + z. */
  readonly grads: SwitchWeights;
  private readonly kernels: Kernels;
  private readonly seed: number;
  private readonly layerIndex: number;
  private readonly ws: Workspace;
  private saved: Saved | undefined;

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
      requireFinite(`weight ${name}`, src);
      dst.set(src);
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

  /**
   * y [T×d] for x [T×d]. The returned arrays stay valid until the next forward.
   */
  forward(x: ArrayLike<number>, tokens: number, options: ForwardOptions = {}): { y: Float32Array; stats: SwitchStats } {
    const c = this.config;
    const { dModel: d, dFF: f } = c;
    if (!Number.isInteger(tokens) || tokens <= 0) throw new RangeError(`switch layer: tokens must be a positive integer, got ${tokens}`);
    if (x.length !== tokens * d) {
      throw new RangeError(`switch layer: x has ${x.length} values, expected tokens × dModel = ${tokens} × ${d} = ${tokens * d}`);
    }
    requireFinite('input x', x);
    this.ws.release();
    const ws = this.ws;
    const k = this.kernels;
    const training = options.training ?? false;
    const step = options.step ?? 0;

    const xs = ws.copy(x);
    let xr = xs;
    let jitter: Float32Array | undefined;
    if (training && c.routerJitter > 0) {
      // The router sees x ⊙ u, u ~ Uniform(1−ε, 1+ε); the experts see the clean x.
      jitter = new Rng(this.seed, step, this.layerIndex, 'jitter').fillUniform(ws.f32(xs.length), 1 - c.routerJitter, 1 + c.routerJitter);
      xr = ws.f32(xs.length);
      for (let i = 0; i < xr.length; i++) xr[i] = xs[i]! * jitter[i]!;
    }
    const routing = route(ws, c, xr, tokens, this.weights.router);

    const y = ws.f32(tokens * d);
    const experts: (ExpertActivations | undefined)[] = [];
    for (let e = 0; e < c.numExperts; e++) {
      const start = routing.offsets[e]!, n = routing.offsets[e + 1]! - start;
      if (n === 0) { experts.push(undefined); continue; }
      const tokensOf = routing.planToken.subarray(start, start + n);
      const xe = ws.f32(n * d);
      k.gatherRows(xs, tokensOf, n, d, xe);
      const mask = training && c.expertDropout > 0 ? this.dropoutMask(step, e, n * f) : undefined;
      const act = expertForward(ws, { d, f, activation: c.activation }, this.expertWeights(e), xe, n, mask);
      k.scatterAddRows(act.out, tokensOf, n, d, y, routing.planGate.subarray(start, start + n));
      experts.push(act);
    }
    this.saved = { x: xs, xr, ...(jitter && { jitter }), routing, experts };

    const r = routing;
    return {
      y,
      stats: {
        expertIndex: r.expertIndex, kept: r.kept, tokensPerExpert: r.tokensPerExpert, keptPerExpert: r.keptPerExpert,
        capacity: r.capacity, dropped: r.dropped, routerProbs: r.probs, auxLoss: r.auxLoss, zLoss: r.zLoss,
      },
    };
  }

  /**
   * Given dy = d loss / d y [T×d], writes the weight gradients into `grads` and returns
   * d loss / d x [T×d] (valid until the next forward). The aux and z losses enter with weight 1.
   */
  backward(dy: ArrayLike<number>): Float32Array {
    const s = this.saved;
    if (!s) throw new Error('switch layer: backward called before forward');
    const c = this.config;
    const { dModel: d, dFF: f, numExperts: E, topK: kTop } = c;
    const T = s.routing.tokens;
    if (dy.length !== T * d) throw new RangeError(`switch layer: dy has ${dy.length} values, expected ${T} × ${d} = ${T * d}`);
    requireFinite('gradient dy', dy);
    const ws = this.ws;
    const k = this.kernels;
    const r = s.routing;
    const dys = ws.copy(dy);
    const dx = ws.f32(T * d);
    const dGates = new Float32Array(T * kTop);

    for (let e = 0; e < E; e++) {
      const act = s.experts[e];
      const grads = this.expertWeights(e, this.grads);
      if (!act) {
        // No tokens: zero gradient.
        grads.wIn.fill(0); grads.wOut.fill(0); grads.wGate?.fill(0);
        continue;
      }
      const start = r.offsets[e]!, n = act.n;
      const tokensOf = r.planToken.subarray(start, start + n);
      // y_t += gate · out  ⇒  dGate = dy_t · out,  dOut = gate · dy_t.
      for (let i = 0; i < n; i++) {
        const t = tokensOf[i]!;
        let dot = 0;
        for (let j = 0; j < d; j++) dot += dys[t * d + j]! * act.out[i * d + j]!;
        dGates[r.planSlot[start + i]!] = dot;
      }
      const dOut = ws.f32(n * d);
      k.gatherRows(dys, tokensOf, n, d, dOut, r.planGate.subarray(start, start + n));
      const dxe = expertBackward(ws, { d, f, activation: c.activation }, this.expertWeights(e), act, dOut, grads);
      k.scatterAddRows(dxe, tokensOf, n, d, dx);
    }

    const dLogits = routerBackward(ws, c, r, dGates);
    k.gemm('tn', d, E, T, s.xr, dLogits, this.grads.router, false); // dW_router = xrᵀ·dLogits
    if (s.jitter) {
      const dxr = ws.f32(T * d);
      k.gemm('nt', T, d, E, dLogits, this.weights.router, dxr, false);
      for (let i = 0; i < dx.length; i++) dx[i] = dx[i]! + dxr[i]! * s.jitter[i]!;
    } else {
      k.gemm('nt', T, d, E, dLogits, this.weights.router, dx, true); // dx += dLogits·W_routerᵀ
    }
    return dx;
  }

  /** Frees this layer's memory in the kernels' arena. */
  dispose(): void {
    this.ws.release();
    for (const set of [this.weights, this.grads]) {
      for (const a of [set.router, set.wIn, set.wOut, set.wGate]) if (a) this.kernels.free(a);
    }
  }

  private dropoutMask(step: number, expert: number, length: number): Float32Array {
    const rate = this.config.expertDropout;
    const rng = new Rng(this.seed, step, this.layerIndex, 'expert-dropout', expert);
    const mask = this.ws.f32(length);
    const keep = 1 / (1 - rate);
    for (let i = 0; i < length; i++) mask[i] = rng.uniform() < rate ? 0 : keep;
    return mask;
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

/** Throws naming the first NaN or ±Inf. */
export function requireFinite(what: string, values: ArrayLike<number>): void {
  for (let i = 0; i < values.length; i++) {
    if (!Number.isFinite(values[i])) throw new RangeError(`${what} contains ${values[i]} at index ${i}`);
  }
}
