// The expert workers: one single-thread Piscina pool per worker, so a message meant for worker w
// always reaches worker w (Piscina queues, restarts a dead thread and aborts on timeout for us).
// A shared pool with a `loadBalancer` could route the same way, but would tie correctness to
// which thread Piscina hands a task to; a pool per worker makes the pinning explicit.
import { Piscina } from 'piscina';
import type { Arena } from '../kernels/arena.js';
import type { WasmKernels, WasmVariant } from '../kernels/wasm/backend.js';
import { compiledScript, threadExecArgv } from './compiled-script.js';
import type { DevicePlan } from './devices.js';
import type { ExpertWorkerData } from './expert-worker.js';
import type { ExpertDevice, WorkerMessage, WorkerReport } from './messages.js';

export interface WorkerPoolOptions {
  arena: Arena;
  variant: WasmVariant;
  /** One worker per device: what computes the experts placed on it. */
  devices: ExpertDevice[];
  /** Each worker's relative expert throughput, for placement; default: all equal. */
  speeds?: number[];
  /** A message not answered within this many milliseconds fails, and its thread is replaced. */
  timeoutMs: number;
  /** GEMM scratch each worker needs, in bytes. */
  scratchBytes: number;
}

export class WorkerPool {
  readonly size: number;
  readonly devices: ExpertDevice[];
  readonly speeds: number[];
  private readonly pools: Piscina[];
  private readonly scratch: number[];
  private readonly arena: Arena;
  private readonly timeoutMs: number;

  /** One worker per device of `plan`, computing in the memory of `kernels` with its kernel variant (so the same rounding). */
  static forKernels(kernels: WasmKernels, plan: DevicePlan, timeoutMs: number): WorkerPool {
    return new WorkerPool({ arena: kernels.arena, variant: kernels.variant, ...plan, timeoutMs, scratchBytes: kernels.scratchBytes });
  }

  constructor(o: WorkerPoolOptions) {
    if (o.devices.length < 1) throw new RangeError('engine: a worker pool needs at least one device');
    this.size = o.devices.length;
    this.devices = o.devices;
    this.speeds = o.speeds ?? o.devices.map(() => 1);
    this.arena = o.arena;
    this.timeoutMs = o.timeoutMs;
    const filename = compiledScript('expert-worker.js');
    this.scratch = o.devices.map(() => o.arena.allocBytes(o.scratchBytes));
    this.pools = this.scratch.map((scratch, w) => new Piscina({
      filename,
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Infinity,
      execArgv: threadExecArgv(),
      workerData: { memory: o.arena.memory, variant: o.variant, scratch, device: o.devices[w]! } satisfies ExpertWorkerData,
    }));
  }

  /**
   * Sends messages[w] to worker w (none where undefined) and waits for every one of them, failed
   * or not, so that no worker is still writing when a failed step is retried; then throws one
   * error naming every failure. A worker given nothing reports 0 ms busy. A worker that throws,
   * dies or does not answer within the timeout fails its message, and Piscina starts a new thread
   * in its place, which attaches to the same shared memory, where the experts' weights still are.
   */
  async runAll(messages: (WorkerMessage | undefined)[]): Promise<WorkerReport[]> {
    // One timer for all of them: a timer per message costs as much as the message itself.
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(), this.timeoutMs);
    let results: PromiseSettledResult<WorkerReport>[];
    try {
      results = await Promise.allSettled(messages.map((m, w) => (m ? this.run(w, m, deadline.signal) : Promise.resolve({ busyMs: 0 }))));
    } finally {
      clearTimeout(timer);
    }
    const failures = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected').map((r) => r.reason as Error);
    if (failures.length > 0) {
      throw new Error(failures.map((f) => f.message).join('; '), { cause: failures.length === 1 ? failures[0] : new AggregateError(failures) });
    }
    return results.map((r) => (r as PromiseFulfilledResult<WorkerReport>).value);
  }

  private async run(w: number, message: WorkerMessage, signal: AbortSignal): Promise<WorkerReport> {
    try {
      return (await this.pools[w]!.run(message, { signal })) as WorkerReport;
    } catch (cause) {
      const reason = cause instanceof Error && cause.name === 'AbortError'
        ? `no answer within ${this.timeoutMs} ms` : (cause as Error).message;
      const work = message.kind === 'switch' ? `experts ${message.jobs.map((j) => j.expert).join(', ')}`
        : message.kind === 'ffn' ? `dense FFN shards ${message.shards.map((s) => `${s.f0}–${s.f1}`).join(', ')}`
        : `attention heads ${message.shards.map((s) => `${s.h0}–${s.h1 - 1}`).join(', ')}`;
      throw new Error(`engine: worker ${w} (${work}) failed in ${message.phase} of step ${message.step}: ${reason}`, { cause });
    }
  }

  /** Ends every worker thread and returns their scratch to the arena. */
  async close(): Promise<void> {
    await Promise.all(this.pools.map((p) => p.close({ force: true })));
    for (const offset of this.scratch) this.arena.freeBytes(offset);
    this.scratch.length = 0;
  }
}
