// Training a Switch Transformer language model: the run folder, the model on the worker threads,
// the loop (a batch, forward, backward, AdamW), validation, the log and checkpoints.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type ExpertBackend, planDevices } from '../engine/devices.js';
import { onWorkers } from '../engine/on-workers.js';
import { WorkerPool } from '../engine/worker-pool.js';
import type { GpujsMode } from '../kernels/gpujs/device.js';
import { Arena } from '../kernels/arena.js';
import { WasmKernels, fastestVariant } from '../kernels/wasm/backend.js';
import { type ModelConfig, PRESETS, type TrainConfig } from '../model/config.js';
import { AdamW } from '../model/optim.js';
import type { SwitchStats } from '../model/switch-layer.js';
import { Transformer } from '../model/transformer.js';
import { calibrationFile } from './calibration-file.js';
import { type Batch, DEFAULT_CORPUS, loadCorpus, makeDataset, trainBatch, validationBatches } from './data.js';
import { type RunConfig, loadCheckpoint, readRunConfig, runFiles, saveCheckpoint, writeRunConfig } from './run-folder.js';
import { type TokenizerKind, byteTokenizer, charTokenizer, tokenizerFromSpec } from './tokenizer.js';

export type PresetName = keyof typeof PRESETS;

export interface TrainOptions {
  preset?: PresetName;
  model?: Partial<ModelConfig>;
  train?: Partial<TrainConfig>;
  /** A UTF-8 text file; default: the embedded tiny-shakespeare. */
  data?: string;
  tokenizer?: TokenizerKind;
  /** The run folder. */
  out: string;
  /** Continue the run in `out` from its checkpoint. */
  resume?: boolean;
  /** Expert worker threads; 0 runs the Switch layers in this thread. Default: one per core. */
  workers?: number;
  /** What computes the experts (engine/devices.ts); default 'wasm'. */
  backend?: ExpertBackend;
  gpujsMode?: GpujsMode;
  /** Lines about the devices chosen (what 'auto' measured). */
  log?: (line: string) => void;
  /** Called after every step. */
  onStep?: (report: StepReport) => void;
  /** Aborting stops after the current step, with a checkpoint. */
  signal?: AbortSignal;
}

export interface StepReport {
  step: number;
  steps: number;
  loss: number;
  crossEntropy: number;
  /** On the steps where validation ran. */
  valLoss?: number;
  lr: number;
  gradNorm: number;
  tokensPerS: number;
  elapsedS: number;
  /** Fraction of token assignments over capacity, over all Switch layers. */
  droppedFraction: number;
  /** Per Switch layer, the share of tokens each expert received as first choice. */
  expertLoad: number[][];
}

export interface TrainResult { dir: string; stepsDone: number; stopped: boolean; lastLoss: number; valLoss: number }

export async function train(o: TrainOptions): Promise<TrainResult> {
  const config = o.resume ? resumedConfig(o) : newConfig(o);
  const t = config.train;
  const data = makeDataset(loadCorpus(config.data).text, tokenizerFromSpec(config.tokenizer), config.data);
  const valBatches = validationBatches(data.val, t.batch, config.model.context, t.evalBatches, t.seed);
  const { model, optimizer, close } = await buildModel(config, o);
  try {
    const files = runFiles(o.out);
    mkdirSync(o.out, { recursive: true });
    let start = 0;
    if (o.resume) {
      start = loadCheckpoint(o.out, model, optimizer);
      keepLogBefore(files.log, start);
    } else {
      writeRunConfig(o.out, config);
      writeFileSync(files.log, '');
    }

    const began = performance.now();
    let lastLoss = NaN, valLoss = NaN, step = start;
    for (; step < t.steps && !o.signal?.aborted; step++) {
      const stepBegan = performance.now();
      const batch = trainBatch(data.train, t.batch, config.model.context, t.seed, step);
      const out = await model.forward(batch, { training: true, step });
      await model.backward();
      const { lr, gradNorm } = optimizer.step(step);
      model.syncComputeCopies();
      lastLoss = out.loss;
      const report: StepReport = {
        step: step + 1, steps: t.steps, loss: out.loss, crossEntropy: out.crossEntropy, lr, gradNorm,
        tokensPerS: batch.inputs.length / ((performance.now() - stepBegan) / 1000), elapsedS: (performance.now() - began) / 1000,
        ...routingReport(out.switchStats),
      };
      const validate = (step + 1) % t.evalEvery === 0 || step === t.steps - 1;
      if (validate) {
        valLoss = await validationLoss(model, valBatches);
        report.valLoss = valLoss;
      }
      appendFileSync(files.log, JSON.stringify(logLine(report)) + '\n');
      if (validate) saveCheckpoint(o.out, model, optimizer, step + 1);
      o.onStep?.(report);
    }
    const stopped = step < t.steps;
    if (stopped) saveCheckpoint(o.out, model, optimizer, step);
    return { dir: o.out, stepsDone: step, stopped, lastLoss, valLoss };
  } finally {
    await close();
  }
}

/** A new run's configuration: the preset, the options over it, the tokenizer fitted to the corpus. */
function newConfig(o: TrainOptions): RunConfig {
  if (existsSync(runFiles(o.out).checkpoint)) throw new Error(`${o.out} already holds a run; pass --resume to continue it, or choose another --out`);
  const preset = PRESETS[o.preset ?? 'tiny'];
  if (!preset) throw new Error(`unknown preset '${o.preset}' (use ${Object.keys(PRESETS).join(', ')})`);
  const { text } = loadCorpus(o.data);
  const tokenizer = (o.tokenizer ?? 'char') === 'char' ? charTokenizer(text) : byteTokenizer();
  return {
    format: 'switchyard-run-1',
    model: { ...preset.model, ...o.model, vocabSize: tokenizer.vocabSize },
    train: { ...preset.train, ...o.train },
    tokenizer: tokenizer.spec(),
    data: o.data ?? DEFAULT_CORPUS,
  };
}

/** The saved configuration; training settings given with a resume (more steps, say) replace the saved ones. */
function resumedConfig(o: TrainOptions): RunConfig {
  const saved = readRunConfig(o.out);
  const config = { ...saved, train: { ...saved.train, ...o.train } };
  if (JSON.stringify(config.train) !== JSON.stringify(saved.train)) writeRunConfig(o.out, config);
  return config;
}

/** The model and its optimizer, with its layers on one pool of worker threads (none with 0 workers). */
async function buildModel(config: RunConfig, o: TrainOptions): Promise<{ model: Transformer; optimizer: AdamW; close: () => Promise<void> }> {
  const kernels = new WasmKernels(new Arena(64 * 1024 * 1024), fastestVariant());
  const workers = o.workers ?? availableParallelism();
  const m = config.model;
  const plan = workers > 0 && await planDevices({
    backend: m.numExperts > 0 ? o.backend ?? 'wasm' : 'wasm', workers, ...(o.gpujsMode && { gpujsMode: o.gpujsMode }), ...(o.log && { log: o.log }),
    shape: { d: m.dModel, f: m.dFF, activation: m.activation }, numExperts: m.numExperts, store: calibrationFile(),
  });
  const pool = plan ? WorkerPool.forKernels(kernels, plan, 120_000) : undefined;
  let model: Transformer;
  try {
    model = new Transformer(kernels, m, { seed: config.train.seed, ...(pool && onWorkers(kernels, pool)) });
  } catch (error) {
    await pool?.close(); // or its threads would keep the process alive
    throw error;
  }
  return {
    model, optimizer: new AdamW(kernels, model.params.list, config.train),
    close: async () => { await model.dispose(); await pool?.close(); },
  };
}

/** Mean cross-entropy over the fixed validation batches, without dropout or jitter. */
export async function validationLoss(model: Transformer, batches: Batch[]): Promise<number> {
  let sum = 0;
  for (const b of batches) sum += (await model.forward(b, { training: false })).crossEntropy;
  return sum / batches.length;
}

/** The step's dropped fraction over all Switch layers, and each layer's first-choice share per expert. */
function routingReport(stats: SwitchStats[]): Pick<StepReport, 'droppedFraction' | 'expertLoad'> {
  const assignments = stats.reduce((s, x) => s + x.expertIndex.length, 0);
  return {
    droppedFraction: stats.reduce((s, x) => s + x.dropped, 0) / Math.max(1, assignments),
    expertLoad: stats.map((x) => {
      const tokens = x.tokensPerExpert.reduce((a, b) => a + b, 0);
      return Array.from(x.tokensPerExpert, (n) => n / tokens);
    }),
  };
}

function logLine(r: StepReport): Record<string, unknown> {
  return {
    step: r.step, loss: r.loss, cross_entropy: r.crossEntropy, lr: r.lr, grad_norm: r.gradNorm,
    tokens_per_s: Math.round(r.tokensPerS), elapsed_s: Number(r.elapsedS.toFixed(3)), dropped_fraction: r.droppedFraction,
    expert_load: r.expertLoad, ...(r.valLoss !== undefined && { val_loss: r.valLoss }),
  };
}

/** A resumed run logs its steps again from the checkpoint on: drop what an interrupted run logged past it. */
function keepLogBefore(file: string, nextStep: number): void {
  if (!existsSync(file)) return;
  const kept = readFileSync(file, 'utf8').split('\n').filter((line) => line && (JSON.parse(line) as { step: number }).step <= nextStep);
  writeFileSync(file, kept.map((l) => l + '\n').join(''));
}
