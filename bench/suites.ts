// The measurements every benchmark entry point shares: one function per thing measured, each
// returning a row for the table and the JSON. Benchmark.js runs the timing.
import Benchmark from 'benchmark';
import { type StepTiming, SwitchEngine, type WorkerTiming } from '../engine/switch-engine.js';
import { uniformPlan } from '../engine/devices.js';
import { WorkerPool } from '../engine/worker-pool.js';
import { onWorkers } from '../engine/on-workers.js';
import type { GpujsMode } from '../kernels/gpujs/device.js';
import { GpujsExpertFfn } from '../kernels/gpujs/expert-ffn.js';
import { Arena, type GemmForm, type Kernels } from '../kernels/index.js';
import { createArenaKernels } from '../kernels/index.js';
import { PRESETS } from '../model/config.js';
import { sample } from '../app/inference.js';
import { AdamW } from '../model/optim.js';
import { Rng } from '../model/rng.js';
import { charTokenizer } from '../app/tokenizer.js';
import { Transformer } from '../model/transformer.js';
import { type Row, quantile } from './report.js';

/** The Switch layer shapes the engine is measured at: a small layer (routing and messaging matter) and a medium one (GEMMs dominate). */
export const SHAPES = {
  SMALL: { tokens: 1024, dModel: 128, dFF: 512, numExperts: 8 },
  MEDIUM: { tokens: 4096, dModel: 512, dFF: 2048, numExperts: 8 },
} as const;
export type ShapeName = keyof typeof SHAPES;

/** Runs an async step under Benchmark.js; returns its stats. */
async function timeAsync(name: string, maxTime: number, step: () => Promise<void>): Promise<Benchmark.Stats> {
  let failure: unknown;
  const bench = new Benchmark(name, {
    defer: true, maxTime, minSamples: 3,
    fn: (deferred: { resolve(): void; benchmark: Benchmark }) => {
      step().then(() => deferred.resolve(), (e) => { failure = e; deferred.benchmark.abort(); deferred.resolve(); });
    },
  });
  await new Promise((resolve) => bench.on('complete', resolve).on('abort', resolve).run({ async: true }));
  if (failure) throw failure;
  return bench.stats;
}

/** Single-thread GEMM GFLOP/s: the mean, and the fastest sample (other tenants slow this machine in phases). */
export function measureGemm(kernels: Kernels, form: GemmForm, m: number, k: number, n: number, maxTime: number): Row {
  const rng = new Rng('bench', m, k, n);
  const a = rng.fillNormal(kernels.allocF32(m * k)), b = rng.fillNormal(kernels.allocF32(k * n));
  const c = kernels.allocF32(m * n);
  const bench = new Benchmark(`${kernels.name} ${form} ${m}×${k}×${n}`, () => kernels.gemm(form, m, n, k, a, b, c, false), { maxTime, minSamples: 5 });
  bench.run();
  for (const x of [a, b, c]) kernels.free(x);
  const flop = 2 * m * n * k;
  return {
    suite: 'kernels', backend: kernels.name, form, m, k, n, threads: 1,
    gflops: flop / bench.stats.mean / 1e9, gflops_best: flop / Math.min(...bench.stats.sample) / 1e9,
    ms: bench.stats.mean * 1e3, rme_pct: bench.stats.rme,
  };
}

/**
 * A gpu.js GEMM in `mode`, the upload of A and B and the readback of C included (what a kernel
 * call costs). Timed by hand: a call takes seconds in the CPU modes, too slow for Benchmark.js's
 * sampling. One untimed call first, which compiles.
 */
export async function measureGpujsGemm(mode: GpujsMode, form: GemmForm, m: number, k: number, n: number, maxTime: number): Promise<Row> {
  const ffn = await GpujsExpertFfn.create(mode);
  const rng = new Rng('bench', m, k, n);
  const a = rng.fillNormal(new Float32Array(m * k)), b = rng.fillNormal(new Float32Array(k * n));
  const gemm = ffn.gemm(form, m, n, k);
  await gemm(a, b);
  const samples: number[] = [];
  const until = performance.now() + maxTime * 1000;
  while (samples.length < 2 || performance.now() < until) {
    const start = performance.now();
    await gemm(a, b);
    samples.push((performance.now() - start) / 1000);
  }
  await ffn.destroy();
  const mean = samples.reduce((x, y) => x + y, 0) / samples.length, flop = 2 * m * n * k;
  return {
    suite: 'kernels', backend: `gpujs-${mode}`, form, m, k, n, threads: 1,
    gflops: flop / mean / 1e9, gflops_best: flop / Math.min(...samples) / 1e9, ms: mean * 1e3, samples: samples.length,
  };
}

/** A Switch layer training step (forward + backward, SPEC losses, no optimizer) through the engine, on fixed random inputs. */
export interface SwitchStepper {
  tokens: number;
  /** The CPU kernels computing it (createKernels' name: native-avx512, wasm-relaxed-simd, …). */
  kernels: string;
  step: () => Promise<void>;
  /** Where the last step's time went. */
  timing: () => StepTiming;
  close: () => Promise<void>;
}

export async function switchStepper(shape: ShapeName, workers: number, backend: 'wasm' | 'gpujs' = 'wasm'): Promise<SwitchStepper> {
  const { tokens, ...layer } = SHAPES[shape];
  const engine = new SwitchEngine({ ...layer, capacityFactor: 1.25, activation: 'relu', workers, seed: 1, backend });
  const rng = new Rng('bench-engine', shape);
  const x = rng.fillNormal(new Float32Array(tokens * layer.dModel)), dy = rng.fillNormal(new Float32Array(tokens * layer.dModel));
  let step = 0;
  const stepper = {
    tokens,
    kernels: engine.kernels.name,
    step: async () => {
      await engine.forward(x, tokens, { training: true, step: step++ });
      await engine.backward(dy);
    },
    timing: () => engine.lastTiming(),
    close: () => engine.close(),
  };
  await stepper.step(); // threads start and compile their kernels
  return stepper;
}

export async function measureSwitchStep(shape: ShapeName, workers: number, maxTime: number, backend: 'wasm' | 'gpujs' = 'wasm'): Promise<Row> {
  const stepper = await switchStepper(shape, workers, backend);
  const timings: StepTiming[] = [];
  let stats: Benchmark.Stats;
  try {
    stats = await timeAsync(`${shape} × ${workers}`, maxTime, async () => { await stepper.step(); timings.push(stepper.timing()); });
  } finally {
    await stepper.close();
  }
  const mean = (f: (t: StepTiming) => number) => timings.reduce((s, t) => s + f(t), 0) / timings.length;
  const perWorker = (f: (w: WorkerTiming) => number) => Array.from({ length: workers }, (_, w) => mean((t) => f(t.workers[w]!)).toFixed(1)).join('/');
  return {
    suite: 'switch-layer', shape, workers, backend, kernels: stepper.kernels, tokens_per_s: stepper.tokens / stats.mean, best_tokens_per_s: stepper.tokens / Math.min(...stats.sample),
    step_ms: stats.mean * 1e3, overhead_fraction: mean((t) => t.overheadFraction), messaging_fraction: mean((t) => t.messagingFraction),
    routing_fraction: mean((t) => t.routingFraction),
    bytes_posted: Math.round(mean((t) => t.bytesPosted)),
    busy_ms: perWorker((w) => w.busyMs), idle_ms: perWorker((w) => w.idleMs), stolen_chunks: perWorker((w) => w.stolen),
    samples: stats.sample.length,
  };
}

/**
 * How many times faster `many` steps than `one`, stepping them alternately for `maxTime` seconds
 * (at least 6 pairs) so that this machine's swings hit both alike: the median and quartiles of
 * the per-pair ratios. Also the contention: the median of how much more worker time (summed over
 * workers) `many` spends on the same step than `one`, which is the host's, not the engine's.
 */
export async function interleavedScaling(one: SwitchStepper, many: SwitchStepper, maxTime: number): Promise<Row> {
  const ratios: number[] = [], contention: number[] = [];
  const busy = (s: SwitchStepper) => s.timing().workers.reduce((sum, w) => sum + w.busyMs, 0);
  const timed = async (s: SwitchStepper) => { const start = performance.now(); await s.step(); return performance.now() - start; };
  const until = performance.now() + maxTime * 1000;
  for (let i = 0; i < 6 || performance.now() < until; i++) {
    const [first, second] = i % 2 ? [many, one] : [one, many];
    const a = await timed(first), b = await timed(second);
    const [oneMs, manyMs] = first === one ? [a, b] : [b, a];
    ratios.push(oneMs / manyMs);
    contention.push(busy(many) / busy(one));
  }
  return {
    scaling: quantile(ratios, 0.5), scaling_q1: quantile(ratios, 0.25), scaling_q3: quantile(ratios, 0.75),
    contention: quantile(contention, 0.5), pairs: ratios.length,
  };
}

/** A preset's model on `workers` threads (0: this one), stepping on a fixed random batch as the trainer steps. */
export async function trainStepper(preset: keyof typeof PRESETS, workers: number): Promise<{ tokens: number; kernels: string; step: () => Promise<void>; close: () => Promise<void> }> {
  const { model: config, train } = PRESETS[preset];
  const kernels = createArenaKernels(new Arena(64 * 1024 * 1024));
  const pool = workers > 0 ? WorkerPool.forKernels(kernels, uniformPlan('wasm', workers), 120_000) : undefined;
  const model = new Transformer(kernels, { ...config, vocabSize: 65 }, { seed: 1, ...(pool && onWorkers(kernels, pool)) });
  const optimizer = new AdamW(kernels, model.params.list, train);
  const B = train.batch, T = config.context, rng = new Rng('bench-train');
  const tokens = () => Int32Array.from({ length: B * T }, () => rng.nextU32() % 65);
  const batch = { batch: B, context: T, inputs: tokens(), targets: tokens() };
  let step = 0;
  return {
    tokens: B * T,
    kernels: kernels.name,
    step: async () => {
      await model.forward(batch, { training: true, step });
      await model.backward();
      optimizer.step(step++);
      model.syncComputeCopies();
    },
    close: async () => { await model.dispose(); await pool?.close(); },
  };
}

/** A full training step of a preset (forward, backward, AdamW) on random tokens, as the trainer runs it. */
export async function measureTrainStep(preset: keyof typeof PRESETS, workers: number, maxTime: number): Promise<Row> {
  const trainer = await trainStepper(preset, workers);
  try {
    await trainer.step();
    const stats = await timeAsync(`${preset} train step`, maxTime, trainer.step);
    return {
      suite: 'train-step', preset, workers, kernels: trainer.kernels, tokens_per_s: trainer.tokens / stats.mean, best_tokens_per_s: trainer.tokens / Math.min(...stats.sample),
      step_ms: stats.mean * 1e3, samples: stats.sample.length,
    };
  } finally {
    await trainer.close();
  }
}

/** Sampling tokens one at a time from a preset's model (random weights: the speed does not depend on them). */
export async function measureGeneration(preset: keyof typeof PRESETS, tokens: number): Promise<Row> {
  const tokenizer = charTokenizer('abcdefghijklmnopqrstuvwxyz .\n');
  const model = new Transformer(createArenaKernels(new Arena()), { ...PRESETS[preset].model, vocabSize: tokenizer.vocabSize }, { seed: 1 });
  const start = performance.now();
  await sample(model, tokenizer, 'the ', { maxTokens: tokens, temperature: 1, topK: 0, seed: 1 });
  const seconds = (performance.now() - start) / 1000;
  await model.dispose();
  return { suite: 'generation', preset, workers: 0, tokens, tokens_per_s: tokens / seconds, ms_per_token: (1000 * seconds) / tokens };
}
