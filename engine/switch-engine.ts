// The Switch layer across threads. The main thread routes (float32 router, top-k, capacity) and
// writes the dispatch plan into shared memory; each expert worker computes the experts placed on
// it, in place in that memory; the main thread combines. The arithmetic is the in-process
// layer's own (model/switch-layer.ts), in the same order, so the results are the same numbers.
import { availableParallelism } from 'node:os';
import { serialize } from 'node:v8';
import { Arena } from '../kernels/arena.js';
import { WasmKernels, type WasmVariant, fastestVariant } from '../kernels/wasm/backend.js';
import type { SwitchLayerOptions } from '../model/config.js';
import { type ExpertTask, type ForwardOptions, SwitchLayer, type SwitchStats } from '../model/switch-layer.js';
import type { GpujsMode } from '../kernels/gpujs/device.js';
import { type Backend, type DevicePlan, planDevices, uniformPlan } from './devices.js';
import { type ExpertJob, type Fault, type StepMessage, expertJob, layerRef, routerJob } from './messages.js';
import { Placement } from './placement.js';
import { WorkerPool } from './worker-pool.js';

export interface EngineOptions extends SwitchLayerOptions {
  /** Expert worker threads (CPU workers, for 'auto'); default: os.availableParallelism(). */
  workers?: number;
  /**
   * What computes the experts' FFNs: 'wasm' (default), 'gpujs' on every worker, or 'auto', which
   * times both once per machine and shape (cached on disk), adds a gpu.js worker only where that
   * shortens the step, and logs what it measured and chose (to stderr).
   */
  backend?: Backend;
  /** gpu.js mode for 'gpujs'; default: the fastest this machine has. */
  gpujsMode?: GpujsMode;
  seed?: number;
  layerIndex?: number;
  /** Re-place experts on workers from the observed load every N steps (0: never). Default 1. */
  rebalanceEvery?: number;
  /** A worker that does not answer within this many milliseconds fails the step. Default 120 000. */
  timeoutMs?: number;
  /** WebAssembly variant; default: the fastest on this machine. */
  variant?: WasmVariant;
  /**
   * Kernels and workers to share with other Switch layers of a model (one pool serves them all;
   * the layers' weights live in the same memory). Without it the engine makes and owns its own.
   */
  shared?: { kernels: WasmKernels; pool: WorkerPool };
}

export interface WorkerTiming {
  worker: number;
  experts: number[];
  tokens: number;
  busyMs: number;
  idleMs: number;
}

/** Where one step's time went. */
export interface StepTiming {
  stepMs: number;
  /** Main-thread time off the workers' critical path (routing, dispatch, combine, messaging), over stepMs. */
  overheadFraction: number;
  /** Of that, the time between posting a phase's messages and having every answer, beyond the busiest worker's compute. */
  messagingFraction: number;
  bytesPosted: number;
  workers: WorkerTiming[];
}

export class SwitchEngine {
  readonly layer: SwitchLayer;
  readonly kernels: WasmKernels;
  private pool: WorkerPool | undefined;
  private placement: Placement | undefined;
  /** Resolves once 'auto' has chosen the devices and the workers exist. */
  private readonly started: Promise<void> | undefined;
  private readonly ownsPool: boolean;
  private readonly faults = new Map<number, Fault>();
  private clock = newClock(0);
  private timing: Omit<StepTiming, 'bytesPosted'> | undefined;

  constructor(options: EngineOptions) {
    const {
      workers = availableParallelism(), backend = 'wasm', gpujsMode, seed, layerIndex, rebalanceEvery = 1, timeoutMs = 120_000, variant,
      shared, ...layerOptions
    } = options;
    this.ownsPool = !shared;
    this.kernels = shared?.kernels ?? new WasmKernels(new Arena(), variant ?? fastestVariant());
    this.layer = new SwitchLayer(this.kernels, layerOptions, { ...(seed !== undefined && { seed }), ...(layerIndex !== undefined && { layerIndex }) });
    const start = (pool: WorkerPool) => {
      this.pool = pool;
      this.placement = new Placement(this.layer.config.numExperts, pool.size, rebalanceEvery, pool.speeds);
    };
    const poolFor = (plan: DevicePlan) => WorkerPool.forKernels(this.kernels, plan, timeoutMs);
    if (shared) start(shared.pool);
    else if (backend !== 'auto') start(poolFor(uniformPlan(backend, workers, gpujsMode)));
    else {
      this.started = planDevices({
        backend, workers, shape: this.layer.shape, numExperts: this.layer.config.numExperts, log: (line) => console.error(line),
      }).then((plan) => start(poolFor(plan)));
    }
  }

  get config() { return this.layer.config; }
  get weights() { return this.layer.weights; }
  get grads() { return this.layer.grads; }
  /** Worker threads (for 'auto', known once the first step has begun). */
  get workers(): number { return this.pool?.size ?? 0; }

  setWeights(w: Parameters<SwitchLayer['setWeights']>[0]): void {
    this.layer.setWeights(w);
  }

  async forward(x: ArrayLike<number>, tokens: number, options: ForwardOptions = {}): Promise<{ y: Float32Array; stats: SwitchStats }> {
    await this.started;
    const workers = this.pool!.size;
    this.clock = newClock(workers);
    const tasks = this.layer.beginForward(x, tokens, options);
    this.placement!.observe(this.layer.state!.routing.keptPerExpert);
    await this.dispatch('forward', tasks);
    const out = this.layer.endForward();
    this.finishTiming();
    return out;
  }

  /** d loss / d x; the weight gradients land in `grads`. */
  async backward(dy: ArrayLike<number>): Promise<Float32Array> {
    const tasks = this.layer.beginBackward(dy);
    await this.dispatch('backward', tasks);
    const dx = this.layer.endBackward();
    this.finishTiming();
    return dx;
  }

  /** Where the time of the last step (forward, and backward if it ran) went. */
  lastTiming(): StepTiming {
    if (!this.timing) throw new Error('engine: no step has run yet');
    // Measured here, after the step: serializing to count is not part of a step's cost.
    return { ...this.timing, bytesPosted: this.clock.crossed.reduce((sum, m) => sum + serialize(m).byteLength, 0) };
  }

  /** For tests: worker `w` fails its next message this way. */
  injectFault(w: number, fault: Fault): void {
    this.faults.set(w, fault);
  }

  /** Frees the layer, and ends the worker threads unless they are shared. */
  async close(): Promise<void> {
    await this.started?.catch(() => {}); // a failed start has no threads to end
    if (this.ownsPool) await this.pool?.close();
    this.layer.dispose();
  }

  /** Alias of close, so the engine can stand wherever a layer is disposed. */
  dispose(): Promise<void> {
    return this.close();
  }

  /**
   * Runs the phase's tasks on their workers. In backward, the router's backward goes to the worker
   * with the fewest tokens: it needs none of the experts' results, and the main thread waiting
   * for them would otherwise hold a core that a worker needs.
   */
  private async dispatch(phase: StepMessage['phase'], tasks: ExpertTask[]): Promise<void> {
    const s = this.layer.state!;
    const layer = layerRef(this.layer);
    const pool = this.pool!, placement = this.placement!;
    const jobs: ExpertJob[][] = Array.from({ length: pool.size }, () => []);
    for (const task of tasks) jobs[placement.owner[task.expert]!]!.push(expertJob(task));
    const start = performance.now();
    const load = (w: number) => jobs[w]!.reduce((n, j) => n + j.n, 0) / pool.speeds[w]!;
    const lightest = phase === 'backward' ? jobs.reduce((best, _, w) => (load(w) < load(best) ? w : best), 0) : -1;
    const router = phase === 'backward' ? routerJob(this.layer.config, this.layer.routerBackwardArrays(), jobs.flat()) : undefined;
    const messages = jobs.map((list, w): StepMessage | undefined => {
      if (list.length === 0 && w !== lightest) return undefined;
      const fault = this.faults.get(w);
      this.faults.delete(w);
      return {
        kind: 'switch', phase, step: s.step, training: s.training, tokens: s.routing.tokens, topK: this.layer.config.topK, layer,
        x: s.x.byteOffset, ySlots: s.ySlots.byteOffset,
        dy: s.dy?.byteOffset ?? -1, dxSlots: s.dxSlots?.byteOffset ?? -1,
        jobs: list, ...(w === lightest && { router }), ...(fault && { fault }),
      };
    });
    const reports = await pool.runAll(messages);
    const wall = performance.now() - start;
    let critical = 0;
    reports.forEach(({ busyMs: busy }, w) => {
      this.clock.busy[w]! += busy;
      this.clock.idle[w]! += Math.max(0, wall - busy);
      critical = Math.max(critical, busy);
    });
    this.clock.criticalMs += critical;
    this.clock.messagingMs += Math.max(0, wall - critical);
    for (const m of messages) if (m) this.clock.crossed.push(m);
  }

  private finishTiming(): void {
    const stepMs = performance.now() - this.clock.start;
    const shards = this.placement!.shards();
    const kept = this.layer.state!.routing.keptPerExpert;
    this.timing = {
      stepMs,
      overheadFraction: Math.max(0, stepMs - this.clock.criticalMs) / stepMs,
      messagingFraction: this.clock.messagingMs / stepMs,
      workers: shards.map((experts, w) => ({
        worker: w, experts, tokens: experts.reduce((sum, e) => sum + kept[e]!, 0),
        busyMs: this.clock.busy[w]!, idleMs: this.clock.idle[w]!,
      })),
    };
  }
}

function newClock(workers: number) {
  return {
    start: performance.now(), criticalMs: 0, messagingMs: 0, busy: new Array<number>(workers).fill(0), idle: new Array<number>(workers).fill(0),
    /** The messages that crossed threads this step (reports come back through shared memory). */
    crossed: [] as object[],
  };
}
