// T5 attention, for B sequences, as transformers' SwitchTransformersAttention computes it:
//   q = x·W_q,  k = m·W_k,  v = m·W_v          (m = x for self-attention, the encoder's output for cross-attention)
//   per head: S = q·kᵀ + bias (no 1/√d_kv scaling: T5 folds it into the initialization)
//             S = −∞ at padded keys (and after the query in the decoder's causal self-attention)
//             P = softmax(S);  o = P·v
//   y = o·W_o
// No biases on the projections. Weights are stored [in × out]: W_q, W_k, W_v [d × inner], W_o [inner × d],
// inner = heads · d_kv. The position bias (relative-position.ts) is the same for every block of a stack.
import type { Kernels } from '../../kernels/index.js';
import type { Workspace } from '../workspace.js';

export interface AttentionWeights { q: Float32Array; k: Float32Array; v: Float32Array; o: Float32Array }

export interface AttentionShape {
  batch: number;
  /** Query and key positions per sequence. */
  queries: number;
  keys: number;
  heads: number;
  dKv: number;
  d: number;
}

export interface AttentionMasks {
  /** [heads × queries × keys], added to every sequence's scores. */
  bias?: Float32Array;
  /** Keys after the query are masked (queries and keys are the same positions). */
  causal?: boolean;
  /** [batch × keys]: 0 marks a padded key. */
  keyMask?: Uint8Array;
}

/** What the forward keeps for the backward. */
export interface AttentionCache { x: Float32Array; m: Float32Array; q: Float32Array; k: Float32Array; v: Float32Array; p: Float32Array; o: Float32Array }

const inner = (s: AttentionShape) => s.heads * s.dKv;

/** Sets padded keys' scores to −∞: scores [batch × heads × queries × keys]. */
function maskKeys(scores: Float32Array, s: AttentionShape, keyMask: Uint8Array): void {
  const { batch: B, heads: H, queries: Q, keys: K } = s;
  for (let b = 0; b < B; b++) {
    for (let j = 0; j < K; j++) {
      if (keyMask[b * K + j]) continue;
      for (let r = b * H * Q; r < (b + 1) * H * Q; r++) scores[r * K + j] = -Infinity;
    }
  }
}

/** y [B·queries × d] for queries from x [B·queries × d] over keys and values from m [B·keys × d]. */
export function attentionForward(kernels: Kernels, ws: Workspace, s: AttentionShape, w: AttentionWeights, x: Float32Array,
  m: Float32Array, masks: AttentionMasks): { y: Float32Array; cache: AttentionCache } {
  const { batch: B, queries: Q, keys: K, heads: H, dKv, d } = s;
  const I = inner(s), N = B * Q, M = B * K;
  const q = ws.scratch(N * I), k = ws.scratch(M * I), v = ws.scratch(M * I);
  kernels.gemm('nn', N, I, d, x, w.q, q, false);
  kernels.gemm('nn', M, I, d, m, w.k, k, false);
  kernels.gemm('nn', M, I, d, m, w.v, v, false);
  const p = ws.scratch(B * H * Q * K), o = ws.scratch(N * I);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      kernels.gemm('nt', Q, K, dKv, q.subarray(b * Q * I + h * dKv), k.subarray(b * K * I + h * dKv), scores(p, s, b, h), false, { lda: I, ldb: I });
    }
  }
  if (masks.bias) {
    for (let b = 0; b < B; b++) { const block = p.subarray(b * H * Q * K, (b + 1) * H * Q * K); kernels.add(block, masks.bias, block); }
  }
  if (masks.causal) kernels.causalMaskRows(p, B * H * Q, K, 1);
  if (masks.keyMask) maskKeys(p, s, masks.keyMask);
  kernels.softmaxRows(p, p, B * H * Q, K);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      kernels.gemm('nn', Q, dKv, K, scores(p, s, b, h), v.subarray(b * K * I + h * dKv), o.subarray(b * Q * I + h * dKv), false, { ldb: I, ldc: I });
    }
  }
  const y = ws.scratch(N * d);
  kernels.gemm('nn', N, d, I, o, w.o, y, false);
  return { y, cache: { x, m, q, k, v, p, o } };
}

/**
 * Given dy = d loss / d y: adds the weights' gradients into g, writes d loss / d x into dx and
 * adds d loss / d m into dm (for self-attention pass the same array as dx: it then holds both).
 * `dBias` [heads × queries × keys], when given, accumulates the position bias's gradient.
 */
export function attentionBackward(kernels: Kernels, ws: Workspace, s: AttentionShape, w: AttentionWeights, g: AttentionWeights,
  c: AttentionCache, dy: Float32Array, dx: Float32Array, dm: Float32Array, dBias?: Float32Array): void {
  const { batch: B, queries: Q, keys: K, heads: H, dKv, d } = s;
  const I = inner(s), N = B * Q, M = B * K;
  kernels.gemm('tn', I, d, N, c.o, dy, g.o, true); // dW_o += oᵀ·dy
  const dO = ws.scratch(N * I), dq = ws.scratch(N * I), dk = ws.scratch(M * I), dv = ws.scratch(M * I), dS = ws.scratch(Q * K);
  kernels.gemm('nt', N, I, d, dy, w.o, dO, false); // dO = dy·W_oᵀ
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const at = b * Q * I + h * dKv, atKey = b * K * I + h * dKv, p = scores(c.p, s, b, h);
      kernels.gemm('tn', K, dKv, Q, p, dO.subarray(at), dv.subarray(atKey), false, { ldb: I, ldc: I }); // dv = Pᵀ·dO
      kernels.gemm('nt', Q, K, dKv, dO.subarray(at), c.v.subarray(atKey), dS, false, { lda: I, ldb: I }); // dP = dO·vᵀ
      kernels.softmaxBackwardRows(p, dS, dS, Q, K, 1); // dS = P ⊙ (dP − Σ dP·P); masked keys have P = 0
      if (dBias) { const at_ = h * Q * K, block = dBias.subarray(at_, at_ + Q * K); kernels.add(block, dS, block); }
      kernels.gemm('nn', Q, dKv, K, dS, c.k.subarray(atKey), dq.subarray(at), false, { ldb: I, ldc: I }); // dq = dS·k
      kernels.gemm('tn', K, dKv, Q, dS, c.q.subarray(at), dk.subarray(atKey), false, { ldb: I, ldc: I }); // dk = dSᵀ·q
    }
  }
  kernels.gemm('tn', d, I, N, c.x, dq, g.q, true); // dW_q += xᵀ·dq
  kernels.gemm('tn', d, I, M, c.m, dk, g.k, true);
  kernels.gemm('tn', d, I, M, c.m, dv, g.v, true);
  kernels.gemm('nt', N, d, I, dq, w.q, dx, false); // dx = dq·W_qᵀ
  kernels.gemm('nt', M, d, I, dk, w.k, dm, true); // dm += dk·W_kᵀ + dv·W_vᵀ
  kernels.gemm('nt', M, d, I, dv, w.v, dm, true);
}

/** The keys and values of one decoder block over the positions decoded so far, for B sequences. */
export interface KvCache {
  k: Float32Array; // [B × capacity × inner]
  v: Float32Array;
  /** Positions each sequence has room for. */
  capacity: number;
  /** Positions filled. */
  length: number;
}

/** Keys and values of m [B·keys × d], all at once: the encoder's output for cross-attention. */
export function projectKeys(kernels: Kernels, ws: Workspace, s: AttentionShape, w: AttentionWeights, m: Float32Array): KvCache {
  const I = inner(s), M = s.batch * s.keys;
  const cache = { k: ws.scratch(M * I), v: ws.scratch(M * I), capacity: s.keys, length: s.keys };
  kernels.gemm('nn', M, I, s.d, m, w.k, cache.k, false);
  kernels.gemm('nn', M, I, s.d, m, w.v, cache.v, false);
  return cache;
}

/**
 * One query per sequence, x [B × d], attending to the cache. With `append`, the query's own key
 * and value are appended first (self-attention: it sees itself and every earlier position).
 * `biasRow` [heads × keys] is the position bias of the query's position; `keyMask` [B × keys].
 */
export function attentionStep(kernels: Kernels, ws: Workspace, s: Pick<AttentionShape, 'batch' | 'heads' | 'dKv' | 'd'>,
  w: AttentionWeights, x: Float32Array, cache: KvCache, append: boolean, biasRow?: Float32Array, keyMask?: Uint8Array): Float32Array {
  const { batch: B, heads: H, dKv, d } = s;
  const I = H * dKv, stride = cache.capacity * I;
  const q = ws.scratch(B * I);
  kernels.gemm('nn', B, I, d, x, w.q, q, false);
  if (append) {
    if (cache.length >= cache.capacity) throw new RangeError(`attention: the key/value cache holds ${cache.capacity} positions; all are used`);
    kernels.gemm('nn', B, I, d, x, w.k, cache.k.subarray(cache.length * I), false, { ldc: stride });
    kernels.gemm('nn', B, I, d, x, w.v, cache.v.subarray(cache.length * I), false, { ldc: stride });
    cache.length++;
  }
  const K = cache.length, p = ws.scratch(B * H * K), o = ws.scratch(B * I);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const row = p.subarray((b * H + h) * K, (b * H + h + 1) * K);
      kernels.gemm('nt', 1, K, dKv, q.subarray(b * I + h * dKv), cache.k.subarray(b * stride + h * dKv), row, false, { ldb: I });
      if (biasRow) kernels.add(row, biasRow.subarray(h * K, (h + 1) * K), row);
      if (keyMask) for (let j = 0; j < K; j++) if (!keyMask[b * K + j]) row[j] = -Infinity;
    }
  }
  kernels.softmaxRows(p, p, B * H, K);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      const row = p.subarray((b * H + h) * K, (b * H + h + 1) * K);
      kernels.gemm('nn', 1, dKv, K, row, cache.v.subarray(b * stride + h * dKv), o.subarray(b * I + h * dKv), false, { ldb: I });
    }
  }
  const y = ws.scratch(B * d);
  kernels.gemm('nn', B, d, I, o, w.o, y, false);
  return y;
}

/** Sequence b, head h's [queries × keys] block of the scores. */
function scores(p: Float32Array, s: AttentionShape, b: number, h: number): Float32Array {
  const size = s.queries * s.keys, at = (b * s.heads + h) * size;
  return p.subarray(at, at + size);
}
