// Run folders to and from the Qwen2-MoE checkpoint format of Hugging Face transformers. What
// Qwen2-MoE's config cannot hold (capacity, jitter, top-k normalisation, dropout, the loss
// coefficients, the training settings and corpus) travels in a `switchyard` section of its
// config.json, so an imported run computes, evaluates and generates exactly as the original.
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative, resolve } from 'node:path';
import type { Kernels } from '../kernels/index.js';
import { type ModelConfig, PRESETS, type TrainConfig, checkModelConfig } from '../model/config.js';
import { AdamW } from '../model/optim.js';
import { Transformer } from '../model/transformer.js';
import { type CorpusRef, corpusRef } from './data.js';
import { writeFileAtomic } from './files.js';
import { checkTrainOptions } from './options.js';
import { exportQwen2Moe, importQwen2Moe, tokenizerFromJson } from './qwen2-moe.js';
import { openRun, saveCheckpoint, writeRunConfig } from './run-folder.js';
import { lockRun } from './run-lock.js';
import { type Tensor, loadSafetensors, saveSafetensors } from './safetensors.js';

/** The model's behaviour that Qwen2-MoE's own config does not hold. */
const BEHAVIOUR = ['capacityFactor', 'normalizeTopK', 'routerJitter', 'expertDropout', 'zLossCoef', 'auxLossCoef', 'dropout', 'expertDtype'] as const;

interface SwitchyardSection {
  model: Pick<ModelConfig, (typeof BEHAVIOUR)[number]>;
  train: TrainConfig;
  /** The corpus, its path relative to the exported folder. */
  data?: CorpusRef;
}

/** A corpus reference re-pointed from one folder to another (the path is relative to its folder). */
const moved = (ref: CorpusRef, from: string, to: string): CorpusRef =>
  (ref.path === undefined ? ref : { ...ref, path: relative(resolve(to), resolve(from, ref.path)) });

/** Writes config.json, model.safetensors, tokenizer.json and tokenizer_config.json into `out`. */
export async function exportRun(dir: string, out: string, kernels: Kernels): Promise<void> {
  const run = openRun(dir, kernels);
  try {
    const { config, tensors, tokenizer } = exportQwen2Moe(run.config.model, run.model.params.list, run.config.tokenizer);
    const c = run.config;
    const switchyard: SwitchyardSection = {
      model: Object.fromEntries(BEHAVIOUR.map((k) => [k, c.model[k]])) as SwitchyardSection['model'],
      train: c.train, ...(typeof c.data === 'object' && { data: moved(c.data, dir, out) }),
    };
    mkdirSync(out, { recursive: true });
    // transformers refuses safetensors files without format "pt" in their metadata.
    saveSafetensors(join(out, 'model.safetensors'), tensors, { format: 'pt' });
    writeFileAtomic(join(out, 'config.json'), JSON.stringify({ ...config, switchyard }, null, 2) + '\n');
    writeFileAtomic(join(out, 'tokenizer.json'), JSON.stringify(tokenizer) + '\n');
    writeFileAtomic(join(out, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast' }) + '\n');
  } finally {
    await run.model.dispose();
  }
}

/**
 * Reads a Qwen2-MoE folder (model.safetensors, or shards listed in model.safetensors.index.json)
 * into a run folder at step 0 that eval, generate and train --resume accept. A folder we exported
 * brings back its `switchyard` section; one from elsewhere routes dropless, as transformers does.
 * Returns what the caller should tell the user.
 */
export async function importRun(from: string, out: string, kernels: Kernels): Promise<string[]> {
  const json = (name: string) => {
    const file = join(from, name);
    if (!existsSync(file)) throw new Error(`${from}: no ${name}`);
    try {
      return JSON.parse(readFileSync(file, 'utf8')) as Record<string, unknown>;
    } catch (cause) {
      throw new Error(`${file}: not valid JSON (${(cause as Error).message})`, { cause });
    }
  };
  const hf = json('config.json');
  const tensors: Record<string, Tensor> = {};
  if (existsSync(join(from, 'model.safetensors.index.json'))) {
    const map = json('model.safetensors.index.json').weight_map as Record<string, string> | undefined;
    if (!map) throw new Error(`${from}/model.safetensors.index.json: no weight_map`);
    for (const file of new Set(Object.values(map))) Object.assign(tensors, loadSafetensors(join(from, file)).tensors);
  } else {
    Object.assign(tensors, loadSafetensors(join(from, 'model.safetensors')).tensors);
  }
  const imported = importQwen2Moe(hf, (name) => tensors[name], from);
  const section = hf.switchyard as SwitchyardSection | undefined;
  const modelConfig = { ...imported.model, ...section?.model };
  const train = section?.train ?? PRESETS.tiny.train;
  try {
    checkModelConfig(modelConfig);
    checkTrainOptions({ train });
  } catch (error) {
    throw new Error(`${join(from, 'config.json')}: switchyard section: ${(error as Error).message}`, { cause: error });
  }
  const tokenizer = tokenizerFromJson(json('tokenizer.json'), join(from, 'tokenizer.json'));
  if (existsSync(out) && !statSync(out).isDirectory()) throw new Error(`--out ${out} is a file, not a folder; choose a folder for the run`);
  mkdirSync(out, { recursive: true });
  const lock = await lockRun(out, 'import');
  const model = new Transformer(kernels, modelConfig, { seed: train.seed });
  try {
    for (const p of model.params.list) {
      const v = imported.values.get(p.name);
      if (!v || v.length !== p.data.length) throw new Error(`${from}: no values for ${p.name}`);
      p.data.set(v);
    }
    model.syncComputeCopies();
    const data = section?.data ? moved(section.data, from, out) : corpusRef(undefined, out).ref;
    writeRunConfig(out, { format: 'switchyard-run-1', model: modelConfig, train, tokenizer, data });
    saveCheckpoint(out, model, new AdamW(kernels, model.params.list, train), { step: 0, elapsedS: 0, bestValLoss: NaN, valLoss: NaN });
  } finally {
    await model.dispose();
    await lock.release();
  }
  return [
    section ? 'routing, dropout, loss coefficients and training settings: as exported by switchyard'
      : 'no switchyard section: routing dropless without jitter, as transformers computes Qwen2-MoE; training settings of the tiny preset',
    'the optimizer state is not part of the Hugging Face format: training from this run starts AdamW afresh',
  ];
}
