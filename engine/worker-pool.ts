// The expert workers: one single-thread Piscina pool per worker, so worker w is a thread of its
// own (Piscina starts it, and starts another when it exits). One short Piscina task starts a
// serve loop on it (expert-worker.ts), which takes the step's requests through its MessagePort
// and a shared-memory doorbell (doorbell.ts): a Piscina task per request costs twice the wake-up,
// and Piscina wakes each worker from the main thread (why: doorbell.ts).
// A shared pool with a `loadBalancer` could route by worker id too, but would tie correctness to
// which thread Piscina hands a task to; a pool per worker makes the pinning explicit.
import { MessageChannel, type MessagePort, type Worker, receiveMessageOnPort } from 'node:worker_threads';
import { Piscina } from 'piscina';
import type { Arena } from '../kernels/arena.js';
import type { ArenaKernels, KernelSpec } from '../kernels/index.js';
import { compiledScript, threadExecArgv } from './compiled-script.js';
import type { DevicePlan } from './devices.js';
import { Doorbell } from './doorbell.js';
import type { ExpertWorkerData, ServeTask, StopMessage } from './expert-worker.js';
import type { ExpertDevice, WorkerMessage, WorkerReport } from './messages.js';

/** The main thread sleeps in Atomics.wait for at most this long before it looks at its event loop (for a dead thread) and the clock. */
const SLICE_MS = 10;

/** One worker's serve loop: its port, its thread once started, and why the thread died if it did. */
interface Serving { port: MessagePort; started: Promise<void>; thread?: Worker; died?: Error }

export interface WorkerPoolOptions {
  arena: Arena;
  /** Each worker's kernels: the owning thread's backend and build, so the same rounding (ArenaKernels.workerSpec). */
  kernels: KernelSpec[];
  /** One worker per device: what computes the experts placed on it. */
  devices: ExpertDevice[];
  /** Each worker's relative expert throughput, for placement; default: all equal. */
  speeds?: number[];
  /** A message not answered within this many milliseconds fails, and its thread is replaced. */
  timeoutMs: number;
  /** The threads' script; default: engine/expert-worker.js (tests wrap it to inject faults). */
  script?: string;
}

export class WorkerPool {
  readonly size: number;
  readonly devices: ExpertDevice[];
  readonly speeds: number[];
  private readonly pools: Piscina[];
  private readonly serving: Serving[];
  private readonly bell: Doorbell;
  /** The sequence number of each worker's latest request. */
  private readonly seq: number[];
  private readonly scratch: number[];
  private readonly arena: Arena;
  private readonly timeoutMs: number;
  /** When this thread's event loop last had a turn during runAll. */
  private turned = performance.now();

  /** One worker per device of `plan`, computing in the memory of `kernels` with the same backend and build (so the same rounding). */
  static forKernels(kernels: ArenaKernels, plan: DevicePlan, timeoutMs: number, script?: string): WorkerPool {
    return new WorkerPool({
      arena: kernels.arena, kernels: plan.devices.map(() => kernels.workerSpec()), ...plan, timeoutMs, ...(script && { script }),
    });
  }

  constructor(o: WorkerPoolOptions) {
    if (o.devices.length < 1) throw new RangeError('engine: a worker pool needs at least one device');
    this.size = o.devices.length;
    this.devices = o.devices;
    this.speeds = o.speeds ?? o.devices.map(() => 1);
    this.arena = o.arena;
    this.timeoutMs = o.timeoutMs;
    this.bell = new Doorbell(this.size);
    this.seq = new Array<number>(this.size).fill(0);
    const filename = o.script ?? compiledScript('expert-worker.js');
    if (o.kernels.length !== o.devices.length) throw new RangeError(`engine: ${o.kernels.length} kernel specs for ${o.devices.length} workers`);
    // WebAssembly workers' GEMM scratch lives in the arena; it goes back when the pool closes.
    this.scratch = o.kernels.flatMap((spec) => (spec.backend === 'wasm' ? [spec.scratch] : []));
    this.pools = o.kernels.map((spec, w) => new Piscina({
      filename,
      minThreads: 1,
      maxThreads: 1,
      idleTimeout: Infinity,
      atomics: 'disabled', // an idle thread must run its event loop, where the serve loop starts
      execArgv: threadExecArgv(),
      workerData: { memory: o.arena.memory, kernels: spec, device: o.devices[w]! } satisfies ExpertWorkerData,
    }));
    this.serving = this.pools.map((_, w) => this.serve(w));
  }

  /**
   * Sends messages[w] to worker w (none where undefined) and waits for every one of them, failed
   * or not, so that no worker is still writing when a failed step is retried; then throws one
   * error naming every failure. A worker given nothing reports 0 ms busy. A worker that throws
   * fails its message; one that dies or does not answer within the timeout is replaced by a new
   * thread, which attaches to the same shared memory, where the experts' weights still are.
   *
   * While the workers compute, the calling thread sleeps in Atomics.wait, letting its event loop
   * run at least every SLICE_MS.
   */
  async runAll(messages: (WorkerMessage | undefined)[]): Promise<WorkerReport[]> {
    const posted = messages.flatMap((m, w) => (m ? [w] : []));
    for (const w of posted) {
      this.serving[w]!.port.postMessage(messages[w]);
      this.bell.request(w, ++this.seq[w]!);
    }
    if (posted.length > 0) this.bell.ring(posted[0]!); // it wakes the others
    // Waiting in Atomics.wait never returns to the event loop, so turn it here, while the
    // workers compute, whenever a slice has passed: timers, signals and I/O stay served.
    if (performance.now() - this.turned > SLICE_MS) await this.turnEventLoop();
    const failures = new Map<number, string>();
    const pending = () => posted.filter((w) => !failures.has(w) && this.bell.finished(w) !== this.seq[w]);
    const deadline = performance.now() + this.timeoutMs;
    for (;;) {
      const done = this.bell.done(); // read first: a worker finishing after the check changes it, so the wait returns
      const waiting = pending();
      if (waiting.length === 0) break;
      this.bell.waitForDone(done, SLICE_MS);
      if (this.bell.done() !== done) continue;
      for (const w of waiting) if (this.bell.started(w) !== this.seq[w]) this.bell.ring(w); // in case its waker failed
      await this.turnEventLoop(); // a dead thread's rejection arrives here
      for (const w of waiting) {
        const died = this.serving[w]!.died;
        if (died) failures.set(w, died.message);
        else if (performance.now() > deadline) failures.set(w, `no answer within ${this.timeoutMs} ms`);
      }
    }
    if (performance.now() - this.turned > SLICE_MS) await this.turnEventLoop();
    for (const w of posted) {
      if (!failures.has(w) && Number.isNaN(this.bell.busyMs(w))) {
        const reply = receiveMessageOnPort(this.serving[w]!.port)?.message as { error: Error } | undefined;
        failures.set(w, reply?.error.message ?? 'failed without a message');
      }
    }
    for (const w of failures.keys()) await this.replace(w);
    if (failures.size > 0) {
      const errors = [...failures].map(([w, reason]) => new Error(
        `engine: worker ${w} (${describe(messages[w]!)}) failed in ${describePhase(messages[w]!)}: ${reason}`));
      throw new Error(errors.map((e) => e.message).join('; '), { cause: errors.length === 1 ? errors[0] : new AggregateError(errors) });
    }
    return messages.map((m, w) => ({ busyMs: m ? this.bell.busyMs(w) : 0 }));
  }

  /** Ends every worker thread and returns their scratch to the arena. */
  async close(): Promise<void> {
    this.serving.forEach((s, w) => {
      s.port.postMessage({ kind: 'stop' } satisfies StopMessage);
      this.bell.request(w, ++this.seq[w]!);
      this.bell.ring(w);
    });
    await Promise.all(this.pools.map((p) => p.close({ force: true })));
    for (const offset of this.scratch) this.arena.freeBytes(offset);
    this.scratch.length = 0;
  }

  private async turnEventLoop(): Promise<void> {
    await new Promise((resolve) => setImmediate(resolve));
    this.turned = performance.now();
  }

  /** Starts worker w's serve loop on its pool's thread, and watches that thread for its exit. */
  private serve(w: number): Serving {
    const { port1, port2 } = new MessageChannel();
    const task: ServeTask = { doorbell: this.bell.buffer, workers: this.size, index: w, seen: this.seq[w]!, port: port2 };
    const serving: Serving = { port: port1, started: Promise.resolve() };
    const pool = this.pools[w]!;
    serving.started = (pool.run(task, { transferList: [port2] }) as Promise<void>).then(() => {
      const thread = pool.threads[0]!; // the pool's only thread, which took the task
      serving.thread = thread;
      thread.once('exit', (code) => { serving.died ??= new Error(`the worker thread exited with code ${code}`); });
    }, (error: Error) => { serving.died = error; });
    return serving;
  }

  /** A worker that failed: a thread that died or hangs is ended, and a new one serves in its place. */
  private async replace(w: number): Promise<void> {
    const old = this.serving[w]!;
    if (!old.died) {
      if (Number.isNaN(this.bell.busyMs(w)) && this.bell.finished(w) === this.seq[w]) return; // it threw, and still serves
      await old.started;
      old.died = new Error('terminated');
      await old.thread?.terminate(); // Piscina starts a new thread in its place
    }
    old.port.close();
    this.serving[w] = this.serve(w);
  }
}

/** What a message asks of its worker, for errors. */
function describe(m: WorkerMessage): string {
  return m.kind === 'switch' ? `experts ${m.own.join(', ')}${m.router ? ' and the router' : ''}`
    : m.kind === 'ffn' ? `dense FFN shards ${m.shards.map((s) => `${s.cols[0]}–${s.cols[1]}`).join(', ')}`
    : `attention heads ${m.shards.map((s) => `${s.h0}–${s.h1 - 1}`).join(', ')}`;
}

function describePhase(m: WorkerMessage): string {
  return m.kind === 'switch' ? `${m.phase} of step ${m.step}` : m.phase;
}
