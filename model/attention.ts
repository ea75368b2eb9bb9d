// Causal multi-head self-attention over B sequences of T tokens, with learned or rotary positions.
//   q, k, v = split(x·W_qkv (+ b)) into H heads of size hd;  rope: rotate q and k by position
//   P = softmax(q·kᵀ / √hd, causal);  o = P·v;  y = merge(o)·W_o (+ b)
// Rotary positions use Hugging Face's half-split form (rotate_half: [−x₂, x₁]), so a model trained
// here computes the same function in transformers' Qwen2 layers without permuting anything.
import type { Kernels } from '../kernels/index.js';
import { type LinearParams, linearBackward, linearForward } from './linear.js';
import type { Workspace } from './workspace.js';

export interface AttentionShape { batch: number; time: number; heads: number; d: number }

export interface AttentionCache {
  x: Float32Array; // [N×d] input
  q: Float32Array; k: Float32Array; v: Float32Array; // [B·H×T×hd] after rope
  p: Float32Array; // [B·H×T×T] attention weights
  o: Float32Array; // [N×d] merged head outputs
}

/** cos/sin of position t and frequency i (θ_i = 10000^(−2i/hd)), [context × hd/2]. */
export function ropeTables(context: number, hd: number): { cos: Float32Array; sin: Float32Array } {
  const half = hd / 2;
  const cos = new Float32Array(context * half), sin = new Float32Array(context * half);
  for (let t = 0; t < context; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * Math.pow(10000, (-2 * i) / hd);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** Rotates each head row in place: x·cos + rotate_half(x)·sin, or its inverse (the transpose) for backward. */
function rope(x: Float32Array, rows: number, time: number, hd: number, tables: { cos: Float32Array; sin: Float32Array }, inverse: boolean): void {
  const half = hd / 2, sign = inverse ? -1 : 1;
  for (let r = 0; r < rows; r++) {
    const t = r % time, o = r * hd;
    for (let i = 0; i < half; i++) {
      const c = tables.cos[t * half + i]!, s = sign * tables.sin[t * half + i]!;
      const x1 = x[o + i]!, x2 = x[o + half + i]!;
      x[o + i] = x1 * c - x2 * s;
      x[o + half + i] = x2 * c + x1 * s;
    }
  }
}

export function attentionForward(k: Kernels, ws: Workspace, s: AttentionShape, qkv: LinearParams, proj: LinearParams,
  x: Float32Array, rope_: { cos: Float32Array; sin: Float32Array } | undefined, out: Float32Array): AttentionCache {
  const { batch: B, time: T, heads: H, d } = s;
  const N = B * T, hd = d / H;
  const fused = ws.scratch(N * 3 * d);
  linearForward(k, qkv, x, N, d, 3 * d, fused);
  const q = ws.scratch(N * d), kk = ws.scratch(N * d), v = ws.scratch(N * d);
  splitHeads(fused, s, [q, kk, v]);
  if (rope_) { rope(q, B * H * T, T, hd, rope_, false); rope(kk, B * H * T, T, hd, rope_, false); }

  const p = ws.scratch(B * H * T * T);
  const scale = 1 / Math.sqrt(hd);
  const oh = ws.scratch(N * d);
  for (let bh = 0; bh < B * H; bh++) {
    const qb = q.subarray(bh * T * hd, (bh + 1) * T * hd), kb = kk.subarray(bh * T * hd, (bh + 1) * T * hd);
    const pb = p.subarray(bh * T * T, (bh + 1) * T * T);
    k.gemm('nt', T, T, hd, qb, kb, pb, false);
  }
  k.causalMaskRows(p, B * H * T, T, scale); // no looking ahead
  k.softmaxRows(p, p, B * H * T, T);
  for (let bh = 0; bh < B * H; bh++) {
    k.gemm('nn', T, hd, T, p.subarray(bh * T * T, (bh + 1) * T * T), v.subarray(bh * T * hd, (bh + 1) * T * hd),
      oh.subarray(bh * T * hd, (bh + 1) * T * hd), false);
  }
  const o = ws.scratch(N * d);
  mergeHeads(oh, s, o);
  linearForward(k, proj, o, N, d, d, out);
  return { x, q, k: kk, v, p, o };
}

/** Given dy [N×d]: accumulates the projections' gradients, returns dx [N×d]. */
export function attentionBackward(k: Kernels, ws: Workspace, s: AttentionShape, qkv: LinearParams, proj: LinearParams,
  c: AttentionCache, rope_: { cos: Float32Array; sin: Float32Array } | undefined, dy: Float32Array): Float32Array {
  const { batch: B, time: T, heads: H, d } = s;
  const N = B * T, hd = d / H;
  const dO = ws.scratch(N * d);
  linearBackward(k, proj, c.o, dy, N, d, d, dO);
  const dOh = ws.scratch(N * d);
  splitHeads(dO, { ...s, d }, [dOh], d);
  const dq = ws.scratch(N * d), dk = ws.scratch(N * d), dv = ws.scratch(N * d);
  const dP = ws.scratch(T * T);
  const scale = 1 / Math.sqrt(hd);
  for (let bh = 0; bh < B * H; bh++) {
    const at = (a: Float32Array, w: number) => a.subarray(bh * T * w, (bh + 1) * T * w);
    const pb = at(c.p, T), dOb = at(dOh, hd);
    k.gemm('tn', T, hd, T, pb, dOb, at(dv, hd), false); // dv = Pᵀ·dO
    k.gemm('nt', T, T, hd, dOb, at(c.v, hd), dP, false); // dP = dO·vᵀ
    k.softmaxBackwardRows(pb, dP, dP, T, T, scale); // dS = P ⊙ (dP − Σ_j dP·P) / √hd; masked entries have P = 0
    k.gemm('nn', T, hd, T, dP, at(c.k, hd), at(dq, hd), false); // dq = dS·k
    k.gemm('tn', T, hd, T, dP, at(c.q, hd), at(dk, hd), false); // dk = dSᵀ·q
  }
  if (rope_) { rope(dq, B * H * T, T, hd, rope_, true); rope(dk, B * H * T, T, hd, rope_, true); }
  const dFused = ws.scratch(N * 3 * d);
  mergeHeads(dq, s, dFused, 3 * d, 0);
  mergeHeads(dk, s, dFused, 3 * d, d);
  mergeHeads(dv, s, dFused, 3 * d, 2 * d);
  const dx = ws.scratch(N * d);
  linearBackward(k, qkv, c.x, dFused, N, d, 3 * d, dx);
  return dx;
}

/** [N × stride] rows, column block j·d … → [B·H×T×hd] per output j (head-major). */
function splitHeads(src: Float32Array, s: AttentionShape, outs: Float32Array[], stride = 3 * s.d): void {
  const { batch: B, time: T, heads: H, d } = s;
  const hd = d / H;
  outs.forEach((out, j) => {
    for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
      const from = (b * T + t) * stride + j * d + h * hd, to = ((b * H + h) * T + t) * hd;
      for (let i = 0; i < hd; i++) out[to + i] = src[from + i]!;
    }
  });
}

/** The inverse of splitHeads for one block: [B·H×T×hd] → columns offset … offset+d of [N × stride]. */
function mergeHeads(src: Float32Array, s: AttentionShape, out: Float32Array, stride = s.d, offset = 0): void {
  const { batch: B, time: T, heads: H, d } = s;
  const hd = d / H;
  for (let b = 0; b < B; b++) for (let h = 0; h < H; h++) for (let t = 0; t < T; t++) {
    const from = ((b * H + h) * T + t) * hd, to = (b * T + t) * stride + offset + h * hd;
    for (let i = 0; i < hd; i++) out[to + i] = src[from + i]!;
  }
}
