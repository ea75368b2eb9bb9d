// What crosses between the main thread and an expert worker. Only byte offsets into the shared
// memory and a few numbers: never activations or weights.
import type { GpujsMode } from '../kernels/gpujs/device.js';
import type { Activation } from '../model/config.js';
import type { RouterBackwardArrays, RouterConfig } from '../model/router.js';
import type { ExpertTask, SwitchLayer } from '../model/switch-layer.js';

/** What a worker computes its experts' FFNs with: the WebAssembly kernels, or gpu.js in a mode (default: its fastest here). */
export type ExpertDevice = { kind: 'wasm' } | { kind: 'gpujs'; mode?: GpujsMode };

/** A layer's weights and gradients as offsets, so one pool of workers serves any layer. */
export interface LayerRef {
  d: number;
  f: number;
  activation: Activation;
  seed: number;
  layerIndex: number;
  dropoutRate: number;
  /** Byte offsets of the stacked [E×…] weights and their gradients; wGate/gGate −1 unless swiglu. */
  wIn: number; wOut: number; wGate: number;
  gIn: number; gOut: number; gGate: number;
}

/** One expert's share of a step. */
export interface ExpertJob {
  expert: number;
  n: number;
  /** Rows per chunk that other workers may take (model/expert.ts CHUNK_ROWS; n: the expert stays whole). */
  chunkRows: number;
  /** Byte offsets of the expert's token indices, gates, slots (n each) and its buffer block. */
  tokens: number; gates: number; slots: number;
  block: number; blockLength: number;
}

/**
 * The router's backward (model/router.ts), given to one worker in the backward phase: byte
 * offsets of RouterBackwardArrays (jitter −1 when absent). The gates' gradients come from every
 * expert's forward output, which the plan locates.
 */
export interface RouterJob {
  config: RouterConfig;
  probs: number; lse: number; expertIndex: number; gates: number; tokensPerExpert: number;
  xr: number; weight: number; jitter: number; dGates: number; dLogits: number; dWeight: number; dx: number;
}

/** 'slow': for tests, the worker sleeps SLOW_MS before computing, so that the others take its chunks. */
export type Fault = 'throw' | 'exit' | 'hang' | 'slow';
export const SLOW_MS = 400;

/**
 * Where a phase's work sharing lives (engine/chunk-board.ts), as byte offsets: the board's words
 * (sized for `jobs` jobs and `workers` workers), and the partial slots (each d·f floats per
 * weight: w_in, w_out, w_gate), `perWorker` of them for each worker, worker w's first at w · perWorker.
 */
export interface SharingRef {
  board: number;
  jobs: number;
  workers: number;
  partials: number;
  perWorker: number;
}

/** A Switch layer's experts for one phase of a step. */
export interface StepMessage {
  kind: 'switch';
  phase: 'forward' | 'backward';
  step: number;
  training: boolean;
  tokens: number;
  layer: LayerRef;
  /** k, the choices per token: slot buffers hold T·k rows. */
  topK: number;
  /** Forward: x [T×d] in, ySlots [T·k×d] out. Backward: dy [T×d] in, dxSlots [T·k×d] out. Byte offsets; the backward ones are −1 in forward. */
  x: number;
  ySlots: number;
  dy: number;
  dxSlots: number;
  /** The dispatch plan in shared memory: byte offset of `jobs` rows (writePlan), every expert with tokens this step. */
  plan: number;
  jobs: number;
  /** The experts this worker owns, in the order to compute them; any worker may take chunks of any expert in the plan. */
  own: number[];
  sharing: SharingRef;
  /** Backward only, to one worker: the router's backward. */
  router?: RouterJob;
  /** Fault injection for tests: the worker fails this way instead of computing. */
  fault?: Fault;
}

/** Shards of a dense FFN (model/mlp.ts) for one phase of a step. Offsets in bytes; −1: absent. */
export interface FfnMessage {
  kind: 'ffn';
  phase: 'forward' | 'backward';
  step: number;
  n: number; d: number; f: number;
  activation: Activation;
  x: number; dy: number;
  weights: { up: number; down: number; gate: number; upBias: number };
  grads: { up: number; down: number; gate: number; upBias: number };
  shards: { f0: number; f1: number; a: number; g: number; h: number; y: number; dh: number; dg: number; dx: number }[];
  fault?: Fault;
}

/** Head shards of an attention layer (model/attention.ts) for one phase of a step. Offsets in bytes; −1: absent. */
export interface AttentionMessage {
  kind: 'attention';
  phase: 'forward' | 'backward';
  step: number;
  batch: number; time: number; heads: number; d: number;
  x: number; dy: number;
  /** The rotary tables, [time × hd/2] each; −1 with learned positions. */
  cos: number; sin: number;
  /** W_qkv [d×3d], its bias [3d], W_o [d×d], and their gradients. */
  weights: { qkv: number; qkvBias: number; proj: number };
  grads: { qkv: number; qkvBias: number; proj: number };
  shards: { h0: number; h1: number; qkv: number; p: number; o: number; y: number; dO: number; dQkv: number; dS: number; dx: number }[];
  fault?: Fault;
}

export type WorkerMessage = StepMessage | FfnMessage | AttentionMessage;

export interface WorkerReport {
  /** Milliseconds the worker spent computing this message's jobs. */
  busyMs: number;
}

export function layerRef(layer: SwitchLayer): LayerRef {
  const { weights: w, grads: g, config: c } = layer;
  return {
    d: c.dModel, f: c.dFF, activation: c.activation, seed: layer.seed, layerIndex: layer.layerIndex,
    dropoutRate: c.expertDropout,
    wIn: w.wIn.byteOffset, wOut: w.wOut.byteOffset, wGate: w.wGate ? w.wGate.byteOffset : -1,
    gIn: g.wIn.byteOffset, gOut: g.wOut.byteOffset, gGate: g.wGate ? g.wGate.byteOffset : -1,
  };
}

export function expertJob(task: ExpertTask, chunkRows: number): ExpertJob {
  return {
    expert: task.expert, n: task.tokens.length, chunkRows,
    tokens: task.tokens.byteOffset, gates: task.gates.byteOffset, slots: task.slots.byteOffset,
    block: task.block.byteOffset, blockLength: task.block.length,
  };
}

export function routerJob(config: RouterConfig, a: RouterBackwardArrays): RouterJob {
  const { dModel, numExperts, topK, auxLossCoef, zLossCoef, normalizeTopK } = config;
  return {
    config: { dModel, numExperts, topK, auxLossCoef, zLossCoef, normalizeTopK },
    probs: a.probs.byteOffset, lse: a.lse.byteOffset, expertIndex: a.expertIndex.byteOffset, gates: a.gates.byteOffset,
    tokensPerExpert: a.tokensPerExpert.byteOffset, xr: a.xr.byteOffset, weight: a.weight.byteOffset, jitter: a.jitter?.byteOffset ?? -1,
    dGates: a.dGates.byteOffset, dLogits: a.dLogits.byteOffset, dWeight: a.dWeight.byteOffset, dx: a.dx.byteOffset,
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
