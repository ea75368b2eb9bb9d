// A run folder: config.json (model, training, tokenizer, data), checkpoint.safetensors (weights,
// AdamW moments and the step, in one file so one atomic write keeps them consistent), log.jsonl.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernels } from '../kernels/index.js';
import { type DType, type Tensor, expectTensor, loadSafetensors, saveSafetensors } from './safetensors.js';
import { writeFileAtomic } from './files.js';
import { type ModelConfig, type TrainConfig, checkModelConfig } from '../model/config.js';
import type { AdamW } from '../model/optim.js';
import { type Tokenizer, type TokenizerSpec, tokenizerFromSpec } from './tokenizer.js';
import { type SwitchFactory, Transformer } from '../model/transformer.js';

export interface RunConfig {
  format: 'switchyard-run-1';
  model: ModelConfig;
  train: TrainConfig;
  tokenizer: TokenizerSpec;
  /** The corpus: a file path, or the embedded tiny-shakespeare. */
  data: string;
}

export const runFiles = (dir: string) => ({
  config: join(dir, 'config.json'), checkpoint: join(dir, 'checkpoint.safetensors'), log: join(dir, 'log.jsonl'),
});

export function writeRunConfig(dir: string, c: RunConfig): void {
  writeFileAtomic(runFiles(dir).config, JSON.stringify(c, null, 2) + '\n');
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
  let c: RunConfig;
  try {
    c = JSON.parse(readFileSync(file, 'utf8')) as RunConfig;
  } catch (cause) {
    throw new Error(`${file}: not valid JSON (${(cause as Error).message})`, { cause });
  }
  if (c.format !== 'switchyard-run-1') throw new Error(`${file}: unknown run format ${JSON.stringify(c.format)}`);
  checkModelConfig(c.model);
  return c;
}

/** Saves weights, optimizer state and the next step to run, atomically. */
export function saveCheckpoint(dir: string, model: Transformer, optimizer: AdamW | undefined, nextStep: number): void {
  const tensors: Record<string, Tensor> = {};
  const dtype: DType = 'F32';
  model.params.list.forEach((p, j) => {
    tensors[p.name] = { dtype, shape: p.shape, data: p.data };
    if (optimizer) {
      tensors[`adam.m.${p.name}`] = { dtype, shape: p.shape, data: optimizer.m[j]! };
      tensors[`adam.v.${p.name}`] = { dtype, shape: p.shape, data: optimizer.v[j]! };
    }
  });
  saveSafetensors(runFiles(dir).checkpoint, tensors, {
    format: 'switchyard-checkpoint-1', step: String(nextStep), adam_t: String(optimizer?.t ?? 0),
  });
}

/** Loads a checkpoint into the model (and optimizer); returns the next step to run. */
export function loadCheckpoint(dir: string, model: Transformer, optimizer?: AdamW): number {
  const file = runFiles(dir).checkpoint;
  const ckpt = loadSafetensors(file);
  const step = Number(ckpt.metadata.step);
  if (ckpt.metadata.format !== 'switchyard-checkpoint-1' || !Number.isInteger(step) || step < 0) {
    throw new Error(`${file}: not a switchyard checkpoint (metadata ${JSON.stringify(ckpt.metadata)})`);
  }
  model.params.list.forEach((p, j) => {
    p.data.set(expectTensor(ckpt, file, p.name, 'F32', p.shape).data);
    if (optimizer) {
      optimizer.m[j]!.set(expectTensor(ckpt, file, `adam.m.${p.name}`, 'F32', p.shape).data);
      optimizer.v[j]!.set(expectTensor(ckpt, file, `adam.v.${p.name}`, 'F32', p.shape).data);
    }
  });
  if (optimizer) optimizer.t = Number(ckpt.metadata.adam_t);
  model.syncComputeCopies();
  return step;
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
  const step = loadCheckpoint(dir, model);
  return { dir, config, tokenizer: tokenizerFromSpec(config.tokenizer), model, step };
}
