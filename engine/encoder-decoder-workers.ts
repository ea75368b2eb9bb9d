// The encoder-decoder (model/t5) on the worker threads: its Switch layers through the engine and
// its dense FFNs' shards on the same pool, as onWorkers does for the language model. Attention
// stays on the calling thread.
import { Arena } from '../kernels/arena.js';
import type { Kernels } from '../kernels/index.js';
import { createArenaKernels } from '../kernels/index.js';
import type { ShardRunner } from '../model/shards.js';
import type { T5SwitchFactory } from '../model/t5/encoder-decoder.js';
import { ParallelShards } from './dense-shards.js';
import { uniformPlan } from './devices.js';
import { SwitchEngine } from './switch-engine.js';
import { WorkerPool } from './worker-pool.js';

export interface EncoderDecoderWorkers {
  kernels: Kernels;
  switchFactory: T5SwitchFactory;
  shardRunner: ShardRunner;
  close(): Promise<void>;
}

export function encoderDecoderOnWorkers(workers: number, timeoutMs = 120_000): EncoderDecoderWorkers {
  const kernels = createArenaKernels(new Arena(64 * 1024 * 1024));
  const pool = WorkerPool.forKernels(kernels, uniformPlan('wasm', workers), timeoutMs);
  return {
    kernels,
    switchFactory: (options, init) => new SwitchEngine({
      ...options, shared: { kernels, pool },
      ...(init.seed !== undefined && { seed: init.seed }), ...(init.layerIndex !== undefined && { layerIndex: init.layerIndex }),
      ...(init.initialize !== undefined && { initialize: init.initialize }),
    }),
    shardRunner: new ParallelShards(pool, kernels.arena),
    close: () => pool.close(),
  };
}
