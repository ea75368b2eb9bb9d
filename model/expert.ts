// One expert's feed-forward block (SPEC step 4) on the n tokens routed to it, forward and backward:
//   relu / gelu:  a = x·w_in,  h = act(a)
//   swiglu:       a = x·w_in,  g = x·w_gate,  h = silu(g) ⊙ a
//   then (training) h ⊙= dropout mask, and out = h·w_out.
import type { Kernels } from '../kernels/index.js';
import type { Activation } from './config.js';
import type { Workspace } from './workspace.js';

export interface ExpertWeights {
  wIn: Float32Array; // [d×f]
  wOut: Float32Array; // [f×d]
  wGate?: Float32Array; // [d×f], swiglu only
}

export interface ExpertShape { d: number; f: number; activation: Activation }

/** What forward keeps for backward. */
export interface ExpertActivations {
  n: number;
  x: Float32Array; // [n×d]
  a: Float32Array; // [n×f]
  g?: Float32Array; // [n×f]
  h: Float32Array; // [n×f], after dropout
  /** Per element of h: 0 or 1/(1−rate); absent without dropout. */
  mask?: Float32Array;
  out: Float32Array; // [n×d]
}

/** `x` [n×d] must live in the kernels' memory; `mask` (training) is applied to h. */
export function expertForward(ws: Workspace, s: ExpertShape, w: ExpertWeights, x: Float32Array, n: number,
  mask?: Float32Array): ExpertActivations {
  const k = ws.kernels;
  const a = ws.f32(n * s.f), h = ws.f32(n * s.f), out = ws.f32(n * s.d);
  k.gemm('nn', n, s.f, s.d, x, w.wIn, a, false);
  let g: Float32Array | undefined;
  if (s.activation === 'swiglu') {
    g = ws.f32(n * s.f);
    k.gemm('nn', n, s.f, s.d, x, w.wGate!, g, false);
    k.swiglu(g, a, h);
  } else if (s.activation === 'gelu') {
    k.gelu(a, h);
  } else {
    k.relu(a, h);
  }
  if (mask) for (let i = 0; i < h.length; i++) h[i] = h[i]! * mask[i]!;
  k.gemm('nn', n, s.d, s.f, h, w.wOut, out, false);
  return { n, x, a, ...(g && { g }), h, ...(mask && { mask }), out };
}

/**
 * Given dOut [n×d], writes the weight gradients into `grads` (overwriting) and returns dx [n×d].
 */
export function expertBackward(ws: Workspace, s: ExpertShape, w: ExpertWeights, act: ExpertActivations,
  dOut: Float32Array, grads: ExpertWeights): Float32Array {
  const k: Kernels = ws.kernels;
  const { n, d, f } = { n: act.n, d: s.d, f: s.f };
  k.gemm('tn', f, d, n, act.h, dOut, grads.wOut, false); // dW_out = hᵀ·dOut
  const dh = ws.f32(n * f);
  k.gemm('nt', n, f, d, dOut, w.wOut, dh, false); // dh = dOut·W_outᵀ
  if (act.mask) for (let i = 0; i < dh.length; i++) dh[i] = dh[i]! * act.mask[i]!;
  const dx = ws.f32(n * d);
  if (s.activation === 'swiglu') {
    const dg = ws.f32(n * f);
    k.swigluBackward(act.g!, act.a, dh, dg, dh); // dh becomes da
    k.gemm('tn', d, f, n, act.x, dg, grads.wGate!, false);
    k.gemm('nt', n, d, f, dg, w.wGate!, dx, false);
  } else if (s.activation === 'gelu') {
    k.geluBackward(act.a, dh, dh);
  } else {
    k.reluBackward(act.a, dh, dh);
  }
  k.gemm('tn', d, f, n, act.x, dh, grads.wIn, false); // dW_in = xᵀ·da
  k.gemm('nt', n, d, f, dh, w.wIn, dx, s.activation === 'swiglu'); // dx = da·W_inᵀ (+ dg·W_gateᵀ)
  return dx;
}
