// A run folder: config.json (model, training, tokenizer, corpus), checkpoint.safetensors (weights,
// AdamW moments and where the run stands, in one file so one atomic write keeps them consistent),
// log.jsonl (a line a step). Both files carry a checksum, so a damaged one is refused, never read
// as something else.
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernels } from '../kernels/index.js';
import { type ModelConfig, type TrainConfig, checkModelConfig } from '../model/config.js';
import type { AdamW } from '../model/optim.js';
import { type SwitchFactory, Transformer } from '../model/transformer.js';
import type { CorpusRef } from './data.js';
import { writeFileAtomic } from './files.js';
import { checkTrainOptions } from './options.js';
import { type DType, type Tensor, expectTensor, loadSafetensors, saveSafetensors } from './safetensors.js';
import { type Tokenizer, type TokenizerSpec, tokenizerFromSpec } from './tokenizer.js';

export interface RunConfig {
  format: 'switchyard-run-1';
  /** The preset the run started from, for the report. */
  preset?: string;
  model: ModelConfig;
  train: TrainConfig;
  tokenizer: TokenizerSpec;
  /** The corpus (a path in runs made before corpora were recorded by name and checksum). */
  data: CorpusRef | string;
}

export const runFiles = (dir: string) => ({
  config: join(dir, 'config.json'), checkpoint: join(dir, 'checkpoint.safetensors'), best: join(dir, 'checkpoint-best.safetensors'),
  log: join(dir, 'log.jsonl'),
});

const RUN_CONFIG_KEYS = ['format', 'preset', 'model', 'train', 'tokenizer', 'data'];
const checksumOf = (c: RunConfig) => createHash('sha256').update(JSON.stringify(c)).digest('hex');

export function writeRunConfig(dir: string, c: RunConfig): void {
  writeFileAtomic(runFiles(dir).config, JSON.stringify({ checksum: checksumOf(c), ...c }, null, 2) + '\n'); // first, so deleting its line leaves valid JSON
}

/** What a run folder holds: our language model, or an imported encoder-decoder (config.json's "kind"). */
export function runKind(dir: string): 'language-model' | 'switch-transformers' {
  const file = runFiles(dir).config;
  if (!existsSync(file)) throw new Error(`${dir}: not a run folder (no config.json)`);
  try {
    return (JSON.parse(readFileSync(file, 'utf8')) as { kind?: string }).kind === 'switch-transformers' ? 'switch-transformers' : 'language-model';
  } catch (cause) {
    throw new Error(`${file}: not valid JSON (${(cause as Error).message})`, { cause });
  }
}

export function readRunConfig(dir: string): RunConfig {
  const file = runFiles(dir).config;
  if (!existsSync(file)) throw new Error(`${dir}: not a run folder (no config.json)`);
  let parsed: RunConfig & { checksum?: unknown };
  try {
    parsed = JSON.parse(readFileSync(file, 'utf8')) as RunConfig & { checksum?: unknown };
  } catch (cause) {
    throw new Error(`${file}: not valid JSON (${(cause as Error).message})`, { cause });
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error(`${file}: not a run configuration (a JSON object)`);
  const { checksum, ...c } = parsed;
  const unknown = Object.keys(c).filter((k) => !RUN_CONFIG_KEYS.includes(k));
  if (unknown.length > 0) throw new Error(`${file}: unknown field${unknown.length > 1 ? 's' : ''} ${unknown.join(', ')} (a run's config holds ${RUN_CONFIG_KEYS.join(', ')}, checksum)`);
  if (checksum !== undefined && checksum !== checksumOf(c)) {
    throw new Error(`${file}: the file was changed since switchyard wrote it (checksum mismatch); if you edited it on purpose, delete its "checksum" line`);
  }
  if (c.format !== 'switchyard-run-1') throw new Error(`${file}: unknown run format ${JSON.stringify(c.format)}`);
  try {
    checkTrainOptions({ model: c.model, train: c.train });
    checkModelConfig(c.model);
  } catch (error) {
    throw new Error(`${file}: ${(error as Error).message}`, { cause: error });
  }
  return c;
}

/** Where a run stands at a checkpoint, beside its weights. */
export interface RunState {
  /** The next step to run. */
  step: number;
  /** Training wall time so far, over every session of the run. */
  elapsedS: number;
  /** The lowest validation loss so far (NaN before the first validation). */
  bestValLoss: number;
  /** The last validation loss (NaN before the first validation). */
  valLoss: number;
}

/** Saves weights, optimizer state and the run's state, atomically (to `file`, default the checkpoint). */
export function saveCheckpoint(dir: string, model: Transformer, optimizer: AdamW | undefined, state: RunState,
  file = runFiles(dir).checkpoint): void {
  const tensors: Record<string, Tensor> = {};
  const dtype: DType = 'F32';
  model.params.list.forEach((p, j) => {
    tensors[p.name] = { dtype, shape: p.shape, data: p.data };
    if (optimizer) {
      tensors[`adam.m.${p.name}`] = { dtype, shape: p.shape, data: optimizer.m[j]! };
      tensors[`adam.v.${p.name}`] = { dtype, shape: p.shape, data: optimizer.v[j]! };
    }
  });
  saveSafetensors(file, tensors, {
    format: 'switchyard-checkpoint-1', step: String(state.step), adam_t: String(optimizer?.t ?? 0),
    elapsed_s: String(state.elapsedS), best_val_loss: String(state.bestValLoss), val_loss: String(state.valLoss),
  });
}

/** Loads a checkpoint into the model (and optimizer); returns where the run stands. */
export function loadCheckpoint(dir: string, model: Transformer, optimizer?: AdamW): RunState {
  const file = runFiles(dir).checkpoint;
  const ckpt = loadSafetensors(file);
  const m = ckpt.metadata;
  const step = Number(m.step);
  if (m.format !== 'switchyard-checkpoint-1' || !Number.isInteger(step) || step < 0) {
    throw new Error(`${file}: not a switchyard checkpoint (metadata ${JSON.stringify(m)})`);
  }
  model.params.list.forEach((p, j) => {
    p.data.set(expectTensor(ckpt, file, p.name, 'F32', p.shape).data);
    if (optimizer) {
      optimizer.m[j]!.set(expectTensor(ckpt, file, `adam.m.${p.name}`, 'F32', p.shape).data);
      optimizer.v[j]!.set(expectTensor(ckpt, file, `adam.v.${p.name}`, 'F32', p.shape).data);
    }
  });
  if (optimizer) optimizer.t = Number(m.adam_t);
  model.syncComputeCopies();
  // Checkpoints from before the run's clock and best loss were kept start them afresh.
  const number = (key: string, otherwise: number) => (m[key] === undefined ? otherwise : Number(m[key]));
  return { step, elapsedS: number('elapsed_s', 0), bestValLoss: number('best_val_loss', NaN), valLoss: number('val_loss', NaN) };
}

export interface LoadedRun {
  dir: string;
  config: RunConfig;
  tokenizer: Tokenizer;
  model: Transformer;
  /** Training steps the checkpoint has taken. */
  step: number;
}

/** A trained model from its run folder, ready for eval and generate. */
export function openRun(dir: string, kernels: Kernels, switchFactory?: SwitchFactory): LoadedRun {
  const config = readRunConfig(dir);
  const model = new Transformer(kernels, config.model, { seed: config.train.seed, ...(switchFactory && { switchFactory }) });
  try {
    const { step } = loadCheckpoint(dir, model);
    return { dir, config, tokenizer: tokenizerFromSpec(config.tokenizer), model, step };
  } catch (error) {
    void model.dispose(); // its arrays go back to the arena; nothing else holds them
    throw error;
  }
}
