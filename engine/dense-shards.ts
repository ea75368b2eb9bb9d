// The dense layers' shards (model/shards.ts: attention's heads, the FFN's hidden units) on the
// worker threads: shard c runs on worker c mod W, in place in the shared memory. The caller sums
// the shards' outputs afterwards, in shard order.
import type { Arena } from '../kernels/arena.js';
import type { AttentionShape, AttentionShard, AttentionWeights, RopeTables } from '../model/attention.js';
import type { FfnShape, FfnWeights } from '../model/ffn.js';
import type { FfnShard, ShardRunner } from '../model/shards.js';
import type { AttentionWork, FfnWork } from './messages.js';
import { toWire } from './wire.js';
import type { WorkerPool } from './worker-pool.js';

export class ParallelShards implements ShardRunner {
  constructor(private readonly pool: WorkerPool, private readonly arena: Arena) {}

  ffnForward(shape: FfnShape, weights: FfnWeights, x: Float32Array, shards: FfnShard[]): Promise<void> {
    return this.run(shards, (list): FfnWork => ({ kind: 'ffn', phase: 'forward', shape, weights, x, shards: list }));
  }

  ffnBackward(shape: FfnShape, weights: FfnWeights, grads: FfnWeights, x: Float32Array, dy: Float32Array, shards: FfnShard[]): Promise<void> {
    return this.run(shards, (list): FfnWork => ({ kind: 'ffn', phase: 'backward', shape, weights, grads, x, dy, shards: list }));
  }

  attentionForward(shape: AttentionShape, weights: AttentionWeights, x: Float32Array, rope: RopeTables | undefined,
    shards: AttentionShard[]): Promise<void> {
    return this.run(shards, (list): AttentionWork => ({ kind: 'attention', phase: 'forward', shape, weights, x, ...(rope && { rope }), shards: list }));
  }

  attentionBackward(shape: AttentionShape, weights: AttentionWeights, x: Float32Array, rope: RopeTables | undefined, dy: Float32Array,
    shards: AttentionShard[]): Promise<void> {
    return this.run(shards, (list): AttentionWork => ({ kind: 'attention', phase: 'backward', shape, weights, x, ...(rope && { rope }), dy, shards: list }));
  }

  /** Shard c to worker c mod W, one message per busy worker. */
  private async run<S>(shards: S[], work: (list: S[]) => FfnWork | AttentionWork): Promise<void> {
    const perWorker = Array.from({ length: this.pool.size }, () => [] as S[]);
    shards.forEach((shard, c) => perWorker[c % this.pool.size]!.push(shard));
    await this.pool.runAll(perWorker.map((list) => (list.length ? toWire(this.arena, work(list)) : undefined)));
  }
}
