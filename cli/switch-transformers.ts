// The commands for an imported Switch Transformers run: generate, eval, import, finetune.
import { SingleBar } from 'cli-progress';
import { type FinetuneOptions, type FinetuneStep, finetune } from '../app/finetune.js';
import { pairsLoss } from '../app/seq2seq-eval.js';
import { GREEDY, generateText } from '../app/seq2seq-generate.js';
import { importSwitchTransformers, openSeq2SeqRun, readPairs } from '../app/seq2seq-run.js';
import { createKernels } from '../kernels/index.js';

export interface GenerateFlags { prompt: string; tokens?: number; temperature?: number; topK?: number; seed: number; cache: boolean; json?: boolean }

export async function generateCommand(dir: string, o: GenerateFlags): Promise<void> {
  const run = openSeq2SeqRun(dir, createKernels());
  try {
    const result = await generateText(run.model, run.tokenizer, o.prompt, {
      maxTokens: o.tokens ?? GREEDY.maxTokens, temperature: o.temperature ?? GREEDY.temperature, topK: o.topK ?? GREEDY.topK, seed: o.seed, cache: o.cache,
    });
    console.log(o.json ? JSON.stringify(result) : result.text);
  } finally {
    await run.model.dispose();
  }
}

export async function evalCommand(dir: string, o: { data?: string; json?: boolean }): Promise<void> {
  if (!o.data) throw new Error('eval of a switch-transformers run needs --data: a JSONL file of {"input", "target"} pairs');
  const pairs = readPairs(o.data);
  const run = openSeq2SeqRun(dir, createKernels());
  try {
    const r = await pairsLoss(run.model, run.tokenizer, pairs);
    console.log(o.json ? JSON.stringify({ ...r, step: run.step })
      : `step ${run.step}: loss ${r.loss.toFixed(4)} (mean cross-entropy over ${r.tokens} target tokens of ${r.pairs} pairs), perplexity ${r.perplexity.toFixed(3)}`);
  } finally {
    await run.model.dispose();
  }
}

export async function importCommand(from: string, out: string): Promise<void> {
  const { unused, parameters } = await importSwitchTransformers(from, out, createKernels());
  for (const name of unused) console.error(`switchyard: warning: ${from}: tensor ${name} is not used by SwitchTransformersForConditionalGeneration`);
  console.log(`wrote ${out}: config.json, checkpoint.safetensors (${parameters.toLocaleString('en-US')} parameters, step 0), tokenizer.json`);
}

export async function finetuneCommand(options: FinetuneOptions): Promise<void> {
  const bar = new SingleBar({
    format: 'step {value}/{total} {bar} loss {loss} val {val} | {tps} tok/s | ETA {eta_formatted} | dropped {dropped}%',
    barsize: 20, hideCursor: true, noTTYOutput: true, notTTYSchedule: 10_000, etaBuffer: 20,
  });
  const stop = new AbortController();
  const onInterrupt = () => {
    if (stop.signal.aborted) process.exit(130);
    stop.abort();
    bar.stop();
    console.log('\nstopping after this step and saving a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onInterrupt);
  let val = '—', started = false;
  try {
    console.log(`run folder: ${options.out}${options.resume ? ' (resuming)' : ''}`);
    const result = await finetune({
      ...options, signal: stop.signal,
      onStep: (r: FinetuneStep) => {
        if (r.valLoss !== undefined) val = r.valLoss.toFixed(4);
        const fields = { loss: r.loss.toFixed(4), val, tps: Math.round(r.tokensPerS).toString(), dropped: (100 * r.droppedFraction).toFixed(1) };
        if (!started) { bar.start(r.steps, r.step - 1, fields); started = true; }
        if (!stop.signal.aborted) bar.update(r.step, fields);
      },
    });
    bar.stop();
    console.log(result.stopped
      ? `stopped at step ${result.stepsDone}; checkpoint saved. Continue with: switchyard finetune --resume --out ${result.dir}`
      : `done: ${result.stepsDone} steps, loss ${result.lastLoss.toFixed(4)}${Number.isNaN(result.valLoss) ? '' : `, validation loss ${result.valLoss.toFixed(4)}`}. Log: ${result.dir}/log.jsonl`);
  } finally {
    bar.stop();
    process.off('SIGINT', onInterrupt);
  }
}
