// The work a step sends each worker thread, and the dispatch plan. Each message is one of the Work
// objects below sent through engine/wire.ts: its arrays cross as offsets into the shared memory.
import type { GpujsMode } from '../kernels/gpujs/device.js';
import type { AttentionShape, AttentionShard, AttentionWeights, RopeTables } from '../model/attention.js';
import type { ExpertDropout, ExpertWeights } from '../model/expert.js';
import type { FfnShape, FfnWeights } from '../model/ffn.js';
import type { RouterBackwardArrays, RouterConfig } from '../model/router.js';
import type { FfnShard } from '../model/shards.js';
import type { ExpertTask } from '../model/switch-layer.js';
import type { Wire } from './wire.js';

/** What a worker computes its experts' FFNs with: the CPU kernels (wasm), or gpu.js in a mode (default: its fastest here). */
export type ExpertDevice = { kind: 'wasm' } | { kind: 'gpujs'; mode?: GpujsMode };

export type Phase = 'forward' | 'backward';

/** A Switch layer's experts for one phase of a step. */
export interface SwitchWork {
  kind: 'switch';
  phase: Phase;
  step: number;
  tokens: number;
  /** k, the choices per token: slot buffers hold T·k rows. */
  topK: number;
  shape: FfnShape;
  /** The layer's stacked [E×…] expert weights and their gradients. */
  weights: ExpertWeights;
  grads: ExpertWeights;
  dropout?: Omit<ExpertDropout, 'expert'>;
  /** Forward: x [T×d] in, ySlots [T·k×d] out. Backward: dy [T×d] in, dxSlots [T·k×d] out. */
  x: Float32Array;
  ySlots: Float32Array;
  dy?: Float32Array;
  dxSlots?: Float32Array;
  /** The dispatch plan: `jobs` rows (writePlan), every expert with tokens this step. */
  plan: Int32Array;
  jobs: number;
  /** The experts this worker owns, in the order to compute them; any worker may take chunks of any expert in the plan. */
  own: number[];
  sharing: Sharing;
  /** Backward only, to one worker: the router's backward. */
  router?: { config: RouterConfig; arrays: RouterBackwardArrays };
}

/**
 * Where a phase's work sharing lives (engine/chunk-board.ts): the board's words, sized for `jobs`
 * jobs and `workers` workers, and the partial slots, stacked as expert weights are, `perWorker` of
 * them for each worker, worker w's first at w · perWorker.
 */
export interface Sharing {
  board: Int32Array;
  jobs: number;
  workers: number;
  partials?: ExpertWeights;
  perWorker: number;
}

/** Shards of a dense FFN (model/ffn.ts) for one phase of a step. */
export interface FfnWork {
  kind: 'ffn';
  phase: Phase;
  shape: FfnShape;
  weights: FfnWeights;
  /** Backward: the gradients the shards add into. */
  grads?: FfnWeights;
  x: Float32Array;
  dy?: Float32Array;
  shards: FfnShard[];
}

/** Head shards of an attention layer (model/attention.ts) for one phase of a step. */
export interface AttentionWork {
  kind: 'attention';
  phase: Phase;
  shape: AttentionShape;
  weights: AttentionWeights;
  x: Float32Array;
  rope?: RopeTables;
  dy?: Float32Array;
  shards: AttentionShard[];
}

export type Work = SwitchWork | FfnWork | AttentionWork;
export type WorkerMessage = Wire<Work>;

export interface WorkerReport {
  /** Milliseconds the worker spent computing this message's jobs. */
  busyMs: number;
}

/** One expert's share of a step, as the plan holds it. */
export interface ExpertJob {
  expert: number;
  n: number;
  /** Rows per chunk that other workers may take (model/expert.ts ROW_BLOCK; n: the expert stays whole). */
  chunkRows: number;
  /** Byte offsets of the expert's token indices, gates, slots (n each) and its buffer block. */
  tokens: number; gates: number; slots: number;
  block: number; blockLength: number;
}

export function expertJob(task: ExpertTask, chunkRows: number): ExpertJob {
  return {
    expert: task.expert, n: task.tokens.length, chunkRows,
    tokens: task.tokens.byteOffset, gates: task.gates.byteOffset, slots: task.slots.byteOffset,
    block: task.block.byteOffset, blockLength: task.block.length,
  };
}

const PLAN_FIELDS = ['expert', 'n', 'chunkRows', 'tokens', 'gates', 'slots', 'block', 'blockLength'] as const satisfies readonly (keyof ExpertJob)[];
/** Int32 words per job in the plan. Byte offsets beyond 2 GB wrap to negative words; reading takes them back unsigned. */
export const PLAN_ROW = PLAN_FIELDS.length;

export function writePlan(plan: Int32Array, jobs: readonly ExpertJob[]): void {
  jobs.forEach((job, i) => PLAN_FIELDS.forEach((field, k) => { plan[i * PLAN_ROW + k] = job[field]; }));
}

export function readPlan(plan: Int32Array, count: number): ExpertJob[] {
  return Array.from({ length: count }, (_, i) => {
    const job: Partial<ExpertJob> = {};
    PLAN_FIELDS.forEach((field, k) => { job[field] = plan[i * PLAN_ROW + k]! >>> 0; });
    return job as ExpertJob;
  });
}
