// The dense layers' tensor-parallel shards, attention's heads (attention.ts) and the FFN's hidden
// units (mlp.ts), and what runs them: this thread (below), or the worker threads
// (engine/dense-shards.ts). Each layer has a fixed number of shards, whose partial outputs the
// caller sums in shard order, so the results are the same wherever the shards run.
import type { Kernels } from '../kernels/index.js';
import {
  type AttentionShape, type AttentionShard, type AttentionWeights, type RopeTables, attentionShardBackward, attentionShardForward,
} from './attention.js';
import { type MlpShape, type MlpShard, type MlpWeights, mlpShardBackward, mlpShardForward } from './mlp.js';

/** Shards per dense layer: two, the worker count of this project's machines, at most one per head. */
export const DENSE_SHARDS = 2;

/** Shard c of `shards` over 0…total: [start, end). */
export function shardRange(total: number, shards: number, c: number): [number, number] {
  return [Math.floor((c * total) / shards), Math.floor(((c + 1) * total) / shards)];
}

export interface ShardRunner {
  ffnForward(s: MlpShape, w: MlpWeights, x: Float32Array, shards: MlpShard[], step: number): void | Promise<void>;
  ffnBackward(s: MlpShape, w: MlpWeights, g: MlpWeights, x: Float32Array, dy: Float32Array, shards: MlpShard[], step: number): void | Promise<void>;
  attentionForward(s: AttentionShape, w: AttentionWeights, x: Float32Array, rope: RopeTables | undefined, shards: AttentionShard[],
    step: number): void | Promise<void>;
  attentionBackward(s: AttentionShape, w: AttentionWeights, x: Float32Array, rope: RopeTables | undefined, dy: Float32Array,
    shards: AttentionShard[], step: number): void | Promise<void>;
}

export function inProcessShards(k: Kernels): ShardRunner {
  return {
    ffnForward: (s, w, x, shards) => { for (const c of shards) mlpShardForward(k, s, w, x, c.f0, c.f1, c.buffers); },
    ffnBackward: (s, w, g, x, dy, shards) => { for (const c of shards) mlpShardBackward(k, s, w, g, x, dy, c.f0, c.f1, c.buffers); },
    attentionForward: (s, w, x, rope, shards) => {
      for (const c of shards) attentionShardForward(k, s, w, x, rope, c.h0, c.h1, c.buffers);
    },
    attentionBackward: (s, w, x, rope, dy, shards) => {
      for (const c of shards) attentionShardBackward(k, s, w, x, rope, dy, c.h0, c.h1, c.buffers);
    },
  };
}
