// Training a Switch Transformer language model: the run folder, the model on the worker threads,
// the loop (a batch, forward, backward, AdamW), validation, the log and checkpoints.
import { appendFileSync, existsSync, mkdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { type ExpertBackend, planDevices } from '../engine/devices.js';
import { onWorkers } from '../engine/on-workers.js';
import { WorkerPool } from '../engine/worker-pool.js';
import type { GpujsMode } from '../kernels/gpujs/device.js';
import { Arena } from '../kernels/arena.js';
import { createArenaKernels } from '../kernels/index.js';
import { ARCHITECTURES, type ModelConfig, PRESETS, type TrainConfig, checkModelConfig, isSparseLayer } from '../model/config.js';
import { AdamW } from '../model/optim.js';
import type { SwitchStats } from '../model/switch-layer.js';
import { Transformer } from '../model/transformer.js';
import { calibrationFile } from './calibration-file.js';
import { writeFileAtomic } from './files.js';
import { type Batch, corpusRef, findCorpus, makeDataset, trainBatch, validationBatches } from './data.js';
import { OptionError, checkTrainOptions, runChanges } from './options.js';
import { type RunConfig, type RunState, loadCheckpoint, readRunConfig, runFiles, saveCheckpoint, writeRunConfig } from './run-folder.js';
import { DeadExperts, type LayerRouting, RoutingTally } from './routing-stats.js';
import { lockRun } from './run-lock.js';
import { type TokenizerChoice, tokenizerFor, tokenizerFromSpec } from './tokenizer.js';

export type PresetName = keyof typeof PRESETS;

export interface TrainOptions {
  preset?: PresetName;
  /** An architecture's model fields (norm, positions, activation, bias) over the preset's. */
  arch?: keyof typeof ARCHITECTURES;
  model?: Partial<ModelConfig>;
  train?: Partial<TrainConfig>;
  /** A corpus name (tinyshakespeare, the default, or one built by `npm run corpus`) or a UTF-8 text file. */
  data?: string;
  /** char (default), byte, gpt2 or gpt2-N (app/tokenizer.ts). */
  tokenizer?: TokenizerChoice;
  /** The run folder. */
  out: string;
  /** Continue the run in `out` from its checkpoint. */
  resume?: boolean;
  /** Expert worker threads; 0 runs the Switch layers in this thread. Default: one per core. */
  workers?: number;
  /** What computes the experts (engine/devices.ts); default 'wasm'. */
  backend?: ExpertBackend;
  gpujsMode?: GpujsMode;
  /** A checkpoint every this many steps, besides one at every validation and one when stopped. Default 100. */
  checkpointEvery?: number;
  /** Also keep the checkpoint with the lowest validation loss, as checkpoint-best.safetensors. */
  keepBest?: boolean;
  /** Lines about the run: what a resume changed, the devices chosen (what 'auto' measured). */
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
  /** Training wall time so far, over every session of the run. */
  elapsedS: number;
  /** Fraction of token assignments over capacity, over all Switch layers. */
  droppedFraction: number;
  /** Per Switch layer, the share of tokens each expert received as first choice. */
  expertLoad: number[][];
  /** On the steps where validation ran: each Switch layer's routing on the validation batches (app/routing-stats.ts). */
  routing?: LayerRouting[];
  /** Dead experts found at this step (also said through `log`). */
  warnings?: string[];
}

export interface TrainResult {
  dir: string;
  stepsDone: number;
  stopped: boolean;
  lastLoss: number;
  /** The last validation loss (NaN if none ran). */
  valLoss: number;
  /** A resume of a run that had already taken all its steps: nothing was trained. */
  alreadyFinished?: boolean;
}

export const DEFAULT_CHECKPOINT_EVERY = 100;

export async function train(o: TrainOptions): Promise<TrainResult> {
  checkTrainOptions(o);
  if (existsSync(o.out) && !statSync(o.out).isDirectory()) throw new Error(`--out ${o.out} is a file, not a folder; choose a folder for the run`);
  if (o.resume && !existsSync(o.out)) throw new Error(`${o.out} holds no run to resume (no such folder); start one without --resume`);
  mkdirSync(o.out, { recursive: true });
  // The lock first: a second writer hears of the first before anything else.
  const lock = await lockRun(o.out, o.resume ? 'train --resume' : 'train');
  try {
    checkFolder(o.out, o.resume ?? false);
    return await trainLocked(o);
  } finally {
    await lock.release();
  }
}

async function trainLocked(o: TrainOptions): Promise<TrainResult> {
  const log = o.log ?? (() => {});
  const files = runFiles(o.out);
  const { config, text } = o.resume ? resumedConfig(o, log) : newConfig(o);
  const t = config.train;
  const data = makeDataset(text, tokenizerFromSpec(config.tokenizer), typeof config.data === 'string' ? config.data : config.data.name);
  const valBatches = validationBatches(data.val, t.batch, config.model.context, t.evalBatches, t.seed);
  const { model, optimizer, close, kernelsName } = await buildModel(config, o);
  const sparseLayers = Array.from({ length: config.model.layers }, (_, i) => i).filter((i) => isSparseLayer(config.model, i));
  const dead = sparseLayers.length > 0 ? new DeadExperts(sparseLayers, config.model.numExperts) : undefined;
  try {
    let state: RunState = { step: 0, elapsedS: 0, bestValLoss: NaN, valLoss: NaN };
    if (o.resume) {
      state = loadCheckpoint(o.out, model, optimizer);
      // The idle counts continue from the steps logged before the checkpoint (their warnings are logged already).
      for (const line of keepLogBefore(files.log, state.step)) if (line.expert_load) dead?.observe(line.step, line.expert_load);
      if (state.step >= t.steps) {
        log(`${o.out} is finished: ${state.step} of ${t.steps} steps (validation loss ${state.valLoss.toFixed(4)}); `
          + 'resume with a larger --steps to train further');
        return { dir: o.out, stepsDone: state.step, stopped: false, lastLoss: NaN, valLoss: state.valLoss, alreadyFinished: true };
      }
    } else {
      writeRunConfig(o.out, config);
      writeFileSync(files.log, '');
    }
    const checkpointEvery = o.checkpointEvery ?? DEFAULT_CHECKPOINT_EVERY;
    // The clock continues from the run's earlier sessions.
    const began = performance.now() - state.elapsedS * 1000;
    const save = (file?: string) => saveCheckpoint(o.out, model, optimizer, { ...state, elapsedS: (performance.now() - began) / 1000 }, file);
    let lastLoss = NaN;
    const firstStep = state.step;
    while (state.step < t.steps && !o.signal?.aborted) {
      const step = state.step, stepBegan = performance.now();
      const batch = trainBatch(data.train, t.batch, config.model.context, t.seed, step);
      const out = await model.forward(batch, { training: true, step });
      await model.backward();
      const { lr, gradNorm } = optimizer.step(step);
      model.syncComputeCopies();
      lastLoss = out.loss;
      state.step = step + 1;
      const report: StepReport = {
        step: state.step, steps: t.steps, loss: out.loss, crossEntropy: out.crossEntropy, lr, gradNorm,
        tokensPerS: batch.inputs.length / ((performance.now() - stepBegan) / 1000), elapsedS: (performance.now() - began) / 1000,
        ...routingReport(out.switchStats),
      };
      const warnings = dead?.observe(state.step, out.switchStats.map((s) => s.tokensPerExpert)) ?? [];
      if (warnings.length > 0) {
        report.warnings = warnings;
        for (const w of warnings) log(`warning at step ${state.step}: ${w}`);
      }
      const validate = state.step % t.evalEvery === 0 || state.step === t.steps;
      if (validate) {
        const pass = await validationPass(model, valBatches, sparseLayers, dead);
        state.valLoss = report.valLoss = pass.loss;
        if (pass.routing.length > 0) report.routing = pass.routing;
        if (!(state.valLoss >= state.bestValLoss)) {
          state.bestValLoss = state.valLoss;
          if (o.keepBest) save(files.best);
        }
      }
      // The first step of each session records what it ran on, for the report.
      const session = step === firstStep ? { kernels: kernelsName, workers: o.workers ?? availableParallelism() } : {};
      appendFileSync(files.log, JSON.stringify({ ...logLine(report), ...session }) + '\n');
      if (validate || state.step % checkpointEvery === 0) save();
      o.onStep?.(report);
    }
    const stopped = state.step < t.steps;
    if (stopped) save();
    return { dir: o.out, stepsDone: state.step, stopped, lastLoss, valLoss: state.valLoss };
  } finally {
    await close();
  }
}

/** The run folder holds a run exactly when resuming. */
function checkFolder(out: string, resume: boolean): void {
  const files = runFiles(out);
  if (resume && !existsSync(files.checkpoint)) {
    throw new Error(existsSync(files.config) ? `${out} has no checkpoint to resume from (the run stopped before its first one); start it again without --resume`
      : `${out} holds no run to resume (no config.json); start one without --resume`);
  }
  if (!resume && existsSync(files.checkpoint)) throw new Error(`${out} already holds a run; pass --resume to continue it, or choose another --out`);
}

/** A new run's configuration: the preset, the options over it, the tokenizer fitted to the corpus. */
function newConfig(o: TrainOptions): { config: RunConfig; text: string } {
  const preset = PRESETS[o.preset ?? 'tiny'];
  const { ref, text } = corpusRef(o.data, o.out);
  const tokenizer = tokenizerFor(o.tokenizer ?? 'char', text);
  const config: RunConfig = {
    format: 'switchyard-run-1',
    preset: o.preset ?? 'tiny',
    model: { ...preset.model, ...(o.arch && ARCHITECTURES[o.arch]), ...o.model, vocabSize: tokenizer.vocabSize },
    train: { ...preset.train, ...o.train },
    tokenizer: tokenizer.spec(),
    data: ref,
  };
  checkModelConfig(config.model);
  return { config, text };
}

/**
 * The saved configuration, with the schedule a resume may change (steps, learning rate, …)
 * applied and said; options that define the run (its model, tokenizer, corpus, seed) are refused.
 * --data may point at the run's own corpus where it has moved.
 */
function resumedConfig(o: TrainOptions, log: (line: string) => void): { config: RunConfig; text: string } {
  const saved = readRunConfig(o.out);
  const refused = runChanges(o, saved);
  if (refused.length > 0) {
    throw new OptionError(`--resume continues ${o.out} as it was defined; these options would change it: ${refused.join(', ')}. `
      + 'Start a new run with another --out to change them');
  }
  const { text } = findCorpus(saved.data, o.out, o.data);
  const config = { ...saved, train: { ...saved.train, ...o.train } };
  const changed = (Object.keys(config.train) as (keyof TrainConfig)[]).filter((k) => config.train[k] !== saved.train[k]);
  if (changed.length > 0) {
    log(`resume: ${changed.map((k) => `${k} ${saved.train[k]} → ${config.train[k]}`).join(', ')}`);
    writeRunConfig(o.out, config);
  }
  return { config, text };
}

/** The model and its optimizer, with its layers on one pool of worker threads (none with 0 workers). */
async function buildModel(config: RunConfig, o: TrainOptions): Promise<{ model: Transformer; optimizer: AdamW; close: () => Promise<void>; kernelsName: string }> {
  const kernels = createArenaKernels(new Arena(64 * 1024 * 1024));
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
    model, optimizer: new AdamW(kernels, model.params.list, config.train), kernelsName: kernels.name,
    close: async () => { await model.dispose(); await pool?.close(); },
  };
}

/** Mean cross-entropy over the fixed validation batches, without dropout or jitter. */
export async function validationLoss(model: Transformer, batches: Batch[]): Promise<number> {
  return (await validationPass(model, batches, [])).loss;
}

/** The validation loss, and each Switch layer's routing on the same batches (`layers`: their model layer indices). */
async function validationPass(model: Transformer, batches: Batch[], layers: number[], dead?: DeadExperts): Promise<{ loss: number; routing: LayerRouting[] }> {
  let sum = 0;
  const tally = layers.length > 0 ? new RoutingTally(layers, model.config.numExperts) : undefined;
  for (const b of batches) {
    const out = await model.forward(b, { training: false });
    sum += out.crossEntropy;
    tally?.add(out.switchStats);
  }
  return { loss: sum / batches.length, routing: tally?.summary(dead) ?? [] };
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
    ...(r.routing && { routing: r.routing }), ...(r.warnings && { warnings: r.warnings }),
  };
}

/**
 * A resumed run logs its steps again from the checkpoint on: drop what an interrupted run logged
 * past it, and a last line cut short by a kill.
 */
function keepLogBefore(file: string, nextStep: number): { step: number; expert_load?: number[][] }[] {
  if (!existsSync(file)) return [];
  const kept: { line: string; parsed: { step: number; expert_load?: number[][] } }[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    try {
      const parsed = JSON.parse(line) as { step: number; expert_load?: number[][] };
      if (parsed.step <= nextStep) kept.push({ line, parsed });
    } catch {
      // a line cut short by a kill
    }
  }
  writeFileAtomic(file, kept.map((k) => k.line + '\n').join(''));
  return kept.map((k) => k.parsed);
}
