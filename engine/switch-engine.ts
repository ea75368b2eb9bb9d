// The Switch layer across threads, along the token's path:
//   route     the main thread: layer.beginForward (float32 router, top-k, capacity, a plan per expert)
//   dispatch  the plan into shared memory, one message per worker (engine/messages.ts, engine/wire.ts)
//   experts   each worker computes the experts placed on it, in place (engine/expert-worker.ts)
//   combine   the main thread: layer.endForward (each token's slots summed)
// The arithmetic is the in-process layer's own (model/switch-layer.ts), in the same order, so the
// results are the same numbers.
import { availableParallelism } from 'node:os';
import { serialize } from 'node:v8';
import { Arena } from '../kernels/arena.js';
import { type ArenaKernels, type KernelOptions, type Kernels, createArenaKernels, createKernels } from '../kernels/index.js';
import type { SwitchLayerOptions } from '../model/config.js';
import { type ExpertWeights, ROW_BLOCK, expertWeights } from '../model/expert.js';
import { type BackwardPlan, type ExpertTask, type ForwardOptions, type ForwardPlan, SwitchLayer, type SwitchStats } from '../model/switch-layer.js';
import type { GpujsMode } from '../kernels/gpujs/device.js';
import { type ExpertBackend, type CalibrationStore, type DevicePlan, planDevices, uniformPlan } from './devices.js';
import { ChunkBoard } from './chunk-board.js';
import { PLAN_ROW, type Phase, type Sharing, type SwitchWork, expertJob, writePlan } from './messages.js';
import { toWire } from './wire.js';
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
  backend?: ExpertBackend;
  /** gpu.js mode for 'gpujs'; default: the fastest this machine has. */
  gpujsMode?: GpujsMode;
  /** Where 'auto' keeps its measurements; default: this process only. */
  calibration?: CalibrationStore;
  seed?: number;
  layerIndex?: number;
  /** False: the weights will be set by the caller (a loaded checkpoint); skips the random initialization. */
  initialize?: boolean;
  /** Re-place experts on workers from the observed load every N steps (0: never). Default 1. */
  rebalanceEvery?: number;
  /** A worker that does not answer within this many milliseconds fails the step. Default 120 000. */
  timeoutMs?: number;
  /** Which CPU kernels (backend, WebAssembly variant, native build); default: the fastest here (kernels/index.ts). */
  kernels?: Omit<KernelOptions, 'arena'>;
  /** The worker threads' script; default: engine/expert-worker.js (tests wrap it to inject faults). */
  workerScript?: string;
  /**
   * Kernels and workers to share with other Switch layers of a model (one pool serves them all;
   * the layers' weights live in the same memory). Without it the engine makes and owns its own.
   */
  shared?: { kernels: ArenaKernels; pool: WorkerPool };
}

export interface WorkerTiming {
  worker: number;
  /** The experts placed on it. */
  experts: number[];
  /** Expert rows it computed in the step's phases (forward and backward each count a row once). */
  tokens: number;
  /** Chunks it took from other workers' experts (engine/chunk-board.ts). */
  stolen: number;
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
  /** Of that, the router's forward on the main thread (logits, softmax, top-k, capacity, plan): the rest is dispatch, combine and messaging. */
  routingFraction: number;
  bytesPosted: number;
  workers: WorkerTiming[];
}

export class SwitchEngine {
  readonly layer: SwitchLayer;
  readonly kernels: ArenaKernels;
  private pool: WorkerPool | undefined;
  private placement: Placement | undefined;
  /** Resolves once 'auto' has chosen the devices and the workers exist. */
  private readonly started: Promise<void> | undefined;
  private readonly ownsPool: boolean;
  private clock = newClock(0);
  /** This step's plans, as the layer handed them over. */
  private forwardPlan: ForwardPlan | undefined;
  /** When the step's last phase ended, from the clock's start; undefined before any step. */
  private stepMs: number | undefined;
  /**
   * What the workers share in memory besides the layer's arrays: the dispatch plan, the chunk
   * board, and (once a backward has run with more than one worker) the partial slots.
   */
  private sharing: { plan: Int32Array; board: ChunkBoard; words: Int32Array; perWorker: number; partials?: ExpertWeights } | undefined;

  constructor(options: EngineOptions) {
    const {
      workers = availableParallelism(), backend = 'wasm', gpujsMode, calibration, seed, layerIndex, initialize, rebalanceEvery = 1, timeoutMs = 120_000,
      kernels, workerScript, shared, ...layerOptions
    } = options;
    this.ownsPool = !shared;
    this.kernels = shared?.kernels
      ?? (kernels ? arenaKernels(createKernels({ ...kernels, arena: new Arena() })) : createArenaKernels(new Arena()));
    this.layer = new SwitchLayer(this.kernels, layerOptions, {
      ...(seed !== undefined && { seed }), ...(layerIndex !== undefined && { layerIndex }), ...(initialize !== undefined && { initialize }),
    });
    const start = (pool: WorkerPool) => {
      this.pool = pool;
      this.placement = new Placement(this.layer.config.numExperts, pool.size, rebalanceEvery, pool.speeds);
    };
    const poolFor = (plan: DevicePlan) => WorkerPool.forKernels(this.kernels, plan, timeoutMs, workerScript);
    if (shared) start(shared.pool);
    else if (backend !== 'auto') start(poolFor(uniformPlan(backend, workers, gpujsMode)));
    else {
      this.started = planDevices({
        backend, workers, shape: this.layer.shape, numExperts: this.layer.config.numExperts, log: (line) => console.error(line),
        ...(calibration && { store: calibration }),
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
    const plan = this.layer.beginForward(x, tokens, options);
    this.clock.routingMs = performance.now() - this.clock.start;
    this.forwardPlan = plan;
    this.placement!.observe(plan.keptPerExpert);
    await this.dispatch('forward', plan);
    const out = this.layer.endForward();
    this.finishTiming();
    return out;
  }

  /** d loss / d x; the weight gradients land in `grads`. `auxGrad`: as SwitchLayer.backward's. */
  async backward(dy: ArrayLike<number>, auxGrad?: ArrayLike<number>): Promise<Float32Array> {
    if (!this.forwardPlan) throw new Error('switch layer: backward called before forward');
    const plan = this.layer.beginBackward(dy, auxGrad);
    await this.dispatch('backward', this.forwardPlan, plan);
    const dx = this.layer.endBackward();
    this.finishTiming();
    return dx;
  }

  /** Where the time of the last step (forward, and backward if it ran) went. */
  lastTiming(): StepTiming {
    const { stepMs, clock } = this;
    if (stepMs === undefined) throw new Error('engine: no step has run yet');
    // Built here, after the step, not inside it: serializing to count bytes is not part of a step's cost.
    return {
      stepMs,
      overheadFraction: Math.max(0, stepMs - clock.criticalMs) / stepMs,
      messagingFraction: clock.messagingMs / stepMs,
      routingFraction: clock.routingMs / stepMs,
      bytesPosted: clock.crossed.reduce((sum, m) => sum + serialize(m).byteLength, 0),
      workers: this.placement!.shards().map((experts, w) => ({
        worker: w, experts, tokens: clock.tokens[w]!, stolen: clock.stolen[w]!, busyMs: clock.busy[w]!, idleMs: clock.idle[w]!,
      })),
    };
  }

  /** Frees the layer, and ends the worker threads unless they are shared. */
  async close(): Promise<void> {
    await this.started?.catch(() => {}); // a failed start has no threads to end
    if (this.ownsPool) await this.pool?.close();
    if (this.sharing) {
      const { plan, words, partials } = this.sharing;
      for (const a of [plan, words, partials?.wIn, partials?.wOut, partials?.wGate]) if (a) this.kernels.free(a);
    }
    this.layer.dispose();
  }

  /** Alias of close, so the engine can stand wherever a layer is disposed. */
  dispose(): Promise<void> {
    return this.close();
  }

  /**
   * Runs the phase's tasks: each worker its own experts (the placement's), heaviest first, then
   * chunks of any expert still unclaimed (engine/chunk-board.ts); then adds the stolen chunks'
   * partial weight gradients. In backward, the router's backward goes to the worker with the
   * fewest tokens: it needs none of the experts' results, and the main thread waiting for them
   * would otherwise hold a core that a worker needs.
   */
  private async dispatch(phase: Phase, forward: ForwardPlan, backward?: BackwardPlan): Promise<void> {
    const { config, weights, grads, shape } = this.layer;
    const pool = this.pool!, placement = this.placement!;
    const sharing = this.shareWork(phase);
    const whole = (w: number) => pool.devices[w]!.kind === 'gpujs'; // its experts are not cut
    const jobs = forward.tasks.map((t) => expertJob(t, whole(placement.owner[t.expert]!) ? t.tokens.length : ROW_BLOCK));
    writePlan(sharing.plan, jobs);
    sharing.board.reset(jobs.map((j) => Math.ceil(j.n / j.chunkRows)));
    const own = Array.from({ length: pool.size }, (_, w) => jobs.filter((j) => placement.owner[j.expert] === w)
      .sort((a, b) => b.n - a.n || a.expert - b.expert));
    const start = performance.now();
    const load = (w: number) => own[w]!.reduce((n, j) => n + j.n, 0) / pool.speeds[w]!;
    const lightest = backward ? own.reduce((best, _, w) => (load(w) < load(best) ? w : best), 0) : -1;
    const shared: Sharing = {
      board: sharing.words, jobs: config.numExperts, workers: pool.size, perWorker: sharing.perWorker, ...(sharing.partials && { partials: sharing.partials }),
    };
    const messages = own.map((mine, w) => toWire(this.kernels.arena, {
      kind: 'switch', phase, step: forward.step, tokens: forward.tokens, topK: config.topK, shape, weights, grads,
      ...(forward.dropout && { dropout: forward.dropout }),
      x: forward.x, ySlots: forward.ySlots, ...(backward && { dy: backward.dy, dxSlots: backward.dxSlots }),
      plan: sharing.plan, jobs: jobs.length, own: mine.map((j) => j.expert), sharing: shared,
      ...(backward && w === lightest && { router: { config, arrays: backward.router } }),
    } satisfies SwitchWork));
    const reports = await pool.runAll(messages);
    const wall = performance.now() - start;
    let critical = 0;
    reports.forEach(({ busyMs: busy }, w) => {
      this.clock.busy[w]! += busy;
      this.clock.idle[w]! += Math.max(0, wall - busy);
      this.clock.tokens[w]! += sharing.board.tokens(w);
      this.clock.stolen[w]! += sharing.board.stolen(w);
      critical = Math.max(critical, busy);
    });
    this.clock.criticalMs += critical;
    this.clock.messagingMs += Math.max(0, wall - critical);
    this.clock.crossed.push(...messages);
    if (backward) this.addPartials(forward.tasks);
  }

  /** The plan and the board (made once the pool is known), and for a backward with more than one worker, the partial slots. */
  private shareWork(phase: Phase): NonNullable<SwitchEngine['sharing']> {
    const workers = this.pool!.size, E = this.layer.config.numExperts;
    if (!this.sharing) {
      // About as much memory in all as the experts' gradients, and at least two slots a worker.
      const perWorker = workers > 1 ? Math.max(2, Math.ceil(E / workers)) : 0;
      const words = this.kernels.allocI32(ChunkBoard.words(E, perWorker * workers, workers));
      this.sharing = { plan: this.kernels.allocI32(E * PLAN_ROW), board: new ChunkBoard(words, E, perWorker * workers, workers), words, perWorker };
    }
    if (phase === 'backward' && this.sharing.perWorker > 0 && !this.sharing.partials) {
      // Stacked as the experts' weights are, one slot where they have one expert.
      const { dModel: d, dFF: f, activation } = this.layer.config;
      const size = this.sharing.perWorker * workers * d * f, slots = () => this.kernels.allocF32(size);
      this.sharing.partials = { wIn: slots(), wOut: slots(), ...(activation === 'swiglu' && { wGate: slots() }) };
    }
    return this.sharing;
  }

  /** Each stolen chunk's partial weight gradients, added to its expert's in chunk order (the order one GEMM sums them in). */
  private addPartials(tasks: ExpertTask[]): void {
    const { board, partials } = this.sharing!;
    for (const [slot, i] of board.filledSlots()) {
      const part = expertWeights(partials!, this.layer.shape, slot), grad = this.layer.expertWeights(tasks[i]!.expert, this.layer.grads);
      this.kernels.add(part.wIn, grad.wIn, grad.wIn);
      this.kernels.add(part.wOut, grad.wOut, grad.wOut);
      if (part.wGate && grad.wGate) this.kernels.add(part.wGate, grad.wGate, grad.wGate);
    }
  }

  private finishTiming(): void {
    this.stepMs = performance.now() - this.clock.start;
  }
}

function newClock(workers: number) {
  return {
    start: performance.now(), routingMs: 0, criticalMs: 0, messagingMs: 0, busy: new Array<number>(workers).fill(0), idle: new Array<number>(workers).fill(0),
    tokens: new Array<number>(workers).fill(0), stolen: new Array<number>(workers).fill(0),
    /** The messages that crossed threads this step (reports come back through shared memory). */
    crossed: [] as object[],
  };
}

/** The engine's workers compute on shared memory: kernels of the reference backend cannot serve. */
function arenaKernels(k: Kernels): ArenaKernels {
  if (!('arena' in k)) throw new Error(`engine: the ${k.name} kernels do not compute on shared memory; use native or wasm`);
  return k as ArenaKernels;
}
