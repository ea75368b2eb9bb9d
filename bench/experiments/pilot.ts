// `npm run experiment:pilot -- tokenizer|lr|balance [--data mix] …`: the short runs that fix the
// Switch-vs-dense experiment's choices before its long runs, each reproducible and resumable
// (a run folder per configuration under --out; an interrupted pilot continues where it stopped).
//   tokenizer: the dense model with each tokenizer for the same training FLOPs; validation bits per byte
//   lr:        dense and Switch (E = 8) at each peak learning rate, the same steps
//   balance:   Switch (E = 8) at each load-balancing coefficient α
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { corpusRef, makeDataset } from '../../app/data.js';
import { machine } from '../../app/machine.js';
import { readRunConfig } from '../../app/run-folder.js';
import { type TokenizerChoice, tokenizerFor, tokenizerFromSpec } from '../../app/tokenizer.js';
import { train } from '../../app/train.js';
import type { ModelConfig, TrainConfig } from '../../model/config.js';
import { printTable } from '../report.js';
import { MODEL, SCHEDULE, trainingFlopsPerToken } from './design.js';

const program = new Command('experiment:pilot')
  .argument('<what>', 'tokenizer, lr or balance')
  .option('--data <name>', 'the corpus', 'mix')
  .option('--out <dir>', 'where the pilot runs go', 'runs/pilots')
  .option('--flops <x>', 'tokenizer: training FLOPs per run', '5e12')
  .option('--tokenizers <list>', 'tokenizer: the choices', 'char,gpt2-1024,gpt2-4096,gpt2')
  .option('--tokenizer <kind>', 'lr, balance: the tokenizer', 'char')
  .option('--steps <n>', 'lr, balance: steps per run', '300')
  .option('--lrs <list>', 'lr: peak learning rates', '1e-3,2e-3,4e-3')
  .option('--lr <x>', 'balance (and tokenizer): the peak learning rate', '2e-3')
  .option('--alphas <list>', 'balance: load-balancing coefficients', '0.001,0.01,0.1')
  .option('--sparse-step <n>', 'a Switch layer every n FFN layers (the design\'s default: 1)')
  .option('--workers <n>', 'worker threads', '2')
  .parse();
const [what] = program.args as [string];
const o = program.opts<{ data: string; out: string; flops: string; tokenizers: string; tokenizer: string; steps: string; lrs: string; lr: string; alphas: string; sparseStep?: string; workers: string }>();
const list = (s: string) => s.split(',').map((x) => x.trim()).filter(Boolean);
const num = (s: string, what: string) => {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0) program.error(`${what}: expected a number > 0, got '${s}'`);
  return n;
};
const TOKENS_PER_STEP = SCHEDULE.batch! * MODEL.context!;
const model: Partial<ModelConfig> = { ...MODEL, ...(o.sparseStep !== undefined && { sparseStep: num(o.sparseStep, '--sparse-step') }) };

interface Pilot { name: string; tokenizer: string; model: Partial<ModelConfig>; train: Partial<TrainConfig> }

function pilots(): Pilot[] {
  const steps = num(o.steps, '--steps'), lr = num(o.lr, '--lr');
  const schedule = (s: number, peak: number): Partial<TrainConfig> => ({
    ...SCHEDULE, steps: s, warmupSteps: Math.max(1, Math.round(s / 10)), evalEvery: Math.max(1, Math.round(s / 5)), learningRate: peak, minLearningRate: peak / 10,
  });
  switch (what) {
    case 'tokenizer': {
      const flops = num(o.flops, '--flops');
      const { text } = corpusRef(o.data, o.out);
      return list(o.tokenizers).map((tokenizer) => {
        const vocab = tokenizerFor(tokenizer, text).vocabSize;
        const perToken = trainingFlopsPerToken({ layers: 4, dModel: 128, dFF: 344, context: 128, vocabSize: vocab, numExperts: 0, topK: 1, sparseStep: 1, activation: 'swiglu' });
        return { name: `tokenizer-${tokenizer}`, tokenizer, model: { ...model, numExperts: 0 }, train: schedule(Math.max(10, Math.round(flops / perToken / TOKENS_PER_STEP)), lr) };
      });
    }
    case 'lr':
      return list(o.lrs).flatMap((x) => [0, 8].map((E) => ({
        name: `lr-${x}-${E ? `e${E}` : 'dense'}`, tokenizer: o.tokenizer, model: { ...model, numExperts: E }, train: schedule(steps, num(x, '--lrs')),
      })));
    case 'balance':
      return list(o.alphas).map((a) => ({
        name: `balance-${a}`, tokenizer: o.tokenizer, model: { ...model, numExperts: 8, auxLossCoef: Number(a) }, train: schedule(steps, lr),
      }));
    default:
      return program.error(`what to pilot: tokenizer, lr or balance, got '${what}'`);
  }
}

const rows = [];
const dir = join(o.out, what + (o.sparseStep !== undefined ? `-sparse-step-${o.sparseStep}` : ''));
mkdirSync(dir, { recursive: true });
for (const p of pilots()) {
  const out = join(dir, p.name);
  console.log(`${p.name}: ${p.train.steps} steps, lr ${p.train.learningRate}`);
  await train({
    out, data: o.data, tokenizer: p.tokenizer as TokenizerChoice, model: p.model, train: p.train, workers: Number(o.workers), checkpointEvery: 1000,
    ...(existsSync(join(out, 'checkpoint.safetensors')) && { resume: true }),
  });
  const log = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as { step: number; val_loss?: number; elapsed_s: number; dropped_fraction: number });
  const last = log[log.length - 1]!, config = readRunConfig(out);
  const perToken = trainingFlopsPerToken(config.model);
  const row: Record<string, string | number> = {
    run: p.name, tokenizer: p.tokenizer, vocab: config.model.vocabSize, steps: last.step, lr: p.train.learningRate!,
    flops: perToken * TOKENS_PER_STEP * last.step, val_loss: last.val_loss!, wall_s: Math.round(last.elapsed_s),
    dropped_pct: 100 * log.reduce((s, l) => s + l.dropped_fraction, 0) / log.length,
  };
  if (what === 'tokenizer') {
    // Bits per byte of the validation split, which is the same text (to within a token) whatever the tokenizer.
    const { text } = corpusRef(o.data, out);
    const tok = tokenizerFromSpec(config.tokenizer);
    const val = makeDataset(text, tok, o.data).val;
    const bytesPerToken = Buffer.byteLength(tok.decode(val)) / val.length;
    Object.assign(row, { flops_per_token: perToken, bytes_per_token: bytesPerToken, flops_per_byte: perToken / bytesPerToken, val_bpb: last.val_loss! / Math.LN2 / bytesPerToken });
  }
  rows.push(row);
}
writeFileSync(join(dir, 'results.json'), JSON.stringify({ machine: machine(), command: `npm run experiment:pilot -- ${process.argv.slice(2).join(' ')}`, rows }, null, 2) + '\n');
printTable(rows, Object.keys(rows[0]!));
console.log(`wrote ${join(dir, 'results.json')}`);
