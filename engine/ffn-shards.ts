// The dense FFNs' shards (model/mlp.ts) on the expert workers: shard c runs on worker c mod W, in
// place in the shared memory. The main thread sums the shards' outputs afterwards, in shard order.
import type { Arena } from '../kernels/arena.js';
import type { MlpShape, MlpShard, MlpWeights, ShardRunner } from '../model/mlp.js';
import type { FfnMessage } from './messages.js';
import type { WorkerPool } from './worker-pool.js';

export class ParallelShards implements ShardRunner {
  constructor(private readonly pool: WorkerPool, private readonly arena: Arena) {}

  forward(s: MlpShape, w: MlpWeights, x: Float32Array, shards: MlpShard[], step: number): Promise<void> {
    return this.run('forward', s, w, w, x, undefined, shards, step);
  }

  backward(s: MlpShape, w: MlpWeights, g: MlpWeights, x: Float32Array, dy: Float32Array, shards: MlpShard[], step: number): Promise<void> {
    return this.run('backward', s, w, g, x, dy, shards, step);
  }

  private async run(phase: FfnMessage['phase'], s: MlpShape, w: MlpWeights, g: MlpWeights, x: Float32Array,
    dy: Float32Array | undefined, shards: MlpShard[], step: number): Promise<void> {
    const at = (a: Float32Array | undefined) => (a ? this.offset(a) : -1);
    const mats = (m: MlpWeights) => ({ up: at(m.up), down: at(m.down), gate: at(m.gate), upBias: at(m.upBias) });
    const perWorker = Array.from({ length: this.pool.size }, () => [] as FfnMessage['shards']);
    shards.forEach((c, i) => {
      const b = c.buffers;
      perWorker[i % this.pool.size]!.push({
        f0: c.f0, f1: c.f1, a: at(b.a), g: at(b.g), h: at(b.h), y: at(b.y), dh: at(b.dh), dg: at(b.dg), dx: at(b.dx),
      });
    });
    const base = { kind: 'ffn', phase, step, n: s.n, d: s.d, f: s.f, activation: s.activation, x: at(x), dy: at(dy), weights: mats(w), grads: mats(g) } as const;
    await this.pool.runAll(perWorker.map((list) => (list.length ? { ...base, shards: list } : undefined)));
  }

  private offset(a: Float32Array): number {
    if (!this.arena.owns(a)) throw new Error('engine: a dense FFN array is not in the shared memory');
    return a.byteOffset;
  }
}
