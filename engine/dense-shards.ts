// The dense layers' shards (model/shards.ts: attention's heads, the FFN's hidden units) on the
// expert workers: shard c runs on worker c mod W, in place in the shared memory. The caller sums
// the shards' outputs afterwards, in shard order.
import type { Arena } from '../kernels/arena.js';
import type { AttentionShape, AttentionShard, AttentionWeights, RopeTables } from '../model/attention.js';
import type { MlpShape, MlpShard, MlpWeights } from '../model/mlp.js';
import type { ShardRunner } from '../model/shards.js';
import type { AttentionMessage, FfnMessage } from './messages.js';
import type { WorkerPool } from './worker-pool.js';

export class ParallelShards implements ShardRunner {
  constructor(private readonly pool: WorkerPool, private readonly arena: Arena) {}

  ffnForward(s: MlpShape, w: MlpWeights, x: Float32Array, shards: MlpShard[], step: number): Promise<void> {
    return this.ffn('forward', s, w, w, x, undefined, shards, step);
  }

  ffnBackward(s: MlpShape, w: MlpWeights, g: MlpWeights, x: Float32Array, dy: Float32Array, shards: MlpShard[], step: number): Promise<void> {
    return this.ffn('backward', s, w, g, x, dy, shards, step);
  }

  attentionForward(s: AttentionShape, w: AttentionWeights, x: Float32Array, rope: RopeTables | undefined, shards: AttentionShard[],
    step: number): Promise<void> {
    return this.attention('forward', s, w, x, rope, undefined, shards, step);
  }

  attentionBackward(s: AttentionShape, w: AttentionWeights, x: Float32Array, rope: RopeTables | undefined, dy: Float32Array,
    shards: AttentionShard[], step: number): Promise<void> {
    return this.attention('backward', s, w, x, rope, dy, shards, step);
  }

  private async ffn(phase: FfnMessage['phase'], s: MlpShape, w: MlpWeights, g: MlpWeights, x: Float32Array,
    dy: Float32Array | undefined, shards: MlpShard[], step: number): Promise<void> {
    const at = (a: Float32Array | undefined) => this.offset(a);
    const mats = (m: MlpWeights) => ({ up: at(m.up), down: at(m.down), gate: at(m.gate), upBias: at(m.upBias) });
    const base = { kind: 'ffn', phase, step, n: s.n, d: s.d, f: s.f, activation: s.activation, x: at(x), dy: at(dy), weights: mats(w), grads: mats(g) } as const;
    await this.run(shards.map(({ f0, f1, buffers: b }) => ({
      f0, f1, a: at(b.a), g: at(b.g), h: at(b.h), y: at(b.y), dh: at(b.dh), dg: at(b.dg), dx: at(b.dx),
    })), (list) => ({ ...base, shards: list }));
  }

  private async attention(phase: AttentionMessage['phase'], s: AttentionShape, w: AttentionWeights, x: Float32Array,
    rope: RopeTables | undefined, dy: Float32Array | undefined, shards: AttentionShard[], step: number): Promise<void> {
    const at = (a: Float32Array | undefined) => this.offset(a);
    const base = {
      kind: 'attention', phase, step, batch: s.batch, time: s.time, heads: s.heads, d: s.d, x: at(x), dy: at(dy),
      cos: at(rope?.cos), sin: at(rope?.sin),
      weights: { qkv: at(w.qkv.w), qkvBias: at(w.qkv.b), proj: at(w.proj.w) },
      grads: { qkv: at(w.qkv.dw), qkvBias: at(w.qkv.db), proj: at(w.proj.dw) },
    } as const;
    await this.run(shards.map(({ h0, h1, buffers: b }) => ({
      h0, h1, qkv: at(b.qkv), p: at(b.p), o: at(b.o), y: at(b.y), dO: at(b.dO), dQkv: at(b.dQkv), dS: at(b.dS), dx: at(b.dx),
    })), (list) => ({ ...base, shards: list }));
  }

  /** Shard c to worker c mod W, one message per busy worker. */
  private async run<S>(shards: S[], message: (list: S[]) => FfnMessage | AttentionMessage): Promise<void> {
    const perWorker = Array.from({ length: this.pool.size }, () => [] as S[]);
    shards.forEach((shard, c) => perWorker[c % this.pool.size]!.push(shard));
    await this.pool.runAll(perWorker.map((list) => (list.length ? message(list) : undefined)));
  }

  /** The byte offset of an array in the shared memory; −1 for an absent one. */
  private offset(a: Float32Array | undefined): number {
    if (!a) return -1;
    if (!this.arena.owns(a)) throw new Error('engine: a dense layer\'s array is not in the shared memory');
    return a.byteOffset;
  }
}
