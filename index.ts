// The typed API: `import { train, loadRun, generate, evaluateRun } from 'switchyard'`.
import { type LoadedRun, openRun } from './app/run-folder.js';
import { validationLoss } from './app/train.js';
import { createKernels } from './kernels/index.js';
import { findCorpus, makeDataset, validationBatches } from './app/data.js';
import type { SampleOptions } from './app/generate.js';
import { type Inference, localInference as inThisThread, sample } from './app/inference.js';
import type { InferenceOptions } from './app/batcher.js';

export { train, type TrainOptions, type TrainResult, type StepReport, type PresetName } from './app/train.js';
export type { LoadedRun, RunConfig } from './app/run-folder.js';
export { createEngine, type EmbeddedEngine } from './engine/embed.js';
export { SwitchEngine, type EngineOptions, type StepTiming } from './engine/switch-engine.js';
export { SwitchLayer, type SwitchStats, type SwitchWeights } from './model/switch-layer.js';
export { Transformer } from './model/transformer.js';
export { PRESETS, type ModelConfig, type TrainConfig, type SwitchLayerConfig } from './model/config.js';
export { createKernels, type Kernels } from './kernels/index.js';
export type { SampleOptions } from './app/generate.js';
export {
  RequestError, type ContextPolicy, type FinishReason, type GenerationRequest, type GenerationResult, type LayerRouting, type PromptInfo,
  type TokenPiece,
} from './app/generate.js';
export type { InferenceOptions } from './app/batcher.js';
export { type Inference, TokenStream, generateBatch } from './app/inference.js';
export { createInference, type ModelInfo, type ThreadInference } from './app/inference-thread.js';
export { serve, type ServeOptions, type Server } from './app/serve.js';
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

/**
 * Generation from the run's model in this thread: streams of tokens, batched step by step with
 * every other stream of this Inference. One Inference per loaded run (they would share its
 * buffers); `createInference` runs one in a thread of its own, leaving this one's event loop free.
 */
export function localInference(run: LoadedRun, options: InferenceOptions = {}): Inference {
  return inThisThread(run.model, run.tokenizer, options);
}

/**
 * The run's validation loss (mean cross-entropy over its held-out batches) and perplexity.
 * `data`: where the run's corpus is, when it has moved from where the run recorded it.
 */
export async function evaluateRun(run: LoadedRun, options: { data?: string } = {}): Promise<{ valLoss: number; perplexity: number; step: number }> {
  const t = run.config.train;
  const corpus = findCorpus(run.config.data, run.dir, options.data);
  const data = makeDataset(corpus.text, run.tokenizer, corpus.source);
  const valLoss = await validationLoss(run.model, validationBatches(data.val, t.batch, run.config.model.context, t.evalBatches, t.seed));
  return { valLoss, perplexity: Math.exp(valLoss), step: run.step };
}
