// The typed API: `import { train, loadRun, generate, evaluateRun } from 'switchyard'`.
import { type LoadedRun, openRun } from './app/run-folder.js';
import { validationLoss } from './app/train.js';
import { createKernels } from './kernels/index.js';
import { validationBatches, loadCorpus, makeDataset } from './app/data.js';
import { type SampleOptions, sample } from './app/generate.js';

export { train, type TrainOptions, type TrainResult, type StepReport, type PresetName } from './app/train.js';
export type { LoadedRun, RunConfig } from './app/run-folder.js';
export { createEngine, type EmbeddedEngine } from './engine/embed.js';
export { SwitchEngine, type EngineOptions, type StepTiming } from './engine/switch-engine.js';
export { SwitchLayer, type SwitchStats, type SwitchWeights } from './model/switch-layer.js';
export { Transformer } from './model/transformer.js';
export { PRESETS, type ModelConfig, type TrainConfig, type SwitchLayerConfig } from './model/config.js';
export { createKernels, type Kernels } from './kernels/index.js';
export type { SampleOptions } from './app/generate.js';
// Google's Switch Transformers (encoder-decoder) from Hugging Face folders.
export { importSwitchTransformers, openSeq2SeqRun, type Seq2SeqRun } from './app/seq2seq-run.js';
export { generateText, generateIds, type Seq2SeqSampling } from './app/seq2seq-generate.js';
export { pairsLoss } from './app/seq2seq-eval.js';
export { finetune, type FinetuneOptions, type FinetuneStep } from './app/finetune.js';
export { EncoderDecoder } from './model/t5/encoder-decoder.js';

/** A trained model from its run folder (Switch layers in this thread). */
export function loadRun(dir: string): LoadedRun {
  return openRun(dir, createKernels());
}

/** Text from a run's model: the prompt followed by maxTokens sampled tokens. */
export async function generate(run: LoadedRun, options: Partial<SampleOptions> & { prompt?: string } = {}): Promise<string> {
  const { prompt = '', maxTokens = 200, temperature = 0.8, topK = 40, seed = 1 } = options;
  return sample(run.model, run.tokenizer, prompt, { maxTokens, temperature, topK, seed });
}

/** The run's validation loss (mean cross-entropy over its held-out batches) and perplexity. */
export async function evaluateRun(run: LoadedRun): Promise<{ valLoss: number; perplexity: number; step: number }> {
  const t = run.config.train;
  const data = makeDataset(loadCorpus(run.config.data).text, run.tokenizer, run.config.data);
  const valLoss = await validationLoss(run.model, validationBatches(data.val, t.batch, run.config.model.context, t.evalBatches, t.seed));
  return { valLoss, perplexity: Math.exp(valLoss), step: run.step };
}
