// The expert FFN on gpu.js: the same numbers as the WebAssembly kernels in every mode this machine
// has (webasm and cpu everywhere; headless-gl under an X server such as Xvfb where the gl package
// built; webgpu where Dawn finds an adapter, e.g. Mesa's lavapipe), the reference cases through the
// engine, a short training run on the GPU modes, the one-line report of missing GPU modes, and
// what `auto` measures and picks. A mode missing here skips its tests with the reason in their names.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { calibrationFile } from '../app/calibration-file.js';
import {
  type AutoChoice, type Calibration, type DevicePlan, calibrate, choosePlan, deviceReport, planDevices, uniformPlan,
} from '../engine/devices.js';
import { Placement } from '../engine/placement.js';
import { SwitchEngine } from '../engine/switch-engine.js';
import { WorkerPool } from '../engine/worker-pool.js';
import { GPUJS_MODES, type GpujsMode, describeProbe, isGpuMode, loadGpujs } from '../kernels/gpujs/device.js';
import { GpujsExpertFfn, paddedRows } from '../kernels/gpujs/expert-ffn.js';
import { createKernels } from '../kernels/index.js';
import type { WasmKernels } from '../kernels/wasm/backend.js';
import type { Activation } from '../model/config.js';
import { type ExpertWeights, expertBlockLength, expertBuffers } from '../model/expert.js';
import { ffnBackward, ffnForward } from '../model/ffn.js';
import { checkReferenceCase, loadReferenceCase, relativeError } from '../app/reference-case.js';
import { Rng } from '../model/rng.js';
import { SwitchLayer } from '../model/switch-layer.js';
import { train } from '../app/train.js';

const kernels = createKernels({ backend: 'wasm' });
const { probe } = await loadGpujs();
/** Each gpu.js mode, named as a test title: where it is missing here, with why its tests skip. */
const MODES = GPUJS_MODES.map((mode) => {
  const why = probe.missing.find((m) => m.startsWith(mode === 'headlessgl' ? 'headless-gl:' : `${mode}:`));
  return { mode, here: probe.modes.includes(mode), title: probe.modes.includes(mode) ? mode : `${mode} (skipped: ${why})` };
});
const GPU_MODES = MODES.filter((m) => isGpuMode(m.mode));
/** How gpu.js runs a pipeline in each mode: fused into one plan (webasm), one command encoder (webgpu), kernel by kernel (cpu, headless-gl). */
const EXECUTOR: Record<GpujsMode, string> = { webasm: 'fused-sync', webgpu: 'fused-encoder', headlessgl: 'generic', cpu: 'generic' };

describe('gpu.js expert FFN', () => {
  it('pads rows to sizes with at most 4 significant bits, never more than 1/8 extra', () => {
    expect([1, 16, 17, 19, 33, 100, 129, 1000].map(paddedRows)).toEqual([16, 16, 18, 20, 36, 104, 144, 1024]);
    for (let n = 17; n < 5000; n += 7) {
      expect(paddedRows(n)).toBeGreaterThanOrEqual(n);
      expect(paddedRows(n)).toBeLessThanOrEqual(n * 1.125);
    }
  });

  describe.each(MODES)('in gpu.js $title mode', ({ mode, here }) => {
    it.skipIf(!here).each([
      ['relu', false, 19], ['relu', true, 16], ['gelu', false, 23], ['gelu', true, 5], ['swiglu', false, 16], ['swiglu', true, 37],
    ] as [Activation, boolean, number][])('%s (dropout mask: %s, %i tokens) matches the WebAssembly FFN forward and backward', async (activation, masked, n) => {
      const ffn = await GpujsExpertFfn.create(mode);
      expect(ffn.mode).toBe(mode);
      const s = { d: 12, f: 20, activation };
      const rng = new Rng('gpujs-ffn', activation, n);
      const matrices = (fill: boolean): ExpertWeights => {
        const m = () => (fill ? rng.fillNormal(kernels.allocF32(s.d * s.f)) : kernels.allocF32(s.d * s.f));
        return { wIn: m(), wOut: m(), ...(activation === 'swiglu' && { wGate: m() }) };
      };
      const w = matrices(true);
      const [wasm, gpu] = [0, 1].map(() => expertBuffers(kernels.allocF32(expertBlockLength(s, n, masked)), s, n, masked));
      const [wasmGrads, gpuGrads] = [matrices(false), matrices(false)];
      rng.fillNormal(wasm!.x);
      rng.fillNormal(wasm!.dy);
      if (masked) for (let i = 0; i < wasm!.mask!.length; i++) wasm!.mask![i] = rng.uniform() < 0.3 ? 0 : 1 / 0.7;
      gpu!.x.set(wasm!.x); gpu!.dy.set(wasm!.dy); gpu!.mask?.set(wasm!.mask!);

      ffnForward(kernels, s, w, wasm!.x, wasm!);
      ffnBackward(kernels, s, w, wasmGrads, wasm!.x, wasm!.dy, wasm!);
      await ffn.forward(s, w, gpu!);
      await ffn.backward(s, w, gpu!, gpuGrads);
      const pairs: [string, Float32Array, Float32Array][] = [
        ['out', wasm!.y, gpu!.y], ['h', wasm!.h, gpu!.h], ['a', wasm!.a, gpu!.a], ['dx', wasm!.dx, gpu!.dx],
        ['dW_in', wasmGrads.wIn, gpuGrads.wIn], ['dW_out', wasmGrads.wOut, gpuGrads.wOut],
      ];
      if (activation === 'swiglu') pairs.push(['g', wasm!.g!, gpu!.g!], ['dW_gate', wasmGrads.wGate!, gpuGrads.wGate!]);
      for (const [name, expected, actual] of pairs) {
        expect(actual.some((v) => v !== 0), `${name} was written`).toBe(true);
        expect(relativeError(actual, expected), name).toBeLessThan(1e-6);
      }
      expect(ffn.executors()).toEqual([EXECUTOR[mode], EXECUTOR[mode]]);
      await ffn.destroy();
    });
  });

  describe.each(MODES)('the benchmarks\' GEMM in gpu.js $title mode', ({ mode, here }) => {
    it.skipIf(!here).each(['nn', 'nt', 'tn'] as const)('%s gives the reference kernels\' product, read back', async (form) => {
      const ffn = await GpujsExpertFfn.create(mode);
      const [m, n, k] = [5, 7, 9], rng = new Rng('gpujs-gemm', form);
      const a = rng.fillNormal(new Float32Array(m * k)), b = rng.fillNormal(new Float32Array(k * n));
      const want = new Float32Array(m * n);
      createKernels({ backend: 'reference' }).gemm(form, m, n, k, a, b, want, false);
      const got = Float32Array.from((await ffn.gemm(form, m, n, k)(a, b) as Float32Array[]).flatMap((row) => [...row]));
      expect(relativeError(got, want)).toBeLessThan(1e-6);
      await ffn.destroy();
    });
  });

  it('runs in the fastest mode this machine has unless told otherwise', async () => {
    const ffn = await GpujsExpertFfn.create();
    expect(ffn.mode).toBe(probe.modes[0]);
    await ffn.destroy();
  });

  const absent = GPU_MODES.find((m) => !m.here)?.mode;
  it.skipIf(!absent)(`refuses a mode this machine does not have, saying which it has and why${absent ? '' : ' (skipped: both GPU modes are here)'}`, async () => {
    await expect(GpujsExpertFfn.create(absent)).rejects.toThrow(new RegExp(`'${absent}' is not available here \\(available: .*webasm, cpu; .*${absent === 'headlessgl' ? 'headless-gl' : absent}: `));
  });
});

describe('gpu.js on this machine', () => {
  it('always has the CPU modes, and says in one line why each GPU mode is missing', async () => {
    expect(probe.modes).toEqual(expect.arrayContaining(['webasm', 'cpu']));
    const line = describeProbe(probe);
    expect(line).not.toContain('\n');
    if (!probe.modes.includes('webgpu')) expect(line).toMatch(/webgpu: \S/);
    if (!probe.modes.includes('headlessgl')) expect(line).toMatch(/headless-gl: \S/);
  });
});

describe('headless-gl without an X display', () => {
  const gl = (() => { try { return createRequire(import.meta.url).resolve('gl'); } catch { return undefined; } })();
  it.skipIf(!gl)(`says to run under Xvfb${gl ? '' : ' (skipped: the optional gl package is not installed)'}`, () => {
    const env = { ...process.env };
    delete env.DISPLAY;
    const script = "import('./dist/kernels/gpujs/device.js').then(async (d) => console.log(d.describeProbe((await d.loadGpujs()).probe)))";
    const r = spawnSync(process.execPath, ['-e', script], { cwd: new URL('..', import.meta.url).pathname, env, encoding: 'utf8', timeout: 60_000 });
    expect(r.stdout).toMatch(/headless-gl: no X display \(DISPLAY is unset; run under Xvfb/);
  }, 60_000);
});

const cases = (dir: URL) => readdirSync(dir).filter((f) => f.endsWith('.json')).sort().map((f) => new URL(f, dir).pathname);
const referenceFiles = [...cases(new URL('./reference/', import.meta.url)), ...cases(new URL('./reference/generated/', import.meta.url))];

describe.each(MODES)('reference cases through the engine, experts on gpu.js $title', ({ mode: gpujsMode, here }) => {
  // One pool of two gpu.js workers for every case: each thread loads gpu.js (and, for headless-gl, its own copy of the binary) once.
  const wasm = createKernels({ backend: 'wasm' }) as WasmKernels;
  let pool: WorkerPool | undefined;
  beforeAll(() => { if (here) pool = WorkerPool.forKernels(wasm, uniformPlan('gpujs', 2, gpujsMode), 60_000); });
  afterAll(() => pool?.close());
  it.skipIf(!here).each(referenceFiles.map((f) => [f.split('/reference/')[1]!, f]))('%s', async (_name, file) => {
    const result = await checkReferenceCase(loadReferenceCase(file), (o) => new SwitchEngine({ ...o, shared: { kernels: wasm, pool: pool! } }));
    for (const c of result.comparisons) {
      expect(c.pass, `${c.field}: error ${c.error}`).toBe(true);
      if (!c.exact) expect(c.error, c.field).toBeLessThan(1e-5); // measured: at most 1.0e-6 in the CPU modes, 1.6e-6 on headless-gl
    }
  }, 30_000);
});

describe('placement by device speed', () => {
  it('gives a worker three times as fast three times the tokens', () => {
    const p = new Placement(8, 2, 1, [3, 1]);
    p.observe(new Array(8).fill(10));
    const tokens = p.shards().map((s) => s.length * 10);
    expect(tokens).toEqual([60, 20]);
  });

  it('places as before when the speeds are equal', () => {
    const load = [50, 10, 40, 30, 20, 5, 60, 1];
    const [a, b] = [new Placement(8, 3, 1), new Placement(8, 3, 1, [2, 2, 2])];
    a.observe(load); b.observe(load);
    expect([...b.owner]).toEqual([...a.owner]);
  });

  it('rejects speeds that do not fit the workers', () => {
    expect(() => new Placement(4, 2, 1, [1])).toThrow(/speeds must be 2 positive numbers/);
    expect(() => new Placement(4, 2, 1, [1, 0])).toThrow(/speeds must be 2 positive numbers/);
  });
});

describe('a WebAssembly worker and a gpu.js worker in one pool', () => {
  it('places experts by speed and gives the in-process layer\'s numbers, whichever worker computes them', async () => {
    const wasm = createKernels({ backend: 'wasm' }) as WasmKernels;
    const pool = WorkerPool.forKernels(wasm, { devices: [{ kind: 'wasm' }, { kind: 'gpujs', mode: 'webasm' }], speeds: [1, 3] }, 60_000);
    const o = { dModel: 16, dFF: 24, numExperts: 8, capacityFactor: 2, activation: 'gelu' as const };
    const engine = new SwitchEngine({ ...o, seed: 5, shared: { kernels: wasm, pool } });
    const layer = new SwitchLayer(wasm, o, { seed: 5 });
    try {
      const T = 64, rng = new Rng('mixed-pool');
      const x = rng.fillNormal(new Float32Array(T * o.dModel)), dy = rng.fillNormal(new Float32Array(T * o.dModel));
      const want = { y: Float32Array.from(layer.forward(x, T).y), dx: Float32Array.from(layer.backward(dy)) };
      const { y: engineY, stats } = await engine.forward(x, T);
      const y = Float32Array.from(engineY), dx = await engine.backward(dy);
      expect(relativeError(y, want.y)).toBeLessThan(1e-6);
      expect(relativeError(dx, want.dx)).toBeLessThan(1e-6);
      for (const name of ['router', 'wIn', 'wOut'] as const) expect(relativeError(engine.grads[name], layer.grads[name]), name).toBeLessThan(1e-6);
      const [cpu, gpujs] = engine.lastTiming().workers;
      const owned = (w: typeof cpu) => w!.experts.reduce((n, e) => n + stats.keptPerExpert[e]!, 0);
      expect(owned(gpujs)).toBeGreaterThan(2 * owned(cpu)); // three times the speed: about three times the tokens
      // Who computed what follows the real speeds (the wasm worker takes whole experts the other has not begun).
      expect(cpu!.tokens + gpujs!.tokens).toBe(2 * (T - stats.dropped));
    } finally {
      layer.dispose();
      await engine.close();
      await pool.close();
    }
  });
});

describe('auto', () => {
  const calibration = (mode: GpujsMode, wasmMs: number, gpujsMs: number): Calibration =>
    ({ machine: 'test', shape: 'test', rows: 64, wasmMs, gpujs: { mode, ms: gpujsMs }, measuredAt: '', cached: false });
  /** How many experts each worker of `plan` computes when E equal experts are placed by its speeds. */
  const expertsPerWorker = (plan: DevicePlan, experts: number) => {
    const p = new Placement(experts, plan.devices.length, 1, plan.speeds);
    p.observe(new Array(experts).fill(1));
    return p.shards().map((s) => s.length);
  };

  it('adds a GPU worker beside the cores when it shortens the step, sized by its speed', () => {
    const plan = choosePlan(calibration('webgpu', 10, 2), 2, 8);
    expect(plan.devices).toEqual([{ kind: 'wasm' }, { kind: 'wasm' }, { kind: 'gpujs', mode: 'webgpu' }]);
    expect(plan.speeds).toEqual([0.1, 0.1, 0.5]);
  });

  it('gives the GPU worker the experts its measured speed earns', () => {
    // Four times a core's speed: 8 of 12 experts, and every worker finishes at 20 ms.
    expect(expertsPerWorker(choosePlan(calibration('headlessgl', 10, 2.5), 2, 12), 12)).toEqual([2, 2, 8]);
    // A third of a core's speed: one expert, and only where that shortens the step (9 experts: 40 ms instead of 50).
    expect(expertsPerWorker(choosePlan(calibration('headlessgl', 10, 30), 2, 9), 9)).toEqual([4, 4, 1]);
    // With 8 experts it would not (40 ms either way): every core on WebAssembly.
    expect(choosePlan(calibration('headlessgl', 10, 30), 2, 8).devices).toEqual([{ kind: 'wasm' }, { kind: 'wasm' }]);
  });

  it('keeps every core on WebAssembly when gpu.js is slower', () => {
    expect(choosePlan(calibration('webgpu', 10, 200), 2, 8).devices).toEqual([{ kind: 'wasm' }, { kind: 'wasm' }]);
    expect(choosePlan(calibration('webasm', 1, 30), 2, 8).devices).toEqual([{ kind: 'wasm' }, { kind: 'wasm' }]);
  });

  it('lets a faster gpu.js CPU mode take a core rather than add one', () => {
    const plan = choosePlan(calibration('webasm', 10, 2), 2, 8);
    expect(plan.devices).toEqual([{ kind: 'wasm' }, { kind: 'gpujs', mode: 'webasm' }]);
  });

  it('measures once per machine and shape, then reads the figures from its cache', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-calibration-'));
    const shape = { d: 8, f: 16, activation: 'relu' as const };
    const first = await calibrate(shape, 16, 'cpu', calibrationFile(dir));
    expect(first.cached).toBe(false);
    expect(first.wasmMs).toBeGreaterThan(0);
    expect(first.gpujs).toEqual({ mode: 'cpu', ms: expect.any(Number) });
    expect(existsSync(join(dir, 'calibration.json'))).toBe(true);
    expect(readFileSync(join(dir, 'calibration.json'), 'utf8')).toContain(first.machine);
    const second = await calibrate(shape, 16, 'cpu', calibrationFile(dir));
    expect(second).toEqual({ ...first, cached: true });
    const other = await calibrate({ ...shape, activation: 'gelu' }, 16, 'cpu', calibrationFile(dir));
    expect(other.cached).toBe(false);
  });

  it('logs what gpu.js has here, what it measured and what it chose', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-auto-'));
    const lines: string[] = [];
    const plan = await planDevices({ backend: 'auto', workers: 2, shape: { d: 8, f: 16, activation: 'swiglu' }, numExperts: 4, store: calibrationFile(dir), log: (l) => lines.push(l) });
    expect(lines[0]).toBe(describeProbe(probe));
    expect(lines[1]).toMatch(/^auto: an expert's step on 64 tokens takes [\d.]+ ms on a WebAssembly worker, [\d.]+ ms on gpu\.js \w+(, [\d.]+ ms on gpu\.js \w+)? \(measured now\); using /);
    expect(plan.devices.length).toBeGreaterThanOrEqual(2);
  });

  // The tiny preset's experts, where a GPU mode is here: measured against the WebAssembly kernels, and planned from those numbers.
  const gpuHere = GPU_MODES.filter((m) => m.here).map((m) => m.mode);
  it.skipIf(gpuHere.length === 0)(`measures every GPU mode here and plans from the fastest${gpuHere.length ? '' : ` (skipped: no GPU mode: ${probe.missing.join('; ')})`}`, async () => {
    const store = calibrationFile(mkdtempSync(join(tmpdir(), 'switchyard-auto-gpu-')));
    const shape = { d: 128, f: 344, activation: 'swiglu' as const }, workers = 2, numExperts = 8;
    const lines: string[] = [];
    const plan = await planDevices({ backend: 'auto', workers, shape, numExperts, store, log: (l) => lines.push(l) });
    const measured = await Promise.all(gpuHere.map((mode) => calibrate(shape, 64, mode, store)));
    expect(measured.every((c) => c.cached)).toBe(true); // auto measured each GPU mode, and kept the figures
    expect(measured.map((c) => c.gpujs.device)).toEqual(gpuHere.map((m) => probe.found[m]));
    const fastest = measured.reduce((a, b) => (b.gpujs.ms < a.gpujs.ms ? b : a));
    expect(plan).toEqual(choosePlan(fastest, workers, numExperts));
    console.log(`${lines[1]}\n  experts per worker: ${expertsPerWorker(plan, numExperts).join(', ')}`);
  }, 120_000);

  it('reports for `switchyard info` what it found, what it measured and what it would choose', async () => {
    const store = calibrationFile(mkdtempSync(join(tmpdir(), 'switchyard-info-')));
    const shape = { d: 8, f: 16, activation: 'relu' as const };
    const before = await deviceReport({ store, shape, workers: 2, numExperts: 4 });
    expect(before.gpujs).toBe(probe);
    expect(before.summary).toBe(describeProbe(probe));
    expect(before.calibrations).toEqual([]);
    expect(before.auto).toEqual({ shape: 'd=8 f=16 relu', workers: 2, numExperts: 4, notCalibrated: expect.stringMatching(/has not measured d=8 f=16 relu/) });
    const measured = await deviceReport({ store, shape, workers: 2, numExperts: 4, measure: true });
    expect(measured.auto).toMatchObject({ plan: expect.any(Object), line: expect.stringMatching(/\(measured now\); using /) });
    const after = await deviceReport({ store, shape, workers: 2, numExperts: 4 });
    expect(after.auto).toMatchObject({ line: expect.stringMatching(/\(cached\); using /) });
    const auto = after.auto as AutoChoice;
    expect(auto.plan).toEqual(choosePlan(auto.calibration, 2, 4));
    expect(after.calibrations).toHaveLength(Math.max(1, gpuHere.length));
    expect(after.calibrations.map((c) => c.gpujs.mode)).toEqual(gpuHere.length ? gpuHere : [probe.modes[0]]);
  }, 120_000);
});

describe.each(GPU_MODES)('training with the experts on gpu.js $title', ({ mode, here }) => {
  it.skipIf(!here)('follows the losses of the WebAssembly experts step by step', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-gpujs-train-'));
    const data = join(dir, 'corpus.txt');
    writeFileSync(data, readFileSync(new URL('../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 60_000));
    const losses: number[][] = [];
    for (const backend of ['wasm', 'gpujs'] as const) {
      const out = join(dir, backend);
      await train({
        data, out, workers: 2, backend, gpujsMode: mode,
        model: { layers: 2, heads: 2, dModel: 32, dFF: 64, context: 16, numExperts: 4 },
        train: { batch: 4, steps: 12, evalEvery: 100, evalBatches: 1, warmupSteps: 4 },
      });
      losses.push(readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).loss as number));
    }
    const [wasm, gpu] = losses as [number[], number[]];
    console.log(`${mode}: relative loss differences ${wasm.map((l, i) => (Math.abs(gpu[i]! - l) / l).toExponential(1)).join(' ')}`);
    expect(gpu).toHaveLength(12);
    expect(gpu).not.toEqual(wasm); // the experts did run elsewhere: gpu.js sums in another order
    gpu.forEach((loss, i) => expect(Math.abs(loss - wasm[i]!) / wasm[i]!, `step ${i + 1}`).toBeLessThan(1e-7));
  }, 120_000);
});
