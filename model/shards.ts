// The dense layers' tensor-parallel shards, attention's heads (attention.ts) and the FFN's hidden
// units (ffn.ts), and what runs them: this thread (below), or other threads (engine/). Each layer
// has a fixed number of shards, whose partial outputs the caller sums in shard order, so the
// results are the same wherever the shards run.
import type { Kernels } from '../kernels/index.js';
import {
  type AttentionShape, type AttentionShard, type AttentionWeights, type RopeTables, attentionShardBackward, attentionShardForward,
} from './attention.js';
import { type Columns, type FfnBuffers, type FfnShape, type FfnWeights, ffnBackward, ffnForward } from './ffn.js';

/** Shards per dense layer: two, the worker count of this project's machines, at most one per head. */
export const DENSE_SHARDS = 2;

/** Shard c of `shards` over 0…total: [start, end). */
export function shardRange(total: number, shards: number, c: number): [number, number] {
  return [Math.floor((c * total) / shards), Math.floor(((c + 1) * total) / shards)];
}

/** An FFN shard: its hidden units and its step's buffers. */
export interface FfnShard { cols: Columns; buffers: FfnBuffers }

export interface ShardRunner {
  ffnForward(s: FfnShape, w: FfnWeights, x: Float32Array, shards: FfnShard[]): void | Promise<void>;
  /** Adds the shards' slices of the weight gradients into g. */
  ffnBackward(s: FfnShape, w: FfnWeights, g: FfnWeights, x: Float32Array, dy: Float32Array, shards: FfnShard[]): void | Promise<void>;
  attentionForward(s: AttentionShape, w: AttentionWeights, x: Float32Array, rope: RopeTables | undefined, shards: AttentionShard[]): void | Promise<void>;
  attentionBackward(s: AttentionShape, w: AttentionWeights, x: Float32Array, rope: RopeTables | undefined, dy: Float32Array,
    shards: AttentionShard[]): void | Promise<void>;
}

export function inProcessShards(kernels: Kernels): ShardRunner {
  return {
    ffnForward: (s, w, x, shards) => { for (const c of shards) ffnForward(kernels, s, w, x, c.buffers, c.cols); },
    ffnBackward: (s, w, g, x, dy, shards) => { for (const c of shards) ffnBackward(kernels, s, w, g, x, dy, c.buffers, c.cols, true); },
    attentionForward: (s, w, x, rope, shards) => {
      for (const c of shards) attentionShardForward(kernels, s, w, x, rope, c.h0, c.h1, c.buffers);
    },
    attentionBackward: (s, w, x, rope, dy, shards) => {
      for (const c of shards) attentionShardBackward(kernels, s, w, x, rope, dy, c.h0, c.h1, c.buffers);
    },
  };
}
