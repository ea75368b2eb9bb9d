// Fine-tuning an imported Switch Transformers encoder-decoder on input → target pairs, in the
// trainer's style (app/train.ts: seeded batches, AdamW with warm-up and cosine decay, validation,
// log.jsonl, checkpoints and an exact resume), with the experts and the dense FFNs on the worker
// threads. A loop of its own rather than app/train.ts's: the data, the model and the checkpoint
// differ, while the pieces (AdamW, the schedule, the engine) are the same.
import { appendFileSync, copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { join } from 'node:path';
import { encoderDecoderOnWorkers } from '../engine/encoder-decoder-workers.js';
import { createKernels } from '../kernels/index.js';
import type { TrainConfig } from '../model/config.js';
import { AdamW } from '../model/optim.js';
import { Rng } from '../model/rng.js';
import { EncoderDecoder, type Seq2SeqResult } from '../model/t5/encoder-decoder.js';
import { TOKENIZER_FILE, loadTokenizer } from './hf-tokenizer.js';
import { type EncodedPair, encodePairs, pairBatch } from './seq2seq-data.js';
import { encodedPairsLoss } from './seq2seq-eval.js';
import {
  type Seq2SeqRunConfig, FINETUNE_DEFAULTS, loadSeq2SeqCheckpoint, readPairs, readSeq2SeqConfig, saveSeq2SeqCheckpoint, writeSeq2SeqConfig,
} from './seq2seq-run.js';
import { runFiles } from './run-folder.js';
import { checkMemory } from './switch-transformers.js';

export interface FinetuneOptions {
  /** The run to start from: an import, or another fine-tune (its weights; its optimizer state is not carried over). */
  from?: string;
  /** The new run folder, or the one to resume. */
  out: string;
  /** {"input", "target"} JSONL; required for a new run. */
  data?: string;
  resume?: boolean;
  /** Worker threads for the experts and dense FFNs; 0 computes everything in this thread. Default: one per core. */
  workers?: number;
  train?: Partial<TrainConfig>;
  onStep?: (report: FinetuneStep) => void;
  /** Aborting stops after the current step, with a checkpoint. */
  signal?: AbortSignal;
}

export interface FinetuneStep {
  step: number;
  steps: number;
  loss: number;
  crossEntropy: number;
  /** On the steps where validation ran: the mean cross-entropy over the held-out pairs' target tokens. */
  valLoss?: number;
  lr: number;
  gradNorm: number;
  tokensPerS: number;
  elapsedS: number;
  /** Fraction of tokens over an expert's capacity, over every Switch layer. */
  droppedFraction: number;
}

export interface FinetuneResult { dir: string; stepsDone: number; stopped: boolean; lastLoss: number; valLoss: number }

export async function finetune(o: FinetuneOptions): Promise<FinetuneResult> {
  const config = o.resume ? resumedConfig(o) : newConfig(o);
  const t = config.train;
  checkMemory(config.model, 'fine-tuning');
  const tokenizer = loadTokenizer(o.resume ? o.out : o.from!, config.model);
  const { train: trainPairs, validation } = split(await encodePairs(tokenizer, readPairs(t.data!)));
  const workers = o.workers ?? availableParallelism();
  const threads = workers > 0 ? encoderDecoderOnWorkers(workers) : undefined;
  const kernels = threads?.kernels ?? createKernels();
  let model: EncoderDecoder | undefined;
  try {
    model = new EncoderDecoder(kernels, config.model, { gradients: true, seed: t.seed, ...(threads && { switchFactory: threads.switchFactory, shardRunner: threads.shardRunner }) });
    const optimizer = new AdamW(kernels, model.params, t);
    const files = runFiles(o.out);
    let start = 0;
    if (o.resume) {
      start = loadSeq2SeqCheckpoint(o.out, model.params, optimizer);
      keepLogBefore(files.log, start);
    } else {
      loadSeq2SeqCheckpoint(o.from!, model.params);
      mkdirSync(o.out, { recursive: true });
      copyFileSync(join(o.from!, TOKENIZER_FILE), join(o.out, TOKENIZER_FILE));
      writeSeq2SeqConfig(o.out, config);
      writeFileSync(files.log, '');
    }
    const began = performance.now();
    let lastLoss = NaN, valLoss = NaN, step = start;
    for (; step < t.steps && !o.signal?.aborted; step++) {
      const stepBegan = performance.now();
      const batch = pairBatch(batchOf(trainPairs, t, step), config.model);
      const out = await model.forward(batch, { training: true, step });
      await model.backward();
      const { lr, gradNorm } = optimizer.step(step);
      lastLoss = out.loss;
      const report: FinetuneStep = {
        step: step + 1, steps: t.steps, loss: out.loss, crossEntropy: out.crossEntropy, lr, gradNorm,
        tokensPerS: (batch.inputs.length + batch.decoderInputs.length) / ((performance.now() - stepBegan) / 1000),
        elapsedS: (performance.now() - began) / 1000, droppedFraction: dropped(out),
      };
      const last = step === t.steps - 1, checkpoint = (step + 1) % t.evalEvery === 0 || last;
      if (checkpoint && validation.length > 0) {
        valLoss = (await encodedPairsLoss(model, validation)).loss;
        report.valLoss = valLoss;
      }
      appendFileSync(files.log, JSON.stringify(logLine(report)) + '\n');
      if (checkpoint) saveSeq2SeqCheckpoint(o.out, model.params, optimizer, step + 1);
      o.onStep?.(report);
    }
    const stopped = step < t.steps;
    if (stopped) saveSeq2SeqCheckpoint(o.out, model.params, optimizer, step);
    return { dir: o.out, stepsDone: step, stopped, lastLoss, valLoss };
  } finally {
    await model?.dispose();
    await threads?.close();
  }
}

function newConfig(o: FinetuneOptions): Seq2SeqRunConfig {
  if (!o.from) throw new Error('fine-tuning needs --from: the run to start from (an imported Switch Transformers run)');
  if (!o.data) throw new Error('fine-tuning needs --data: a JSONL file of {"input", "target"} pairs');
  if (existsSync(runFiles(o.out).checkpoint)) throw new Error(`${o.out} already holds a run; pass --resume to continue it, or choose another --out`);
  const from = readSeq2SeqConfig(o.from);
  return { ...from, train: { ...FINETUNE_DEFAULTS, ...o.train, data: o.data }, source: o.from };
}

/** The saved configuration; training settings given with a resume (more steps, say) replace the saved ones. */
function resumedConfig(o: FinetuneOptions): Seq2SeqRunConfig {
  const saved = readSeq2SeqConfig(o.out);
  const config = { ...saved, train: { ...saved.train, ...o.train } };
  if (JSON.stringify(config.train) !== JSON.stringify(saved.train)) writeSeq2SeqConfig(o.out, config);
  return config;
}

/** Every tenth pair is held out for validation (none when there are fewer than ten). */
function split(pairs: EncodedPair[]): { train: EncodedPair[]; validation: EncodedPair[] } {
  if (pairs.length < 10) return { train: pairs, validation: [] };
  return { train: pairs.filter((_, i) => i % 10 !== 9), validation: pairs.filter((_, i) => i % 10 === 9) };
}

/** The pairs of step s: drawn with replacement, keyed by (seed, s) only, so a resumed run sees the same batches. */
function batchOf(pairs: EncodedPair[], t: TrainConfig, step: number): EncodedPair[] {
  const rng = new Rng(t.seed, 'finetune-batch', step);
  return Array.from({ length: t.batch }, () => pairs[Math.floor(rng.uniform() * pairs.length)]!);
}

function dropped(out: Seq2SeqResult): number {
  const stats = [...out.encoderStats, ...out.decoderStats];
  return stats.reduce((s, x) => s + x.dropped, 0) / Math.max(1, stats.reduce((s, x) => s + x.expertIndex.length, 0));
}

function logLine(r: FinetuneStep): Record<string, unknown> {
  return {
    step: r.step, loss: r.loss, cross_entropy: r.crossEntropy, lr: r.lr, grad_norm: r.gradNorm, tokens_per_s: Math.round(r.tokensPerS),
    elapsed_s: Number(r.elapsedS.toFixed(3)), dropped_fraction: r.droppedFraction, ...(r.valLoss !== undefined && { val_loss: r.valLoss }),
  };
}

/** A resumed run logs its steps again from the checkpoint on: drop what an interrupted run logged past it. */
function keepLogBefore(file: string, nextStep: number): void {
  if (!existsSync(file)) return;
  const kept = readFileSync(file, 'utf8').split('\n').filter((line) => line && (JSON.parse(line) as { step: number }).step <= nextStep);
  writeFileSync(file, kept.map((l) => l + '\n').join(''));
}
