// A run folder for a Switch Transformers encoder-decoder: config.json (kind "switch-transformers":
// the model, the fine-tuning settings, where it came from), checkpoint.safetensors (our parameter
// names, float32, with AdamW's moments once fine-tuned; written and read tensor by tensor, as
// switch-base-8's 2.5 GB exceed what one read holds), tokenizer.json, and log.jsonl when fine-tuned.
import { copyFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { Kernels } from '../kernels/index.js';
import type { TrainConfig } from '../model/config.js';
import type { AdamW } from '../model/optim.js';
import type { Param } from '../model/params.js';
import type { ShardRunner } from '../model/shards.js';
import type { T5Config } from '../model/t5/config.js';
import { EncoderDecoder, type T5SwitchFactory } from '../model/t5/encoder-decoder.js';
import { writeFileAtomic } from './files.js';
import { TOKENIZER_FILE, type TextTokenizer, loadTokenizer } from './hf-tokenizer.js';
import { type LazyTensor, SafetensorsReader, writeSafetensors } from './safetensors.js';
import { HfCheckpoint, checkMemory, configFromHf, isSwitchTransformersFolder, loadHfWeights, readJson } from './switch-transformers.js';
import { runFiles } from './run-folder.js';

export const SEQ2SEQ_KIND = 'switch-transformers';

/** Fine-tuning settings: the trainer's, and the pairs file. */
export interface FinetuneConfig extends TrainConfig {
  /** The {"input", "target"} JSONL file, once a fine-tune has begun. */
  data?: string;
}

export interface Seq2SeqRunConfig {
  format: 'switchyard-run-1';
  kind: typeof SEQ2SEQ_KIND;
  model: T5Config;
  train: FinetuneConfig;
  /** The Hugging Face folder the weights were imported from (or the run fine-tuned from). */
  source: string;
}

/** Defaults for fine-tuning an imported model: AdamW at a small constant rate after a short warm-up, no weight decay. */
export const FINETUNE_DEFAULTS: FinetuneConfig = {
  batch: 8, steps: 100, learningRate: 1e-4, minLearningRate: 1e-4, warmupSteps: 10, beta1: 0.9, beta2: 0.999, weightDecay: 0,
  gradClip: 1, evalEvery: 50, evalBatches: 0, seed: 1337,
};

const CHECKPOINT_FORMAT = 'switchyard-seq2seq-checkpoint-1';

export function readSeq2SeqConfig(dir: string): Seq2SeqRunConfig {
  const c = readJson(runFiles(dir).config) as unknown as Seq2SeqRunConfig;
  if (c.format !== 'switchyard-run-1' || c.kind !== SEQ2SEQ_KIND) throw new Error(`${dir}: not a switch-transformers run folder (config.json kind ${JSON.stringify(c.kind)})`);
  return c;
}

export function writeSeq2SeqConfig(dir: string, c: Seq2SeqRunConfig): void {
  writeFileAtomic(runFiles(dir).config, JSON.stringify(c, null, 2) + '\n');
}

/**
 * Reads a Hugging Face Switch Transformers folder (config.json, the safetensors checkpoint,
 * tokenizer.json) into a run folder at step 0. Everything is checked before the weights are read:
 * the config's fields, memory, the tokenizer against the embedding, every tensor's name and shape.
 * Returns the names of checkpoint tensors the model does not use.
 */
export async function importSwitchTransformers(from: string, out: string, kernels: Kernels): Promise<{ unused: string[]; parameters: number }> {
  if (!isSwitchTransformersFolder(from)) {
    const file = join(from, 'config.json');
    throw new Error(`${from}: not a Switch Transformers checkpoint (${existsSync(file) ? `config.json's model_type is ${JSON.stringify(readJson(file).model_type)}` : 'no config.json'})`);
  }
  const generation = existsSync(join(from, 'generation_config.json')) ? readJson(join(from, 'generation_config.json')) : {};
  const config = configFromHf(readJson(join(from, 'config.json')), from, generation);
  checkMemory(config, 'inference');
  loadTokenizer(from, config);
  const checkpoint = new HfCheckpoint(from);
  const model = new EncoderDecoder(kernels, config, { gradients: false });
  try {
    const { unused } = loadHfWeights(config, model.params, checkpoint);
    mkdirSync(out, { recursive: true });
    copyFileSync(join(from, TOKENIZER_FILE), join(out, TOKENIZER_FILE));
    writeSeq2SeqConfig(out, { format: 'switchyard-run-1', kind: SEQ2SEQ_KIND, model: config, train: FINETUNE_DEFAULTS, source: resolve(from) });
    saveSeq2SeqCheckpoint(out, model.params, undefined, 0);
    return { unused, parameters: model.params.reduce((n, p) => n + p.data.length, 0) };
  } finally {
    checkpoint.close();
    await model.dispose();
  }
}

/** Weights (and AdamW's moments) and the next step, tensor by tensor, atomically. */
export function saveSeq2SeqCheckpoint(dir: string, params: Param[], optimizer: AdamW | undefined, nextStep: number): void {
  const tensors: Record<string, LazyTensor> = {};
  params.forEach((p, j) => {
    tensors[p.name] = { dtype: 'F32', shape: p.shape, data: () => p.data };
    if (optimizer) {
      tensors[`adam.m.${p.name}`] = { dtype: 'F32', shape: p.shape, data: () => optimizer.m[j]! };
      tensors[`adam.v.${p.name}`] = { dtype: 'F32', shape: p.shape, data: () => optimizer.v[j]! };
    }
  });
  writeSafetensors(runFiles(dir).checkpoint, tensors, { format: CHECKPOINT_FORMAT, step: String(nextStep), adam_t: String(optimizer?.t ?? 0) });
}

/**
 * Loads a checkpoint into the parameters (and the optimizer's moments, which a checkpoint without
 * them leaves at zero: fine-tuning from an import). Returns the next step.
 */
export function loadSeq2SeqCheckpoint(dir: string, params: Param[], optimizer?: AdamW): number {
  const file = runFiles(dir).checkpoint;
  const reader = new SafetensorsReader(file);
  try {
    const step = Number(reader.metadata.step);
    if (reader.metadata.format !== CHECKPOINT_FORMAT || !Number.isInteger(step) || step < 0) {
      throw new Error(`${file}: not a switchyard switch-transformers checkpoint (metadata ${JSON.stringify(reader.metadata)})`);
    }
    const into = new Map<string, Float32Array>();
    const expect = (name: string, array: Float32Array, shape: number[]) => {
      const t = reader.has(name) ? reader.tensors[name]! : undefined;
      if (!t) throw new Error(`${file}: missing tensor "${name}"`);
      if (t.shape.join() !== shape.join()) throw new Error(`${file}: tensor "${name}" has shape [${t.shape.join('×')}], the model's config wants [${shape.join('×')}]`);
      into.set(name, array);
    };
    const moments = optimizer !== undefined && params.every((p) => reader.has(`adam.m.${p.name}`));
    params.forEach((p, j) => {
      expect(p.name, p.data, p.shape);
      if (moments) {
        expect(`adam.m.${p.name}`, optimizer.m[j]!, p.shape);
        expect(`adam.v.${p.name}`, optimizer.v[j]!, p.shape);
      }
    });
    reader.readAllF32((name) => into.get(name)); // one pass, checksum included
    if (moments) optimizer.t = Number(reader.metadata.adam_t);
    return step;
  } finally {
    reader.close();
  }
}

export interface Seq2SeqRun {
  dir: string;
  config: Seq2SeqRunConfig;
  tokenizer: TextTokenizer;
  model: EncoderDecoder;
  /** Fine-tuning steps the checkpoint has taken. */
  step: number;
}

/** A run's model from its folder; for inference unless `gradients`. */
export function openSeq2SeqRun(dir: string, kernels: Kernels,
  options: { gradients?: boolean; switchFactory?: T5SwitchFactory; shardRunner?: ShardRunner } = {}): Seq2SeqRun {
  const config = readSeq2SeqConfig(dir);
  checkMemory(config.model, options.gradients ? 'fine-tuning' : 'inference');
  const tokenizer = loadTokenizer(dir, config.model);
  const model = new EncoderDecoder(kernels, config.model, { gradients: options.gradients ?? false, seed: config.train.seed,
    ...(options.switchFactory && { switchFactory: options.switchFactory }), ...(options.shardRunner && { shardRunner: options.shardRunner }) });
  try {
    const step = loadSeq2SeqCheckpoint(dir, model.params);
    return { dir, config, tokenizer, model, step };
  } catch (error) {
    void model.dispose();
    throw error;
  }
}

/** The {"input", "target"} lines of a JSONL file; a bad line is an error naming it. */
export function readPairs(file: string): { input: string; target: string }[] {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (cause) {
    throw new Error(`${file}: cannot read (${(cause as Error).message})`, { cause });
  }
  const pairs = text.split('\n').flatMap((line, i) => {
    if (line.trim() === '') return [];
    let v: unknown;
    try {
      v = JSON.parse(line);
    } catch {
      throw new Error(`${file}:${i + 1}: not valid JSON`);
    }
    const { input, target } = (v ?? {}) as { input?: unknown; target?: unknown };
    if (typeof input !== 'string' || typeof target !== 'string') throw new Error(`${file}:${i + 1}: expected {"input": string, "target": string}`);
    return [{ input, target }];
  });
  if (pairs.length === 0) throw new Error(`${file}: no {"input", "target"} lines`);
  return pairs;
}
