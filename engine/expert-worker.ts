// An expert worker: runs on a Piscina thread, instantiates the kernels against the shared memory
// once, then computes whatever each message names, in place: its experts of a Switch layer (and
// the router's backward), or shards of a dense layer. A message is a Work object whose arrays
// crossed as offsets (engine/wire.ts); the computing is the model's own functions.
import { type MessagePort, receiveMessageOnPort, workerData } from 'node:worker_threads';
import { GpujsExpertFfn } from '../kernels/gpujs/expert-ffn.js';
import { Arena, type KernelSpec, kernelsFromSpec } from '../kernels/index.js';
import { attentionShardBackward, attentionShardForward } from '../model/attention.js';
import {
  type ExpertWeights, expertBuffers, expertInputGradient, expertInputs, expertOutputGradient, expertOutputs, expertRows, expertWeights,
  gateGradients,
} from '../model/expert.js';
import { ffnBackward, ffnForward } from '../model/ffn.js';
import { routerBackward } from '../model/router.js';
import { ChunkBoard } from './chunk-board.js';
import { Doorbell } from './doorbell.js';
import { type AttentionWork, type ExpertDevice, type FfnWork, type SwitchWork, type Work, type WorkerMessage, readPlan } from './messages.js';
import { fromWire } from './wire.js';

export interface ExpertWorkerData {
  memory: WebAssembly.Memory;
  /** The owning thread's kernels, rebuilt here on the same memory (the same backend and build: the same rounding). */
  kernels: KernelSpec;
  /** What computes the expert FFNs; gathers, scatters and the dense shards always use the CPU kernels. */
  device: ExpertDevice;
}

const { memory, kernels: spec, device } = workerData as ExpertWorkerData;
const arena = Arena.attach(memory);
const kernels = kernelsFromSpec(arena, spec);
const gpujs = device.kind === 'gpujs' ? GpujsExpertFfn.create(device.mode) : undefined;
gpujs?.catch(() => {}); // a mode that is missing here fails the first step, which names this worker

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

/** How a worker computes one message as worker w: `compute` below, or a test's wrapper around it. */
export type Compute = (message: WorkerMessage, w: number) => Promise<void>;

/**
 * Piscina's task on this thread: it starts the serve loop and returns at once, so that Piscina
 * counts the thread idle (an idle pool does not keep the process alive) while the loop owns it.
 */
export default function start(task: ServeTask): void {
  setImmediate(() => void serve(task, compute)); // after Piscina has posted this task's reply
}

/**
 * The thread's life from then on: wait for the doorbell, read the request from the port, compute
 * it, report (busy time through the doorbell, an error through the port), until told to stop.
 * Any error outside a request ends the thread, which the pool sees as its exit.
 */
export async function serve(task: ServeTask, run: Compute): Promise<void> {
  const bell = new Doorbell(task.workers, task.doorbell);
  const w = task.index;
  let seq = task.seen;
  for (;;) {
    seq = bell.waitForRequest(w, seq);
    const m = receiveMessageOnPort(task.port)?.message as WorkerMessage | StopMessage | undefined;
    if (!m) throw new Error(`engine: worker ${w} was rung for request ${seq} but has no message`);
    if (m.kind === 'stop') return;
    bell.begin(w, seq);
    const began = performance.now();
    try {
      await run(m, w);
      bell.end(w, seq, performance.now() - began);
    } catch (error) {
      task.port.postMessage({ error });
      bell.end(w, seq, NaN);
    }
  }
}

export async function compute(message: WorkerMessage, w: number): Promise<void> {
  const work = fromWire<Work>(arena, message);
  if (work.kind === 'ffn') runFfn(work);
  else if (work.kind === 'attention') runAttention(work);
  else await runExperts(work, w);
}

function runFfn(m: FfnWork): void {
  for (const s of m.shards) {
    if (m.phase === 'forward') ffnForward(kernels, m.shape, m.weights, m.x, s.buffers, s.cols);
    else ffnBackward(kernels, m.shape, m.weights, m.grads!, m.x, m.dy!, s.buffers, s.cols, true);
  }
}

function runAttention(m: AttentionWork): void {
  for (const s of m.shards) {
    if (m.phase === 'forward') attentionShardForward(kernels, m.shape, m.weights, m.x, m.rope, s.h0, s.h1, s.buffers);
    else attentionShardBackward(kernels, m.shape, m.weights, m.x, m.rope, m.dy!, s.h0, s.h1, s.buffers);
  }
}

/**
 * Worker w's part of a Switch layer phase (engine/chunk-board.ts): the router's backward if it was
 * given one, its own experts, then chunks of other workers' experts while any are left. A gpu.js
 * worker computes its own experts whole and takes nothing: its pipelines are built per row count.
 */
async function runExperts(m: SwitchWork, w: number): Promise<void> {
  const jobs = readPlan(m.plan, m.jobs);
  const { shape } = m;
  const dropout = m.dropout !== undefined;
  const assignment = (i: number) => {
    const job = jobs[i]!;
    return {
      buffers: expertBuffers(arena.f32At(job.block, job.blockLength), shape, job.n, dropout),
      assigned: { tokens: arena.i32At(job.tokens, job.n), gates: arena.f32At(job.gates, job.n), slots: arena.i32At(job.slots, job.n) },
    };
  };
  if (m.router) {
    // The gates' gradients need every expert's forward output; then the rest of the router's backward.
    for (let i = 0; i < jobs.length; i++) {
      const { buffers, assigned } = assignment(i);
      gateGradients(shape, buffers, m.dy!, assigned, m.router.arrays.dGates);
    }
    routerBackward(kernels, m.router.config, m.tokens, m.router.arrays);
  }
  const ffn = gpujs && await gpujs;
  const { sharing } = m;
  const board = new ChunkBoard(sharing.board, sharing.jobs, sharing.workers * sharing.perWorker, sharing.workers);
  let slotsUsed = 0;

  /** Chunks [first, end) of job i: by its owner (`stolen` false) or by a worker that finished its own. */
  const run = async (i: number, first: number, end: number, stolen: boolean) => {
    const job = jobs[i]!;
    const r0 = first * job.chunkRows, r1 = Math.min(job.n, end * job.chunkRows);
    const whole = assignment(i);
    const { buffers, assignment: a } = expertRows(shape, whole.buffers, whole.assigned, r0, r1);
    const params = expertWeights(m.weights, shape, job.expert);
    if (m.phase === 'forward') {
      expertInputs(kernels, shape, buffers, m.x, a, m.dropout && { ...m.dropout, expert: job.expert }, r0);
      if (ffn) await ffn.forward(shape, params, buffers);
      else ffnForward(kernels, shape, params, buffers.x, buffers);
      expertOutputs(kernels, shape, buffers, a, m.ySlots);
    } else {
      expertOutputGradient(kernels, shape, buffers, m.dy!, a);
      // The owner's chunks, and a stolen chunk 0, write the expert's gradients; any other stolen chunk a partial slot.
      const partial = stolen && first > 0;
      const slot = w * sharing.perWorker + slotsUsed;
      const grads: ExpertWeights = partial ? expertWeights(sharing.partials!, shape, slot) : expertWeights(m.grads, shape, job.expert);
      if (ffn) await ffn.backward(shape, params, buffers, grads);
      else ffnBackward(kernels, shape, params, grads, buffers.x, buffers.dy, buffers, [0, shape.f], !stolen && first > 0);
      expertInputGradient(kernels, shape, buffers, a, m.dxSlots!);
      if (partial) { board.fillSlot(slot, i, first); slotsUsed++; }
    }
    board.count(w, r1 - r0, stolen);
  };

  for (const expert of m.own) {
    const i = jobs.findIndex((job) => job.expert === expert);
    for (;;) {
      const claimed = board.claimFront(i, ffn || !board.anyIdle() ? Infinity : 1);
      if (!claimed) break;
      await run(i, claimed[0], claimed[1], false);
    }
  }
  if (ffn) return;
  board.becomeIdle();
  // In backward a stolen chunk other than an expert's first needs a partial slot; with none left, stop.
  while (m.phase === 'forward' || slotsUsed < sharing.perWorker) {
    const taken = board.claimBack();
    if (!taken) break;
    await run(taken[0], taken[1], taken[1] + 1, true);
  }
}
