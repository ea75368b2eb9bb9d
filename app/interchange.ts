// Run folders to and from the Qwen2-MoE checkpoint format of Hugging Face transformers.
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Kernels } from '../kernels/index.js';
import { type Tensor, loadSafetensors, saveSafetensors } from './safetensors.js';
import { writeFileAtomic } from './files.js';
import { PRESETS } from '../model/config.js';
import { DEFAULT_CORPUS } from './data.js';
import { AdamW } from '../model/optim.js';
import { exportQwen2Moe, importQwen2Moe, tokenizerFromJson } from './qwen2-moe.js';
import { Transformer } from '../model/transformer.js';
import { openRun, saveCheckpoint, writeRunConfig } from './run-folder.js';

/** Writes config.json, model.safetensors, tokenizer.json and tokenizer_config.json into `out`. */
export async function exportRun(dir: string, out: string, kernels: Kernels): Promise<void> {
  const run = openRun(dir, kernels);
  try {
    const { config, tensors, tokenizer } = exportQwen2Moe(run.config.model, run.model.params.list, run.config.tokenizer);
    mkdirSync(out, { recursive: true });
    // transformers refuses safetensors files without format "pt" in their metadata.
    saveSafetensors(join(out, 'model.safetensors'), tensors, { format: 'pt' });
    writeFileAtomic(join(out, 'config.json'), JSON.stringify(config, null, 2) + '\n');
    writeFileAtomic(join(out, 'tokenizer.json'), JSON.stringify(tokenizer) + '\n');
    writeFileAtomic(join(out, 'tokenizer_config.json'), JSON.stringify({ tokenizer_class: 'PreTrainedTokenizerFast' }) + '\n');
  } finally {
    await run.model.dispose();
  }
}

/**
 * Reads a Qwen2-MoE folder (model.safetensors, or shards listed in model.safetensors.index.json)
 * into a run folder at step 0 that eval, generate and train --resume accept.
 */
export async function importRun(from: string, out: string, kernels: Kernels): Promise<void> {
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
  const { model: modelConfig, values } = importQwen2Moe(hf, (name) => tensors[name], from);
  const tokenizer = tokenizerFromJson(json('tokenizer.json'), join(from, 'tokenizer.json'));
  const train = PRESETS.tiny.train;
  const model = new Transformer(kernels, modelConfig, { seed: train.seed });
  try {
    for (const p of model.params.list) {
      const v = values.get(p.name);
      if (!v || v.length !== p.data.length) throw new Error(`${from}: no values for ${p.name}`);
      p.data.set(v);
    }
    model.syncComputeCopies();
    mkdirSync(out, { recursive: true });
    writeRunConfig(out, { format: 'switchyard-run-1', model: modelConfig, train, tokenizer, data: DEFAULT_CORPUS });
    saveCheckpoint(out, model, new AdamW(kernels, model.params.list, train), 0);
  } finally {
    await model.dispose();
  }
}
