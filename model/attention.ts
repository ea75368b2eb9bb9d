// Causal multi-head self-attention over B sequences of T tokens, with learned or rotary positions.
//   [q | k | v] = x·W_qkv (+ b);  rope: rotate q and k by position
//   per head: P = softmax(q·kᵀ / √hd, causal);  o = P·v;  y = o·W_o (+ b)
// Heads are column blocks of the fused [N × 3d] q|k|v rows and of o: the GEMMs address them
// with row strides, so nothing is copied into a head-major layout and back.
// Rotary positions use Hugging Face's half-split form (rotate_half: [−x₂, x₁]), so a model trained
// here computes the same function in transformers' Qwen2 layers without permuting anything.
import type { Kernels } from '../kernels/index.js';
import { type LinearParams, linearBackward, linearForward } from './linear.js';
import type { Workspace } from './workspace.js';

export interface AttentionShape { batch: number; time: number; heads: number; d: number }

export interface RopeTables { cos: Float32Array; sin: Float32Array }

export interface AttentionCache {
  x: Float32Array; // [N×d] input
  qkv: Float32Array; // [N×3d], q and k after rope
  p: Float32Array; // [B·H×T×T] attention weights
  o: Float32Array; // [N×d] head outputs side by side
}

/** cos/sin of position t and frequency i (θ_i = 10000^(−2i/hd)), [context × hd/2], in the kernels' memory. */
export function ropeTables(k: Kernels, context: number, hd: number): RopeTables {
  const half = hd / 2;
  const cos = k.allocF32(context * half), sin = k.allocF32(context * half);
  for (let t = 0; t < context; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * Math.pow(10000, (-2 * i) / hd);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** Rotates the q and k blocks (H query heads, then H key heads) of each fused row in place. */
function rope(k: Kernels, qkv: Float32Array, s: AttentionShape, tables: RopeTables, inverse: boolean): void {
  const { batch: B, time: T, heads: H, d } = s;
  k.rope(qkv, B * T, 3 * d, 2 * H, d / H, T, tables.cos, tables.sin, inverse);
}

export function attentionForward(k: Kernels, ws: Workspace, s: AttentionShape, qkvW: LinearParams, proj: LinearParams,
  x: Float32Array, rope_: RopeTables | undefined, out: Float32Array): AttentionCache {
  const { batch: B, time: T, heads: H, d } = s;
  const N = B * T, hd = d / H, ld = 3 * d;
  const qkv = ws.scratch(N * ld);
  linearForward(k, qkvW, x, N, d, ld, qkv);
  if (rope_) rope(k, qkv, s, rope_, false);
  const p = ws.scratch(B * H * T * T), o = ws.scratch(N * d);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const q = qkv.subarray(b * T * ld + h * hd), kk = q.subarray(d);
      k.gemm('nt', T, T, hd, q, kk, head(p, b, h, s), false, { lda: ld, ldb: ld });
    }
  }
  k.causalMaskRows(p, B * H * T, T, 1 / Math.sqrt(hd)); // no looking ahead
  k.softmaxRows(p, p, B * H * T, T);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const v = qkv.subarray(b * T * ld + 2 * d + h * hd);
      k.gemm('nn', T, hd, T, head(p, b, h, s), v, o.subarray(b * T * d + h * hd), false, { ldb: ld, ldc: d });
    }
  }
  linearForward(k, proj, o, N, d, d, out);
  return { x, qkv, p, o };
}

/** Given dy [N×d]: accumulates the projections' gradients, returns dx [N×d]. */
export function attentionBackward(k: Kernels, ws: Workspace, s: AttentionShape, qkvW: LinearParams, proj: LinearParams,
  c: AttentionCache, rope_: RopeTables | undefined, dy: Float32Array): Float32Array {
  const { batch: B, time: T, heads: H, d } = s;
  const N = B * T, hd = d / H, ld = 3 * d;
  const dO = ws.scratch(N * d);
  linearBackward(k, proj, c.o, dy, N, d, d, dO);
  const dQkv = ws.scratch(N * ld);
  const dS = ws.scratch(T * T);
  const scale = 1 / Math.sqrt(hd);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const at = b * T * ld + h * hd;
      const q = c.qkv.subarray(at), kk = c.qkv.subarray(at + d), v = c.qkv.subarray(at + 2 * d);
      const dq = dQkv.subarray(at), dk = dQkv.subarray(at + d), dv = dQkv.subarray(at + 2 * d);
      const pb = head(c.p, b, h, s), dOb = dO.subarray(b * T * d + h * hd);
      k.gemm('tn', T, hd, T, pb, dOb, dv, false, { ldb: d, ldc: ld }); // dv = Pᵀ·dO
      k.gemm('nt', T, T, hd, dOb, v, dS, false, { lda: d, ldb: ld }); // dP = dO·vᵀ
      k.softmaxBackwardRows(pb, dS, dS, T, T, scale); // dS = P ⊙ (dP − Σ_j dP·P) / √hd; masked entries have P = 0
      k.gemm('nn', T, hd, T, dS, kk, dq, false, { ldb: ld, ldc: ld }); // dq = dS·k
      k.gemm('tn', T, hd, T, dS, q, dk, false, { ldb: ld, ldc: ld }); // dk = dSᵀ·q
    }
  }
  if (rope_) rope(k, dQkv, s, rope_, true);
  const dx = ws.scratch(N * d);
  linearBackward(k, qkvW, c.x, dQkv, N, d, ld, dx);
  return dx;
}

/** The T×T attention weights of sequence b, head h. */
function head(p: Float32Array, b: number, h: number, s: AttentionShape): Float32Array {
  const T = s.time, at = (b * s.heads + h) * T * T;
  return p.subarray(at, at + T * T);
}
