// Which devices compute the experts: `wasm` (WebAssembly workers, one per core), `gpujs` (every
// worker runs the expert FFNs on gpu.js) or `auto`, which measures both on this machine and
// shape once (every GPU mode gpu.js has here, keeping the fastest), caches the figures, and adds
// a gpu.js worker only where it shortens the step; the placement then gives each worker experts
// in proportion to its measured speed. A GPU mode is a device of its own beside the cores; a
// gpu.js CPU mode takes a core. deviceReport is what `switchyard info` prints.
// Where the measurements are kept is the caller's (a CalibrationStore); by default, this process.
import { createHash } from 'node:crypto';
import { availableParallelism, cpus } from 'node:os';
import { Arena } from '../kernels/arena.js';
import { type GpujsMode, type GpujsProbe, describeProbe, isGpuMode, loadGpujs } from '../kernels/gpujs/device.js';
import { GpujsExpertFfn } from '../kernels/gpujs/expert-ffn.js';
import { createArenaKernels } from '../kernels/index.js';
import { type ExpertWeights, expertBlockLength, expertBuffers } from '../model/expert.js';
import { type FfnShape, ffnBackward, ffnForward } from '../model/ffn.js';
import { Rng } from '../model/rng.js';
import type { ExpertDevice } from './messages.js';
import { Placement } from './placement.js';

export const EXPERT_BACKENDS = ['auto', 'wasm', 'gpujs'] as const;
export type ExpertBackend = (typeof EXPERT_BACKENDS)[number];

/** One worker per device, and each one's relative speed for placement. */
export interface DevicePlan {
  devices: ExpertDevice[];
  speeds?: number[];
}

export interface BackendRequest {
  backend: ExpertBackend;
  /** CPU workers (default: the core count). */
  workers?: number;
  /** gpu.js mode for `gpujs` (default: the fastest this machine has). */
  gpujsMode?: GpujsMode;
  /** What `auto` calibrates: one expert's shape, and how many experts share the workers. */
  shape: FfnShape;
  numExperts: number;
  log?: (line: string) => void;
  /** Where `auto` keeps its measurements (default: in this process only). */
  store?: CalibrationStore;
}

/** Measurements by key (machine, shape, rows, mode), kept wherever the caller chooses. */
export interface CalibrationStore {
  read(): Record<string, Omit<Calibration, 'cached'>>;
  write(all: Record<string, Omit<Calibration, 'cached'>>): void;
}

/** A store that lasts as long as this process. */
export function memoryStore(): CalibrationStore {
  let all: Record<string, Omit<Calibration, 'cached'>> = {};
  return { read: () => all, write: (next) => { all = next; } };
}
const processStore = memoryStore();

/** Measured milliseconds for one expert's forward + backward on `rows` tokens. */
export interface Calibration {
  machine: string;
  shape: string;
  rows: number;
  wasmMs: number;
  /** `device`: what a GPU mode ran on (GpujsProbe's `found`). */
  gpujs: { mode: GpujsMode; ms: number; device?: string };
  measuredAt: string;
  cached: boolean;
}

/** The devices for a backend. Only `auto` measures anything; `wasm` and `gpujs` are immediate. */
export async function planDevices(r: BackendRequest): Promise<DevicePlan> {
  const workers = r.workers ?? availableParallelism();
  if (r.backend !== 'auto') return uniformPlan(r.backend, workers, r.gpujsMode);
  const log = r.log ?? (() => {});
  const { probe } = await loadGpujs();
  log(describeProbe(probe));
  const choice = (await autoChoice(probe, r.shape, workers, r.numExperts, r.store ?? processStore, true))!; // measuring always answers
  log(choice.line);
  return choice.plan;
}

/** What `auto` measured (or read from its cache) for one shape, and the plan that follows from it. */
export interface AutoChoice {
  calibration: Calibration;
  plan: DevicePlan;
  /** "auto: an expert's step on 64 tokens takes … ms on a WebAssembly worker, … ms on gpu.js headlessgl (cached); using …" */
  line: string;
}

/**
 * Calibrates every GPU mode here (gpu.js's fastest CPU mode where there is none), keeps the
 * fastest, and plans from it. With `measure` false, only cached figures are used: undefined when
 * some are missing.
 */
async function autoChoice(probe: GpujsProbe, shape: FfnShape, workers: number, numExperts: number, store: CalibrationStore,
  measure: boolean): Promise<AutoChoice | undefined> {
  const gpuModes = probe.modes.filter(isGpuMode);
  const candidates: Calibration[] = [];
  for (const mode of gpuModes.length > 0 ? gpuModes : [probe.modes[0]!]) {
    const c = await (measure ? calibrate : cachedCalibration)(shape, CALIBRATION_ROWS, mode, store);
    if (!c) return undefined;
    candidates.push(c);
  }
  const calibration = candidates.reduce((best, c) => (c.gpujs.ms < best.gpujs.ms ? c : best));
  const plan = choosePlan(calibration, workers, numExperts);
  const line = `auto: an expert's step on ${calibration.rows} tokens takes ${calibration.wasmMs.toFixed(2)} ms on a WebAssembly worker, `
    + `${candidates.map((c) => `${c.gpujs.ms.toFixed(2)} ms on gpu.js ${c.gpujs.mode}`).join(', ')} `
    + `(${candidates.every((c) => c.cached) ? 'cached' : 'measured now'}); using ${describePlan(plan)}`;
  return { calibration, plan, line };
}

/** `workers` workers of one kind. */
export function uniformPlan(backend: 'wasm' | 'gpujs', workers: number, gpujsMode?: GpujsMode): DevicePlan {
  if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`engine: workers must be a positive integer, got ${workers}`);
  const device: ExpertDevice = backend === 'wasm' ? { kind: 'wasm' } : { kind: 'gpujs', ...(gpujsMode && { mode: gpujsMode }) };
  return { devices: new Array<ExpertDevice>(workers).fill(device) };
}

export function describePlan(plan: DevicePlan): string {
  const counts = new Map<string, number>();
  for (const d of plan.devices) {
    const name = d.kind === 'wasm' ? 'WebAssembly' : `gpu.js ${d.mode ?? ''}`.trim();
    counts.set(name, (counts.get(name) ?? 0) + 1);
  }
  return [...counts].map(([name, n]) => `${n} ${name} worker${n > 1 ? 's' : ''}`).join(' + ');
}

/**
 * All-WebAssembly, or with one gpu.js worker added (GPU mode) or in place of a WebAssembly
 * worker (CPU mode): whichever finishes E equal experts sooner under speed-weighted placement.
 */
export function choosePlan(c: Calibration, workers: number, numExperts: number): DevicePlan {
  const wasm = 1 / c.wasmMs, gpujs = 1 / c.gpujs.ms;
  const plan = (cpuWorkers: number, withGpujs: boolean): Required<DevicePlan> => ({
    devices: [...new Array<ExpertDevice>(cpuWorkers).fill({ kind: 'wasm' }), ...(withGpujs ? [{ kind: 'gpujs', mode: c.gpujs.mode } as const] : [])],
    speeds: [...new Array<number>(cpuWorkers).fill(wasm), ...(withGpujs ? [gpujs] : [])],
  });
  const cpuOnly = plan(workers, false);
  const mixed = plan(isGpuMode(c.gpujs.mode) ? workers : workers - 1, true);
  return makespan(mixed.speeds, numExperts) < makespan(cpuOnly.speeds, numExperts) ? mixed : cpuOnly;
}

/** Time to run `experts` equal experts placed longest-first by speed. */
function makespan(speeds: number[], experts: number): number {
  const placement = new Placement(experts, speeds.length, 1, speeds);
  placement.observe(new Array(experts).fill(1));
  const load = new Array<number>(speeds.length).fill(0);
  for (const w of placement.owner) load[w]!++;
  return Math.max(...load.map((l, w) => l / speeds[w]!));
}

// Tokens per calibration run: enough to time the FFN's arithmetic rather than its overheads, few
// enough that the slow gpu.js CPU modes calibrate in about a second. Per-token cost is what the
// placement compares, and both devices' costs grow linearly in the tokens.
const CALIBRATION_ROWS = 64;

/** Where a calibration is kept: this machine, the shape, the rows, the mode and (GPU modes) what that mode runs on. */
function calibrationKey(shape: FfnShape, rows: number, mode: GpujsMode, probe: GpujsProbe) {
  const machine = `${cpus()[0]?.model ?? 'unknown CPU'} × ${availableParallelism()}, ${process.platform}-${process.arch}, node ${process.version}`;
  const shapeKey = `d=${shape.d} f=${shape.f} ${shape.activation}`;
  const device = probe.found[mode];
  const key = createHash('sha256').update(`${machine}|${shapeKey}|${rows}|${mode}${device ? `|${device}` : ''}`).digest('hex').slice(0, 16);
  return { machine, shapeKey, device, key };
}

/** The cached figures for this machine, shape and mode, if `auto` has measured them. */
export async function cachedCalibration(shape: FfnShape, rows: number, mode: GpujsMode, store = processStore): Promise<Calibration | undefined> {
  const { key } = calibrationKey(shape, rows, mode, (await loadGpujs()).probe);
  const hit = store.read()[key];
  return hit && { ...hit, cached: true };
}

/** Times one expert forward + backward on WebAssembly and on gpu.js `mode`, or reads the cached figures. */
export async function calibrate(shape: FfnShape, rows: number, mode: GpujsMode, store = processStore): Promise<Calibration> {
  const { machine, shapeKey, device, key } = calibrationKey(shape, rows, mode, (await loadGpujs()).probe);
  const cache = store.read();
  const hit = cache[key];
  if (hit) return { ...hit, cached: true };

  const kernels = createArenaKernels(new Arena());
  const rng = new Rng('calibration', shapeKey, rows);
  const matrices = (): ExpertWeights => ({
    wIn: rng.fillNormal(kernels.allocF32(shape.d * shape.f), 0.05), wOut: rng.fillNormal(kernels.allocF32(shape.f * shape.d), 0.05),
    ...(shape.activation === 'swiglu' && { wGate: rng.fillNormal(kernels.allocF32(shape.d * shape.f), 0.05) }),
  });
  const w = matrices(), grads = matrices();
  const b = expertBuffers(kernels.allocF32(expertBlockLength(shape, rows, false)), shape, rows, false);
  rng.fillNormal(b.x);
  rng.fillNormal(b.dy);
  const wasmMs = await fastest(4, () => { ffnForward(kernels, shape, w, b.x, b); ffnBackward(kernels, shape, w, grads, b.x, b.dy, b); });
  const ffn = await GpujsExpertFfn.create(mode);
  const gpujsMs = await fastest(3, async () => { await ffn.forward(shape, w, b); await ffn.backward(shape, w, b, grads); });
  await ffn.destroy();

  const measured = {
    machine, shape: shapeKey, rows, wasmMs, gpujs: { mode, ms: gpujsMs, ...(device && { device }) }, measuredAt: new Date().toISOString(),
  };
  store.write({ ...store.read(), [key]: measured });
  return { ...measured, cached: false };
}

/** For `switchyard info`: what gpu.js found here, what `auto` has measured on this machine, and what it would choose. */
export interface DeviceReport {
  /** The gpu.js modes here (GPU modes first), why each missing GPU mode is missing, what each GPU mode runs on. */
  gpujs: GpujsProbe;
  /** describeProbe's line. */
  summary: string;
  /** Every cached calibration of this machine (all shapes and modes), oldest first. */
  calibrations: Calibration[];
  /** `auto` for `shape` on `workers` CPU workers and `numExperts` experts. */
  auto: { shape: string; workers: number; numExperts: number } & (AutoChoice | { notCalibrated: string });
}

/**
 * What `auto` sees and would do here. By default for the tiny preset's experts (d 128, d_ff 344,
 * swiglu, 8 experts) on one WebAssembly worker per core, from cached figures only; `measure`
 * calibrates what is missing (about a second in the CPU modes, more on a software GPU).
 */
export async function deviceReport(o: {
  store?: CalibrationStore; shape?: FfnShape; numExperts?: number; workers?: number; measure?: boolean;
} = {}): Promise<DeviceReport> {
  const store = o.store ?? processStore, shape = o.shape ?? { d: 128, f: 344, activation: 'swiglu' as const };
  const workers = o.workers ?? availableParallelism(), numExperts = o.numExperts ?? 8;
  const { probe } = await loadGpujs();
  const choice = await autoChoice(probe, shape, workers, numExperts, store, o.measure ?? false);
  const { machine } = calibrationKey(shape, CALIBRATION_ROWS, 'cpu', probe);
  const calibrations = Object.values(store.read()).filter((c) => c.machine === machine)
    .sort((a, b) => a.measuredAt.localeCompare(b.measuredAt)).map((c) => ({ ...c, cached: true }));
  const shapeKey = `d=${shape.d} f=${shape.f} ${shape.activation}`;
  return {
    gpujs: probe, summary: describeProbe(probe), calibrations,
    auto: {
      shape: shapeKey, workers, numExperts,
      ...(choice ?? { notCalibrated: `auto has not measured ${shapeKey} on this machine yet (it does at the first run with --backend auto)` }),
    },
  };
}

/** The fastest of `runs` timed runs after one untimed (compiling) run. */
async function fastest(runs: number, step: () => void | Promise<void>): Promise<number> {
  await step();
  let best = Infinity;
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    await step();
    best = Math.min(best, performance.now() - start);
  }
  return best;
}
