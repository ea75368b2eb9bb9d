// The model the generation benchmarks measure when no run is given: the `small` preset's shapes
// (6 layers, 384 wide, context 256, 8 experts, qwen2-moe layout) with random weights over
// tiny-shakespeare's characters. Speed does not depend on the weights' values.
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { loadCorpus } from '../app/data.js';
import { saveCheckpoint, writeRunConfig } from '../app/run-folder.js';
import { type Tokenizer, charTokenizer } from '../app/tokenizer.js';
import { createKernels } from '../kernels/index.js';
import { PRESETS } from '../model/config.js';
import { Rng } from '../model/rng.js';
import { Transformer } from '../model/transformer.js';

export async function randomSmallRun(): Promise<string> {
  const dir = join(mkdtempSync(join(tmpdir(), 'switchyard-bench-')), 'small-random');
  mkdirSync(dir);
  const tokenizer = charTokenizer(loadCorpus().text);
  const config = { ...PRESETS.small.model, dropout: 0, vocabSize: tokenizer.vocabSize };
  const model = new Transformer(createKernels(), config, { seed: 1 });
  writeRunConfig(dir, { format: 'switchyard-run-1', model: config, train: PRESETS.small.train, tokenizer: tokenizer.spec(), data: 'tinyshakespeare' });
  saveCheckpoint(dir, model, undefined, { step: 0, elapsedS: 0, bestValLoss: NaN, valLoss: NaN });
  await model.dispose();
  return dir;
}

/** `count` prompts of `length` ids that survive decode and encode (ASCII for a byte tokenizer), seeded. */
export function benchPrompts(tokenizer: Tokenizer, count: number, length: number): number[][] {
  const rng = new Rng('bench-prompts');
  const V = tokenizer.kind === 'byte' ? 128 : tokenizer.vocabSize;
  return Array.from({ length: count }, () => Array.from({ length }, () => rng.nextU32() % V));
}
