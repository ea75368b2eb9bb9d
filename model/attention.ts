// Causal multi-head self-attention over B sequences of T tokens, with learned or rotary positions.
//   [q | k | v] = x·W_qkv (+ b);  rope: rotate q and k by position
//   per head: P = softmax(q·kᵀ / √hd, causal);  o = P·v;  y = o·W_o (+ b)
// Split by heads into shards (Megatron's tensor parallelism, as the dense FFN in mlp.ts): shard c
// owns heads h0…h1, i.e. those heads' columns of W_qkv (one block each in q, k and v) and rows of
// W_o, so its weight gradients are its own and only the [N×d] output and input gradient are
// summed over shards. The GEMMs address a shard's blocks in place with row strides.
// Generation computes one new position per sequence against the keys and values it keeps
// (model/kv-cache.ts): `attentionShardDecode`, the same arithmetic as the full forward's row for
// that position, so cached and recomputed logits agree to the bit (test/generate.test.ts).
// Rotary positions use Hugging Face's half-split form (rotate_half: [−x₂, x₁]), so a model trained
// here computes the same function in transformers' Qwen2 layers without permuting anything.
import type { Kernels } from '../kernels/index.js';

export interface AttentionShape { batch: number; time: number; heads: number; d: number }

export interface RopeTables { cos: Float32Array; sin: Float32Array }

/** A projection y = x·W (+ b), W stored [in × out], with its gradients. */
export interface LinearParams { w: Float32Array; b?: Float32Array; dw: Float32Array; db?: Float32Array }

export interface AttentionWeights { qkv: LinearParams; proj: LinearParams }

/** One shard's buffers for one step; w = (h1 − h0)·hd columns. */
export interface AttentionShardBuffers {
  qkv: Float32Array; // [N × 3w] the shard's q | k | v, q and k after rope
  p: Float32Array; // [B × (h1−h0) × T × T] attention weights
  o: Float32Array; // [N × w] head outputs side by side
  y: Float32Array; // [N × d] partial output, o·W_o[rows]
  dO: Float32Array; // [N × w]
  dQkv: Float32Array; // [N × 3w]
  dS: Float32Array; // [T × T]
  dx: Float32Array; // [N × d] partial input gradient
}

export interface AttentionShard { h0: number; h1: number; buffers: AttentionShardBuffers }

/** cos/sin of position t and frequency i (θ_i = 10000^(−2i/hd)), [context × hd/2], in the kernels' memory. */
export function ropeTables(kernels: Kernels, context: number, hd: number): RopeTables {
  const half = hd / 2;
  const cos = kernels.allocF32(context * half), sin = kernels.allocF32(context * half);
  for (let t = 0; t < context; t++) {
    for (let i = 0; i < half; i++) {
      const angle = t * Math.pow(10000, (-2 * i) / hd);
      cos[t * half + i] = Math.cos(angle);
      sin[t * half + i] = Math.sin(angle);
    }
  }
  return { cos, sin };
}

/** Where shard [h0, h1) sits: its column offset in each of the q, k, v blocks of W_qkv, its width, the head size. */
function layout(s: AttentionShape, h0: number, h1: number) {
  const hd = s.d / s.heads;
  return { hd, w: (h1 - h0) * hd, col: h0 * hd };
}

/** Forward of heads h0…h1 on x [N×d]: fills the shard's buffers, with its partial output in y. */
export function attentionShardForward(kernels: Kernels, s: AttentionShape, weights: AttentionWeights, x: Float32Array,
  rope: RopeTables | undefined, h0: number, h1: number, b: AttentionShardBuffers): void {
  const { batch: B, time: T, d } = s;
  const N = B * T, { hd, w, col } = layout(s, h0, h1), H = h1 - h0, ld = 3 * w;
  const { qkv: qkvW, proj } = weights;
  for (let part = 0; part < 3; part++) { // q, k, v
    const at = part * d + col;
    kernels.gemm('nn', N, w, d, x, qkvW.w.subarray(at), b.qkv.subarray(part * w), false, { ldb: 3 * d, ldc: ld });
    const bias = qkvW.b;
    if (bias) kernels.addBias(b.qkv.subarray(part * w), bias.subarray(at), N, w, ld);
  }
  if (rope) kernels.rope(b.qkv, N, ld, 2 * H, hd, T, rope.cos, rope.sin, false); // H query heads, then H key heads
  for (let s_ = 0; s_ < B; s_++) {
    for (let h = 0; h < H; h++) {
      const q = b.qkv.subarray(s_ * T * ld + h * hd), keys = q.subarray(w);
      kernels.gemm('nt', T, T, hd, q, keys, head(b.p, s_, h, H, T), false, { lda: ld, ldb: ld });
    }
  }
  kernels.causalMaskRows(b.p, B * H * T, T, 1 / Math.sqrt(hd)); // no looking ahead
  kernels.softmaxRows(b.p, b.p, B * H * T, T);
  for (let s_ = 0; s_ < B; s_++) {
    for (let h = 0; h < H; h++) {
      const v = b.qkv.subarray(s_ * T * ld + 2 * w + h * hd);
      kernels.gemm('nn', T, hd, T, head(b.p, s_, h, H, T), v, b.o.subarray(s_ * T * w + h * hd), false, { ldb: ld, ldc: w });
    }
  }
  kernels.gemm('nn', N, d, w, b.o, proj.w.subarray(col * d), b.y, false); // o · W_o[h0·hd … h1·hd]
}

/**
 * Given dy [N×d] for the layer output: adds the shard's slices of the weight gradients (W_qkv's
 * columns, W_o's rows, the qkv bias) and writes its partial input gradient into dx.
 */
export function attentionShardBackward(kernels: Kernels, s: AttentionShape, weights: AttentionWeights, x: Float32Array,
  rope: RopeTables | undefined, dy: Float32Array, h0: number, h1: number, b: AttentionShardBuffers): void {
  const { batch: B, time: T, d } = s;
  const N = B * T, { hd, w, col } = layout(s, h0, h1), H = h1 - h0, ld = 3 * w;
  const { qkv: qkvW, proj } = weights;
  kernels.gemm('tn', w, d, N, b.o, dy, proj.dw.subarray(col * d), true); // dW_o[rows] += oᵀ·dy
  kernels.gemm('nt', N, w, d, dy, proj.w.subarray(col * d), b.dO, false); // dO = dy·W_o[rows]ᵀ
  const scale = 1 / Math.sqrt(hd);
  for (let s_ = 0; s_ < B; s_++) {
    for (let h = 0; h < H; h++) {
      const at = s_ * T * ld + h * hd;
      const q = b.qkv.subarray(at), keys = b.qkv.subarray(at + w), v = b.qkv.subarray(at + 2 * w);
      const dq = b.dQkv.subarray(at), dk = b.dQkv.subarray(at + w), dv = b.dQkv.subarray(at + 2 * w);
      const p = head(b.p, s_, h, H, T), dO = b.dO.subarray(s_ * T * w + h * hd);
      kernels.gemm('tn', T, hd, T, p, dO, dv, false, { ldb: w, ldc: ld }); // dv = Pᵀ·dO
      kernels.gemm('nt', T, T, hd, dO, v, b.dS, false, { lda: w, ldb: ld }); // dP = dO·vᵀ
      kernels.softmaxBackwardRows(p, b.dS, b.dS, T, T, scale); // dS = P ⊙ (dP − Σ_j dP·P) / √hd; masked entries have P = 0
      kernels.gemm('nn', T, hd, T, b.dS, keys, dq, false, { ldb: ld, ldc: ld }); // dq = dS·k
      kernels.gemm('tn', T, hd, T, b.dS, q, dk, false, { ldb: ld, ldc: ld }); // dk = dSᵀ·q
    }
  }
  if (rope) kernels.rope(b.dQkv, N, ld, 2 * H, hd, T, rope.cos, rope.sin, true);
  for (let part = 0; part < 3; part++) {
    const at = part * d + col, dPart = b.dQkv.subarray(part * w);
    kernels.gemm('tn', d, w, N, x, dPart, qkvW.dw.subarray(at), true, { ldb: ld, ldc: 3 * d }); // dW_qkv[:, cols] += xᵀ·dqkv
    const db = qkvW.db;
    if (db) kernels.biasGrad(dPart, N, w, ld, db.subarray(at));
    kernels.gemm('nt', N, d, w, dPart, qkvW.w.subarray(at), b.dx, part > 0, { lda: ld, ldb: 3 * d }); // dx (+)= dqkv·W_qkv[:, cols]ᵀ
  }
}

/** One shard's buffers for a decode step of B sequences (one new token each). */
export interface AttentionDecodeBuffers {
  qkv: Float32Array; // [B × 3w] the new tokens' q | k | v, q and k after rope
  scores: Float32Array; // [context] one head's scores, then weights, over a sequence's positions
  o: Float32Array; // [B × w]
  y: Float32Array; // [B × d] partial output
}

/** Where one sequence's keys and values are (every head's, [context × d]) and the new token's position. */
export interface CachedSequence { keys: Float32Array; values: Float32Array; position: number }

/**
 * Copies `rows` rows of a shard's k and v (from its [rows × 3w] qkv, keys after rope) into a
 * sequence's cache at positions at, at + 1, …
 */
export function storeKeysValues(s: Pick<AttentionShape, 'heads' | 'd'>, h0: number, h1: number, qkv: Float32Array, rows: number,
  keys: Float32Array, values: Float32Array, at: number): void {
  const { d } = s, hd = d / s.heads, w = (h1 - h0) * hd, col = h0 * hd, ld = 3 * w;
  for (let n = 0; n < rows; n++) {
    keys.set(qkv.subarray(n * ld + w, n * ld + 2 * w), (at + n) * d + col);
    values.set(qkv.subarray(n * ld + 2 * w, n * ld + 3 * w), (at + n) * d + col);
  }
}

/**
 * Heads h0…h1 for one new token per sequence, x [B×d]: the token's q, k, v; its k and v into its
 * sequence's cache at `position`; attention over positions 0…position; the partial output in y.
 * Each step is the full forward's for that row (the kernels compute a GEMM row independently of
 * the others), so the result equals row `position` of a forward over the whole sequence.
 */
export function attentionShardDecode(kernels: Kernels, s: Pick<AttentionShape, 'heads' | 'd'>, weights: AttentionWeights, x: Float32Array,
  rope: RopeTables | undefined, sequences: CachedSequence[], h0: number, h1: number, b: AttentionDecodeBuffers): void {
  const { d } = s, B = sequences.length;
  const { hd, w, col } = layout({ ...s, batch: B, time: 1 }, h0, h1), H = h1 - h0, ld = 3 * w, half = hd / 2;
  const { qkv: qkvW, proj } = weights;
  for (let part = 0; part < 3; part++) {
    const at = part * d + col;
    kernels.gemm('nn', B, w, d, x, qkvW.w.subarray(at), b.qkv.subarray(part * w), false, { ldb: 3 * d, ldc: ld });
    const bias = qkvW.b;
    if (bias) kernels.addBias(b.qkv.subarray(part * w), bias.subarray(at), B, w, ld);
  }
  const scale = 1 / Math.sqrt(hd);
  sequences.forEach((q, n) => {
    const row = b.qkv.subarray(n * ld), p = q.position;
    // One row at position p: the tables from row p on, read as position 0 of a one-row sequence.
    if (rope) kernels.rope(row, 1, ld, 2 * H, hd, 1, rope.cos.subarray(p * half), rope.sin.subarray(p * half), false);
    storeKeysValues(s, h0, h1, row, 1, q.keys, q.values, p);
    const L = p + 1, scores = b.scores.subarray(0, L);
    for (let h = 0; h < H; h++) {
      const at = (h0 + h) * hd;
      kernels.gemm('nt', 1, L, hd, row.subarray(h * hd), q.keys.subarray(at), scores, false, { ldb: d });
      // L one-column blocks: each keeps its only column, times the scale. So the scores are scaled by
      // the kernel the full forward masks with, with its rounding; no position is ahead of this one.
      kernels.causalMaskRows(scores, L, 1, scale);
      kernels.softmaxRows(scores, scores, 1, L);
      kernels.gemm('nn', 1, hd, L, scores, q.values.subarray(at), b.o.subarray(n * w + h * hd), false, { ldb: d });
    }
  });
  kernels.gemm('nn', B, d, w, b.o, proj.w.subarray(col * d), b.y, false);
}

/** The T×T attention weights of sequence b, head h, among a shard's H heads. */
function head(p: Float32Array, b: number, h: number, H: number, T: number): Float32Array {
  const at = (b * H + h) * T * T;
  return p.subarray(at, at + T * T);
}
