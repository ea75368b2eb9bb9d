// An expert worker: runs on a Piscina thread, instantiates the kernels against the shared memory
// once, then computes whatever each message names (experts, or shards of a dense layer), in place.
import { type MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { Arena } from '../kernels/arena.js';
import { WasmKernels, type WasmVariant } from '../kernels/wasm/backend.js';
import { GpujsExpertFfn } from '../kernels/gpujs/expert-ffn.js';
import {
  type ExpertWeights, expertBuffers, expertInputGradient, expertInputs, expertOutputGradient, expertOutputs, expertRows, ffnBackward,
  ffnForward, gateGradients,
} from '../model/expert.js';
import { routerBackward } from '../model/router.js';
import { type LinearParams, attentionShardBackward, attentionShardForward } from '../model/attention.js';
import { type MlpWeights, mlpShardBackward, mlpShardForward } from '../model/mlp.js';
import { ChunkBoard } from './chunk-board.js';
import { Doorbell } from './doorbell.js';
import {
  type AttentionMessage, type ExpertDevice, type ExpertJob, type FfnMessage, PLAN_ROW, type RouterJob, SLOW_MS, type StepMessage,
  type WorkerMessage, readPlan,
} from './messages.js';

export interface ExpertWorkerData {
  memory: WebAssembly.Memory;
  variant: WasmVariant;
  /** Byte offset of this worker's GEMM scratch in the shared memory. */
  scratch: number;
  /** What computes the expert FFNs; gathers, scatters and the dense FFN shards always use WebAssembly. */
  device: ExpertDevice;
}

const { memory, variant, scratch, device } = workerData as ExpertWorkerData;
const arena = Arena.attach(memory);
const kernels = new WasmKernels(arena, variant, scratch);
const gpujs = device.kind === 'gpujs' ? GpujsExpertFfn.create(device.mode) : undefined;
gpujs?.catch(() => {}); // a mode that is missing here fails the first step, which names this worker

function weights(m: StepMessage, expert: number, gradients: boolean): ExpertWeights {
  const { d, f } = m.layer;
  const size = d * f;
  const at = (offset: number) => arena.f32At(offset + expert * size * 4, size);
  const l = m.layer;
  const [wIn, wOut, wGate] = gradients ? [l.gIn, l.gOut, l.gGate] : [l.wIn, l.wOut, l.wGate];
  return { wIn: at(wIn), wOut: at(wOut), ...(wGate >= 0 && { wGate: at(wGate) }) };
}

/** What Piscina hands each thread once: the doorbell, this worker's index and its message port. */
export interface ServeTask {
  doorbell: SharedArrayBuffer;
  workers: number;
  index: number;
  /** The request sequence number already seen when this task was posted. */
  seen: number;
  port: MessagePort;
}

/** The message that ends a serve loop. */
export interface StopMessage { kind: 'stop' }

/**
 * Piscina's task on this thread: it starts the serve loop and returns at once, so that Piscina
 * counts the thread idle (an idle pool does not keep the process alive) while the loop owns it.
 */
export default function start(task: ServeTask): void {
  setImmediate(() => void serve(task)); // after Piscina has posted this task's reply
}

/**
 * The thread's life from then on: wait for the doorbell, read the request from the port, compute
 * it, report (busy time through the doorbell, an error through the port), until told to stop.
 * Any error outside a request ends the thread, which the pool sees as its exit.
 */
async function serve(task: ServeTask): Promise<void> {
  const bell = new Doorbell(task.workers, task.doorbell);
  const w = task.index;
  let seq = task.seen;
  for (;;) {
    seq = bell.waitForRequest(w, seq);
    const m = receiveMessageOnPort(task.port)?.message as WorkerMessage | StopMessage | undefined;
    if (!m) throw new Error(`engine: worker ${w} was rung for request ${seq} but has no message`);
    if (m.kind === 'stop') return;
    bell.begin(w, seq);
    try {
      bell.end(w, seq, await run(m, w));
    } catch (error) {
      task.port.postMessage({ error });
      bell.end(w, seq, NaN);
    }
  }
}

/** Computes one request as worker w; returns the milliseconds it took. */
async function run(m: WorkerMessage, w: number): Promise<number> {
  if (m.fault === 'throw') throw new Error('injected fault');
  if (m.fault === 'exit') process.exit(1);
  if (m.fault === 'hang') for (;;) { /* spin until the pool's timeout terminates this thread */ }
  if (m.fault === 'slow') Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, SLOW_MS);
  const began = performance.now();
  if (m.kind === 'ffn') runFfn(m);
  else if (m.kind === 'attention') runAttention(m);
  else await runExperts(m, w);
  return performance.now() - began;
}

function runFfn(m: FfnMessage): void {
  const { n, d, f } = m;
  const shape = { n, d, f, activation: m.activation };
  const mats = (o: FfnMessage['weights']): MlpWeights => ({
    up: arena.f32At(o.up, d * f), down: arena.f32At(o.down, f * d),
    ...(o.gate >= 0 && { gate: arena.f32At(o.gate, d * f) }), ...(o.upBias >= 0 && { upBias: arena.f32At(o.upBias, f) }),
  });
  const w = mats(m.weights), x = arena.f32At(m.x, n * d);
  for (const s of m.shards) {
    const fc = s.f1 - s.f0;
    const at = (offset: number, length: number) => arena.f32At(offset, length);
    const b = {
      a: at(s.a, n * fc), h: at(s.h, n * fc), y: at(s.y, n * d), dh: at(s.dh, n * fc), dx: at(s.dx, n * d),
      ...(s.g >= 0 && { g: at(s.g, n * fc), dg: at(s.dg, n * fc) }),
    };
    if (m.phase === 'forward') mlpShardForward(kernels, shape, w, x, s.f0, s.f1, b);
    else mlpShardBackward(kernels, shape, w, mats(m.grads), x, arena.f32At(m.dy, n * d), s.f0, s.f1, b);
  }
}

function runAttention(m: AttentionMessage): void {
  const { batch: B, time: T, heads: H, d } = m;
  const N = B * T, hd = d / H;
  const at = (offset: number, length: number) => arena.f32At(offset, length);
  const linear = (w: number, b: number, dw: number, db: number, cols: number): LinearParams => ({
    w: at(w, d * cols), dw: at(dw, d * cols), ...(b >= 0 && { b: at(b, cols), db: at(db, cols) }),
  });
  const weights = {
    qkv: linear(m.weights.qkv, m.weights.qkvBias, m.grads.qkv, m.grads.qkvBias, 3 * d),
    proj: linear(m.weights.proj, -1, m.grads.proj, -1, d),
  };
  const rope = m.cos >= 0 ? { cos: at(m.cos, T * hd / 2), sin: at(m.sin, T * hd / 2) } : undefined;
  const x = at(m.x, N * d);
  for (const s of m.shards) {
    const w = (s.h1 - s.h0) * hd;
    const b = {
      qkv: at(s.qkv, N * 3 * w), p: at(s.p, B * (s.h1 - s.h0) * T * T), o: at(s.o, N * w), y: at(s.y, N * d),
      dO: at(s.dO, N * w), dQkv: at(s.dQkv, N * 3 * w), dS: at(s.dS, T * T), dx: at(s.dx, N * d),
    };
    if (m.phase === 'forward') attentionShardForward(kernels, m, weights, x, rope, s.h0, s.h1, b);
    else attentionShardBackward(kernels, m, weights, x, rope, at(m.dy, N * d), s.h0, s.h1, b);
  }
}

/** The router's backward: the gates' gradients from every expert's forward output, then the rest (model/router.ts). */
function runRouter(m: StepMessage, job: RouterJob, jobs: ExpertJob[]): void {
  const { d, f, activation } = m.layer;
  const shape = { d, f, activation };
  const { numExperts: E, topK: k } = job.config;
  const T = m.tokens;
  const dropout = m.training && m.layer.dropoutRate > 0;
  const dy = arena.f32At(m.dy, T * d), dGates = arena.f32At(job.dGates, T * k);
  for (const e of jobs) {
    const buffers = expertBuffers(arena.f32At(e.block, e.blockLength), shape, e.n, dropout);
    const a = { tokens: arena.i32At(e.tokens, e.n), gates: arena.f32At(e.gates, e.n), slots: arena.i32At(e.slots, e.n) };
    gateGradients(shape, buffers, dy, a, dGates);
  }
  routerBackward(kernels, job.config, T, {
    probs: arena.f32At(job.probs, T * E), lse: arena.f32At(job.lse, T), expertIndex: arena.i32At(job.expertIndex, T * k),
    gates: arena.f32At(job.gates, T * k), tokensPerExpert: arena.i32At(job.tokensPerExpert, E), xr: arena.f32At(job.xr, T * d),
    weight: arena.f32At(job.weight, d * E), ...(job.jitter >= 0 && { jitter: arena.f32At(job.jitter, T * d) }),
    dGates, dLogits: arena.f32At(job.dLogits, T * E), dWeight: arena.f32At(job.dWeight, d * E), dx: arena.f32At(job.dx, T * d),
  });
}

/**
 * Worker w's part of a Switch layer phase (engine/chunk-board.ts): the router's backward if it was
 * given one, its own experts, then chunks of other workers' experts while any are left. A gpu.js
 * worker computes its own experts whole and takes nothing: its pipelines are built per row count.
 */
async function runExperts(m: StepMessage, w: number): Promise<void> {
  const jobs = readPlan(arena.i32At(m.plan, m.jobs * PLAN_ROW), m.jobs);
  if (m.router) runRouter(m, m.router, jobs);
  const { d, f, activation } = m.layer;
  const shape = { d, f, activation };
  const T = m.tokens, slots = T * m.topK;
  const dropout = m.training && m.layer.dropoutRate > 0;
  const ffn = gpujs && await gpujs;
  const { sharing } = m;
  const slotCount = sharing.workers * sharing.perWorker;
  const board = new ChunkBoard(arena.i32At(sharing.board, ChunkBoard.words(sharing.jobs, slotCount, sharing.workers)), sharing.jobs, slotCount, sharing.workers);
  let slotsUsed = 0;

  /** Chunks [first, end) of job i: by its owner (`stolen` false) or by a worker that finished its own. */
  const compute = async (i: number, first: number, end: number, stolen: boolean) => {
    const job = jobs[i]!;
    const r0 = first * job.chunkRows, r1 = Math.min(job.n, end * job.chunkRows);
    const whole = expertBuffers(arena.f32At(job.block, job.blockLength), shape, job.n, dropout);
    const assigned = { tokens: arena.i32At(job.tokens, job.n), gates: arena.f32At(job.gates, job.n), slots: arena.i32At(job.slots, job.n) };
    const { buffers, assignment: a } = expertRows(shape, whole, assigned, r0, r1);
    const params = weights(m, job.expert, false);
    if (m.phase === 'forward') {
      expertInputs(kernels, shape, buffers, arena.f32At(m.x, T * d), a.tokens,
        dropout ? { rate: m.layer.dropoutRate, seed: m.layer.seed, step: m.step, layerIndex: m.layer.layerIndex, expert: job.expert } : undefined, r0);
      if (ffn) await ffn.forward(shape, params, buffers);
      else ffnForward(kernels, shape, params, buffers);
      expertOutputs(kernels, shape, buffers, a, arena.f32At(m.ySlots, slots * d));
    } else {
      expertOutputGradient(kernels, shape, buffers, arena.f32At(m.dy, T * d), a);
      // The owner's chunks, and a stolen chunk 0, write the expert's gradients; any other stolen chunk a partial slot.
      const partial = stolen && first > 0;
      const slot = w * sharing.perWorker + slotsUsed;
      const grads = partial ? partialSlot(m, slot) : weights(m, job.expert, true);
      if (ffn) await ffn.backward(shape, params, buffers, grads);
      else ffnBackward(kernels, shape, params, buffers, grads, !stolen && first > 0);
      expertInputGradient(kernels, shape, buffers, a, arena.f32At(m.dxSlots, slots * d));
      if (partial) { board.fillSlot(slot, i, first); slotsUsed++; }
    }
    board.count(w, r1 - r0, stolen);
  };

  for (const expert of m.own) {
    const i = jobs.findIndex((job) => job.expert === expert);
    for (;;) {
      const run = board.claimFront(i, ffn || !board.anyIdle() ? Infinity : 1);
      if (!run) break;
      await compute(i, run[0], run[1], false);
    }
  }
  if (ffn) return;
  board.becomeIdle();
  // In backward a stolen chunk other than an expert's first needs a partial slot; with none left, stop.
  while (m.phase === 'forward' || slotsUsed < sharing.perWorker) {
    const taken = board.claimBack();
    if (!taken) break;
    await compute(taken[0], taken[1], taken[1] + 1, true);
  }
}

/** Partial slot s of the phase's sharing: one expert's worth of weight gradients. */
function partialSlot(m: StepMessage, s: number): ExpertWeights {
  const { d, f, gGate } = m.layer;
  const size = d * f, at = m.sharing.partials + s * (gGate >= 0 ? 3 : 2) * size * 4;
  return { wIn: arena.f32At(at, size), wOut: arena.f32At(at + size * 4, size), ...(gGate >= 0 && { wGate: arena.f32At(at + 2 * size * 4, size) }) };
}
