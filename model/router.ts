// The router (SPEC steps 1–3 and 6): float32 logits and softmax, top-k choice, capacity with
// token-order priority, the load-balancing and z losses, and their backward.
import type { Kernels } from '../kernels/index.js';
import { type SwitchLayerConfig, expertCapacity } from './config.js';
import type { Workspace } from './workspace.js';

export interface Routing {
  tokens: number;
  /** [T×E] softmax of the logits. */
  probs: Float32Array;
  /** [T] log Σ_e exp(logits), for the z-loss. */
  lse: Float32Array;
  /** [T×k] chosen experts, best first. */
  expertIndex: Int32Array;
  /** [T×k] the weight of each chosen expert's output. */
  gates: Float32Array;
  /** [T×k] 1 where the assignment fit its expert's capacity. */
  kept: Uint8Array;
  capacity: number;
  /** [E] tokens whose first choice is e, before drops. */
  tokensPerExpert: Int32Array;
  /** [E] assignments kept. */
  keptPerExpert: Int32Array;
  dropped: number;
  auxLoss: number;
  zLoss: number;
  /**
   * The dispatch plan: expert e's kept assignments are entries offsets[e] .. offsets[e+1]−1 of
   * planToken (the token), planSlot (t·k + j, its place in expertIndex) and planGate, in the
   * order they were admitted.
   */
  offsets: Int32Array;
  planToken: Int32Array;
  planSlot: Int32Array;
  planGate: Float32Array;
}

/**
 * Routes T tokens given their router input `xr` [T×d] (the clean x, or x with jitter) and the
 * router weight [d×E]. Capacity is counted per group of `group` consecutive tokens (default: one
 * group of T).
 */
export function route(ws: Workspace, c: SwitchLayerConfig, xr: Float32Array, tokens: number,
  routerWeight: Float32Array, group = tokens): Routing {
  const { numExperts: E, topK: k, dModel: d } = c;
  const T = tokens;
  const kernels = ws.kernels;

  const logits = ws.scratch(T * E);
  kernels.gemm('nn', T, E, d, xr, routerWeight, logits, false);
  const probs = ws.scratch(T * E);
  const lse = ws.scratch(T);
  kernels.softmaxRows(logits, probs, T, E, lse);

  // Top-k by probability; strict '>' keeps the lower index on ties.
  // In the kernels' memory, as the router's backward reads them on whichever thread runs it.
  const expertIndex = ws.i32(T * k);
  const gates = ws.f32(T * k);
  for (let t = 0; t < T; t++) {
    const row = t * E; // indexed directly: a subarray per token cost 8× this loop
    let sum = 0;
    for (let j = 0; j < k; j++) {
      let best = -1;
      for (let e = 0; e < E; e++) {
        if (best >= 0 && !(probs[row + e]! > probs[row + best]!)) continue;
        let taken = false;
        for (let q = 0; q < j; q++) if (expertIndex[t * k + q] === e) taken = true;
        if (!taken) best = e;
      }
      expertIndex[t * k + j] = best;
      gates[t * k + j] = probs[row + best]!;
      sum += probs[row + best]!;
    }
    if (k > 1 && c.normalizeTopK) for (let j = 0; j < k; j++) gates[t * k + j] = gates[t * k + j]! / sum;
  }

  // Capacity, counted per group of tokens: all first choices in token order, then all second
  // choices, and so on.
  if (!Number.isInteger(group) || group <= 0 || T % group !== 0) throw new RangeError(`switch layer: ${T} tokens are not a whole number of groups of ${group}`);
  const capacity = expertCapacity(c, group);
  const kept = new Uint8Array(T * k);
  const keptPerExpert = new Int32Array(E);
  const keptInGroup = new Int32Array((T / group) * E);
  let dropped = 0;
  for (let j = 0; j < k; j++) {
    for (let t = 0; t < T; t++) {
      const e = expertIndex[t * k + j]!, slot = Math.floor(t / group) * E + e;
      if (keptInGroup[slot]! < capacity) { kept[t * k + j] = 1; keptInGroup[slot]!++; keptPerExpert[e]!++; } else dropped++;
    }
  }
  const offsets = new Int32Array(E + 1);
  for (let e = 0; e < E; e++) offsets[e + 1] = offsets[e]! + keptPerExpert[e]!;
  const total = offsets[E]!;
  const planToken = ws.i32(total), planSlot = ws.i32(total), planGate = ws.f32(total);
  const fill = offsets.slice(0, E);
  for (let j = 0; j < k; j++) {
    for (let t = 0; t < T; t++) {
      const s = t * k + j;
      if (!kept[s]) continue;
      const at = fill[expertIndex[s]!]!++;
      planToken[at] = t; planSlot[at] = s; planGate[at] = gates[s]!;
    }
  }

  // Losses. f is a constant (first choices before drops); P is differentiable.
  const tokensPerExpert = ws.i32(E);
  for (let t = 0; t < T; t++) tokensPerExpert[expertIndex[t * k]!]!++;
  const meanProb = meanRows(probs, T, E);
  let balance = 0;
  for (let e = 0; e < E; e++) balance += (tokensPerExpert[e]! / T) * meanProb[e]!;
  let lseSquared = 0;
  for (let t = 0; t < T; t++) lseSquared += lse[t]! * lse[t]!;

  return {
    tokens: T, probs, lse, expertIndex, gates, kept, capacity, tokensPerExpert, keptPerExpert, dropped,
    auxLoss: c.auxLossCoef * E * balance,
    zLoss: (c.zLossCoef * lseSquared) / T,
    offsets, planToken, planSlot, planGate,
  };
}

/** What the router's backward needs of a layer's configuration. */
export type RouterConfig = Pick<SwitchLayerConfig, 'dModel' | 'numExperts' | 'topK' | 'auxLossCoef' | 'zLossCoef' | 'normalizeTopK'>;

/**
 * What the router's backward reads (the forward's routing, its input xr and weight, the gates'
 * gradients) and writes. All in the kernels' memory, so that any thread can run it.
 */
export interface RouterBackwardArrays {
  probs: Float32Array; // [T×E]
  lse: Float32Array; // [T]
  expertIndex: Int32Array; // [T×k]
  gates: Float32Array; // [T×k]
  tokensPerExpert: Int32Array; // [E]
  xr: Float32Array; // [T×d]
  weight: Float32Array; // [d×E]
  jitter?: Float32Array; // [T×d], when the router saw x ⊙ jitter
  dGates: Float32Array; // [T×k] d loss / d gate, zero for dropped assignments
  /**
   * [T×E] d loss / d probs from a load-balancing loss the caller computes over several layers
   * (transformers' SwitchTransformers pools a stack's sparse layers), added to the layer's own.
   */
  auxGrad?: Float32Array;
  dLogits: Float32Array; // [T×E] out
  dWeight: Float32Array; // [d×E] out (overwritten)
  dx: Float32Array; // [T×d] out: the router's share of d loss / d x
}

/**
 * The router's backward, with the aux and z losses entering the total with weight 1: d loss /
 * d logits, then the weight's gradient and the router's share of dx.
 */
export function routerBackward(kernels: Kernels, c: RouterConfig, T: number, a: RouterBackwardArrays): void {
  const { numExperts: E, topK: k, dModel: d } = c;
  const { probs, lse, expertIndex, gates, tokensPerExpert, dGates, dLogits, auxGrad } = a;
  const dProbs = new Float64Array(E);
  for (let t = 0; t < T; t++) {
    // aux = α·E·Σ_e f_e · mean_t p[t,e]  ⇒  ∂aux/∂p[t,e] = α·E·f_e / T.
    for (let e = 0; e < E; e++) dProbs[e] = (c.auxLossCoef * E * tokensPerExpert[e]!) / T / T;
    if (auxGrad) for (let e = 0; e < E; e++) dProbs[e]! += auxGrad[t * E + e]!;
    if (k > 1 && c.normalizeTopK) {
      // g_j = p_j / S with S = Σ_chosen p  ⇒  ∂/∂p_j = (dg_j − Σ_l dg_l · g_l) / S.
      let sum = 0, dot = 0;
      for (let j = 0; j < k; j++) {
        sum += probs[t * E + expertIndex[t * k + j]!]!;
        dot += dGates[t * k + j]! * gates[t * k + j]!;
      }
      for (let j = 0; j < k; j++) dProbs[expertIndex[t * k + j]!]! += (dGates[t * k + j]! - dot) / sum;
    } else {
      for (let j = 0; j < k; j++) dProbs[expertIndex[t * k + j]!]! += dGates[t * k + j]!;
    }
    // Softmax backward, plus the z-loss β·mean_t(lse_t²): ∂/∂logit = 2β·lse_t·p / T.
    let dot = 0;
    for (let e = 0; e < E; e++) dot += dProbs[e]! * probs[t * E + e]!;
    const z = (2 * c.zLossCoef * lse[t]!) / T;
    for (let e = 0; e < E; e++) {
      const p = probs[t * E + e]!;
      dLogits[t * E + e] = p * (dProbs[e]! - dot) + z * p;
    }
  }
  kernels.gemm('tn', d, E, T, a.xr, dLogits, a.dWeight, false); // dW = xrᵀ·dLogits
  kernels.gemm('nt', T, d, E, dLogits, a.weight, a.dx, false); // dLogits·Wᵀ
  if (a.jitter) kernels.multiply(a.dx, a.jitter, a.dx);
}

function meanRows(m: Float32Array, rows: number, cols: number): Float64Array {
  const mean = new Float64Array(cols);
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) mean[c]! += m[r * cols + c]!;
  for (let c = 0; c < cols; c++) mean[c]! /= rows;
  return mean;
}
