// A language model on the worker threads: its Switch layers through the engine, its dense layers'
// shards on the same pool. One pool serves every layer; every layer's arrays live in its memory.
import type { ArenaKernels } from '../kernels/index.js';
import type { ShardRunner } from '../model/shards.js';
import type { SwitchFactory } from '../model/transformer.js';
import { ParallelShards } from './dense-shards.js';
import { SwitchEngine } from './switch-engine.js';
import type { WorkerPool } from './worker-pool.js';

export function onWorkers(kernels: ArenaKernels, pool: WorkerPool): { switchFactory: SwitchFactory; shardRunner: ShardRunner } {
  return {
    switchFactory: (options, init) => new SwitchEngine({ ...options, ...init, shared: { kernels, pool } }),
    shardRunner: new ParallelShards(pool, kernels.arena),
  };
}
