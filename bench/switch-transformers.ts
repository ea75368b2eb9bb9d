// `npm run bench:switch-transformers`: encoder-decoder generation, tokens/s, for a model of
// switch-base-8's shapes (619M parameters, random weights from transformers' initialization),
// against transformers' generate on the same weights, in the same run: greedy, batch 1, a
// 20-token input, exactly --tokens new tokens on both sides (</s> suppressed until then, as
// min_new_tokens does), generations alternating between the two so that this shared machine's
// swings hit both alike. transformers runs with 2 threads and OMP_WAIT_POLICY=PASSIVE; we decode
// on one thread. Without a Python that has transformers, only our figure is measured (the
// weights are then ours, hashed).
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { generateIds } from '../app/seq2seq-generate.js';
import { HfCheckpoint, loadHfWeights } from '../app/switch-transformers.js';
import { createKernels } from '../kernels/index.js';
import type { T5Config } from '../model/t5/config.js';
import { EncoderDecoder } from '../model/t5/encoder-decoder.js';
import { type Row, printTable, quantile, writeJson } from './report.js';

const SWITCH_BASE_8: T5Config = {
  vocabSize: 32128, dModel: 768, dKv: 64, heads: 12, dFF: 3072, encoderLayers: 12, decoderLayers: 12, encoderSparseStep: 2, decoderSparseStep: 2,
  numExperts: 8, expertCapacity: 64, buckets: 32, maxDistance: 128, eps: 1e-6, auxLossCoef: 0.001, zLossCoef: 0.001, routerJitter: 0.01,
  padId: 0, eosId: 1, decoderStartId: 0,
};
const PROMPT = Array.from({ length: 20 }, (_, i) => 100 + 37 * i);

const program = new Command('bench:switch-transformers')
  .description('encoder-decoder generation tokens/s of a switch-base-8-sized model, against transformers\' generate on the same weights')
  .option('--json <file>', 'also write the rows as a JSON array')
  .option('--tokens <n>', 'new tokens per generation', '32')
  .option('--rounds <n>', 'generations on each side, alternating', '5')
  .option('--dir <dir>', 'the model folder (made by transformers when absent, kept for the next run)', join(tmpdir(), 'switchyard-bench-switch-base-8'))
  .option('--python <path>', 'a Python with torch and transformers (default: SWITCHYARD_ORACLE_PYTHON or .venv-oracle)')
  .parse();
const o = program.opts<{ json?: string; tokens: string; rounds: string; dir: string; python?: string }>();
const tokens = Number(o.tokens), rounds = Number(o.rounds);
if (!Number.isInteger(tokens) || tokens < 1) program.error(`--tokens: '${o.tokens}' is not a positive integer`);
if (!Number.isInteger(rounds) || rounds < 1) program.error(`--rounds: '${o.rounds}' is not a positive integer`);

const script = fileURLToPath(new URL('../../bench/switch_transformers_generate.py', import.meta.url));
const python = [o.python, process.env.SWITCHYARD_ORACLE_PYTHON, fileURLToPath(new URL('../../.venv-oracle/bin/python', import.meta.url))]
  .find((py) => py && existsSync(py) && spawnSync(py, ['-c', 'import torch, transformers'], { encoding: 'utf8' }).status === 0);
if (!python) console.log('no Python with torch and transformers: measuring Switchyard alone, on hashed weights');
if (python && !existsSync(join(o.dir, 'config.json'))) {
  console.log(`making ${o.dir} with transformers (switch-base-8 shapes, random initialization; a few minutes, 2.5 GB)…`);
  const made = spawnSync(python, [script, 'make', o.dir], { stdio: 'inherit' });
  if (made.status !== 0) throw new Error('bench: the Python script could not make the model folder');
}

let began = performance.now();
const model = new EncoderDecoder(createKernels(), SWITCH_BASE_8, { gradients: false });
if (python) {
  const checkpoint = new HfCheckpoint(o.dir);
  loadHfWeights(SWITCH_BASE_8, model.params, checkpoint);
  checkpoint.close();
} else {
  for (const p of model.params) {
    const scale = p.shape.length === 1 ? 0 : 1 / Math.sqrt(p.shape[p.shape.length - 2] ?? 1);
    for (let i = 0; i < p.data.length; i++) p.data[i] = scale === 0 ? 1 : ((((i * 2654435761) >>> 8) & 0xffff) / 0x8000 - 1) * scale;
  }
}
const loadS = (performance.now() - began) / 1000;
console.log(`our model: ${model.params.reduce((n, p) => n + p.data.length, 0).toLocaleString('en-US')} parameters, loaded in ${loadS.toFixed(1)} s`);

/** transformers' generate in a long-lived Python process, one request per generation. */
async function transformersServer(py: string) {
  const child = spawn(py, [script, 'serve', o.dir], {
    stdio: ['pipe', 'pipe', 'inherit'], env: { ...process.env, OMP_NUM_THREADS: '2', OMP_WAIT_POLICY: 'PASSIVE' },
  });
  const lines = createInterface({ input: child.stdout })[Symbol.asyncIterator]();
  const read = async () => {
    const { value, done } = await lines.next();
    if (done) throw new Error('bench: the transformers process ended');
    return JSON.parse(value as string) as { ready?: boolean; transformers?: string; torch?: string; seconds: number; ids: number[] };
  };
  const hello = await read();
  return {
    versions: `transformers ${hello.transformers}, torch ${hello.torch}`,
    generate: async () => { child.stdin.write(`${tokens} ${PROMPT.join(' ')}\n`); return read(); },
    close: () => { child.stdin.end(); },
  };
}

const theirs = python ? await transformersServer(python) : undefined;
const ours = async () => {
  const t = performance.now();
  const [ids] = await generateIds(model, [Int32Array.from(PROMPT)], { maxTokens: tokens, minTokens: tokens, temperature: 0, topK: 0, seed: 1, cache: true });
  return { seconds: (performance.now() - t) / 1000, ids: ids! };
};
await ours(); // warm-up: compiles the kernels' paths
if (theirs) await theirs.generate();

const mine: number[] = [], other: number[] = [];
let same = true;
began = performance.now();
for (let r = 0; r < rounds; r++) {
  // Alternate which side goes first, so that neither always follows the other's cache misses.
  const first = r % 2 === 0 ? await ours() : undefined;
  const b = theirs ? await theirs.generate() : undefined;
  const c = first ?? await ours();
  mine.push(tokens / c.seconds);
  if (b) {
    other.push(tokens / b.seconds);
    same &&= b.ids.length === c.ids.length && b.ids.every((id, i) => id === c.ids[i]);
  }
  console.log(`round ${r + 1}: Switchyard ${mine.at(-1)!.toFixed(2)} tokens/s${b ? `, transformers ${other.at(-1)!.toFixed(2)} tokens/s` : ''}`);
}
theirs?.close();
await model.dispose();

const median = (v: number[]) => quantile(v, 0.5);
const rows: Row[] = [{ side: 'switchyard', threads: 1, tokens_per_s: median(mine), best_tokens_per_s: Math.max(...mine), rounds, new_tokens: tokens, load_s: loadS }];
if (theirs) {
  rows.push({ side: 'transformers', threads: 2, tokens_per_s: median(other), best_tokens_per_s: Math.max(...other), rounds, new_tokens: tokens, versions: theirs.versions });
  const ratios = mine.map((m, i) => m / other[i]!);
  Object.assign(rows[0]!, { vs_transformers: median(ratios), vs_q1: quantile(ratios, 0.25), vs_q3: quantile(ratios, 0.75), same_tokens: same ? 'yes' : 'no' });
}
console.log();
printTable(rows, ['side', 'threads', 'tokens_per_s', 'best_tokens_per_s', 'vs_transformers', 'vs_q1', 'vs_q3', 'same_tokens', 'rounds', 'new_tokens']);
console.log(`measured ${new Date().toISOString()} in ${((performance.now() - began) / 1000).toFixed(0)} s`);
if (o.json) writeJson(o.json, rows);
