// `npm run bench:generate`: tokens/s of greedy generation, 256 new tokens after a 32-token prompt,
// at batch 1 and 8, with the KV cache and without (--no-cache recomputes the window per token),
// against Hugging Face transformers' generate (PyTorch, use_cache=True, float32, the same thread
// count) on the same model exported to Qwen2-MoE, measured in the same run when a Python with
// torch and transformers is found. Without --run, a model of the `small` preset's size with
// random weights (speed does not depend on the values).
import { Command } from 'commander';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { exportRun } from '../app/interchange.js';
import { type LoadedRun, openRun } from '../app/run-folder.js';
import { localInference } from '../app/inference.js';
import { createKernels } from '../kernels/index.js';
import { oracleEnv, oraclePython } from './oracle-python.js';
import { benchPrompts, randomSmallRun } from './small-run.js';
import { type Row, printTable, writeJson } from './report.js';

const program = new Command('bench:generate')
  .description('greedy generation tokens/s: the KV cache, --no-cache, and transformers\' generate on the same model')
  .option('--run <dir>', 'a run folder (default: the small preset\'s size, random weights)')
  .option('--json <file>', 'also write the rows as a JSON array')
  .option('--batch <list>', 'batch sizes', '1,8')
  .option('--prompt <n>', 'prompt tokens', '32')
  .option('--tokens <n>', 'new tokens', '256')
  .option('--repeats <n>', 'runs of each configuration; the fastest counts (this machine\'s speed swings)', '2')
  .option('--uncached <list>', 'batch sizes also run without the cache, as --no-cache (slow: a forward over the window per token)', '1')
  .option('--threads <n>', 'PyTorch threads', '2')
  .parse();
const o = program.opts<{ run?: string; json?: string; batch: string; prompt: string; tokens: string; repeats: string; uncached: string; threads: string }>();
const list = (s: string, what: string) => s.split(',').filter(Boolean).map((v) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) program.error(`${what}: '${v}' is not a whole number ≥ 1`);
  return n;
});
const batches = list(o.batch, '--batch'), noCacheBatches = list(o.uncached, '--uncached');
const [promptLength, tokens, repeats, threads] = [o.prompt, o.tokens, o.repeats, o.threads].map((v, i) => list(v, ['--prompt', '--tokens', '--repeats', '--threads'][i]!)[0]!) as [number, number, number, number];

/** Seconds for one batch's greedy generation, the best of `repeats`, and the first sequence's tokens. */
async function measure(run: LoadedRun, ids: number[][], cache: boolean): Promise<{ seconds: number; slides: number; first: number[] }> {
  const inference = localInference(run.model, run.tokenizer, { cache, maxBatch: ids.length });
  let best = Infinity, slides = 0, first: number[] = [];
  for (let r = 0; r < repeats; r++) {
    const start = performance.now();
    // Past the context (32 + 256 > 256), the window slides once: one prefill of half the context.
    const results = await Promise.all(ids.map((p) => inference.stream({
      prompt: run.tokenizer.decode(p), maxTokens: tokens, temperature: 0, atContext: 'slide',
    }).result));
    best = Math.min(best, (performance.now() - start) / 1000);
    slides = results[0]!.slides;
    first = results[0]!.ids;
    if (results.some((x) => x.ids.length !== tokens)) throw new Error('a sequence stopped early');
  }
  await inference.close();
  return { seconds: best, slides, first };
}

const dir = o.run ?? await randomSmallRun();
const kernels = createKernels();
const run = openRun(dir, kernels);
const m = run.config.model;
console.log(`model: ${o.run ?? 'random weights'}, ${m.layers} layers, ${m.dModel} wide, context ${m.context}, ${m.numExperts} experts; `
  + `${promptLength}-token prompts, ${tokens} new tokens, greedy, best of ${repeats}`);
const rows: Row[] = [];
const ours = new Map<number, number[]>();
for (const batch of batches) {
  const ids = benchPrompts(run.tokenizer, batch, promptLength);
  for (const cache of [true, ...(noCacheBatches.includes(batch) ? [false] : [])]) {
    const r = await measure(run, ids, cache);
    if (cache) ours.set(batch, r.first);
    rows.push({ suite: 'generate', impl: 'switchyard', batch, cache: cache ? 'kv' : 'none', tokens_per_s: (batch * tokens) / r.seconds, seconds: r.seconds, slides: r.slides });
    console.log(`switchyard, batch ${batch}, ${cache ? 'KV cache' : 'no cache'}: ${((batch * tokens) / r.seconds).toFixed(1)} tokens/s`);
  }
}
await run.model.dispose();

const oracle = oraclePython();
if ('missing' in oracle) {
  console.log(`transformers: skipped, ${oracle.missing}`);
  rows.push({ suite: 'generate', impl: 'transformers', skipped: oracle.missing });
} else {
  const hf = mkdtempSync(join(tmpdir(), 'switchyard-bench-hf-'));
  try {
    await exportRun(dir, hf, kernels);
    const promptFile = join(hf, 'prompts.json');
    writeFileSync(promptFile, JSON.stringify(benchPrompts(run.tokenizer, Math.max(...batches), promptLength)));
    const script = new URL('../../bench/oracle/hf_generate.py', import.meta.url).pathname;
    const r = spawnSync(oracle.python, [script, hf, '--batch', batches.join(','), '--tokens', String(tokens), '--threads', String(threads),
      '--repeats', String(repeats), '--prompt-ids', promptFile], { encoding: 'utf8', env: oracleEnv(threads), timeout: 3_600_000 });
    if (r.status !== 0) throw new Error(`transformers' generate failed: ${r.stderr.split('\n').filter(Boolean).slice(-3).join(' | ')}`);
    for (const line of r.stdout.split('\n').filter((l) => l.startsWith('{'))) {
      const h = JSON.parse(line) as { batch: number; tokens_per_s: number; seconds: number; ids: number[]; torch: string; transformers: string };
      const mine = ours.get(h.batch) ?? [];
      let agree = 0;
      while (agree < mine.length && mine[agree] === h.ids[agree]) agree++;
      rows.push({ suite: 'generate', impl: `transformers ${h.transformers} (torch ${h.torch}, ${threads} threads)`, batch: h.batch, cache: 'kv',
        tokens_per_s: h.tokens_per_s, seconds: h.seconds, same_greedy_tokens: agree });
      console.log(`transformers, batch ${h.batch}: ${h.tokens_per_s.toFixed(1)} tokens/s`);
    }
  } catch (e) {
    const why = (e as Error).message;
    console.log(`transformers: skipped, ${why}`);
    rows.push({ suite: 'generate', impl: 'transformers', skipped: why });
  }
}

for (const row of rows.filter((r) => r.impl === 'switchyard')) {
  const hf = rows.find((r) => r.impl !== 'switchyard' && r.batch === row.batch && r.tokens_per_s !== undefined);
  if (hf) row.vs_transformers = (row.tokens_per_s as number) / (hf.tokens_per_s as number);
  const noCache = rows.find((r) => r.impl === 'switchyard' && r.batch === row.batch && r.cache === 'none');
  if (row.cache === 'kv' && noCache) row.vs_no_cache = (row.tokens_per_s as number) / (noCache.tokens_per_s as number);
}
console.log();
printTable(rows.filter((r) => r.tokens_per_s !== undefined), ['impl', 'batch', 'cache', 'tokens_per_s', 'seconds', 'vs_transformers', 'vs_no_cache', 'same_greedy_tokens']);
if (o.json) writeJson(o.json, rows.map((r) => ({ ...r, prompt_tokens: promptLength, new_tokens: tokens, repeats, command: `npm run bench:generate -- ${process.argv.slice(2).join(' ')}`.trim() })));
