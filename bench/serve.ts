// `npm run bench:serve`: `switchyard serve` under load on loopback. The server runs as its own
// process (the CLI); this one is the load generator: `concurrency` clients, each sending streaming
// completions one after another, bounded by a count per client and a time limit, while a probe
// asks /health every 25 ms. Per level: requests/s, tokens/s, time to first token and per token
// (p50, p99), errors, and the health check's latency (p50, p99, max), first with nothing running.
import { type ChildProcess, spawn } from 'node:child_process';
import { Command } from 'commander';
import { readRunConfig } from '../app/run-folder.js';
import { tokenizerFromSpec } from '../app/tokenizer.js';
import { type Row, printTable, quantile, writeJson } from './report.js';
import { benchPrompts, randomSmallRun } from './small-run.js';

const program = new Command('bench:serve')
  .description('switchyard serve under load: requests/s, tokens/s, time to first token and per token, errors, health-check latency')
  .option('--run <dir>', 'a run folder (default: the small preset\'s size, random weights)')
  .option('--json <file>', 'also write the rows as a JSON array')
  .option('--concurrency <list>', 'concurrent streams per level', '1,8,32')
  .option('--requests <n>', 'requests each client sends at most', '50')
  .option('--seconds <n>', 'a level stops sending new requests after this long (so each level lasts about as long: enough health checks for a p99)', '20')
  .option('--max-tokens <n>', 'max_tokens of each request', '64')
  .option('--prompt <n>', 'prompt tokens', '32')
  .parse();
const o = program.opts<{ run?: string; json?: string; concurrency: string; requests: string; seconds: string; maxTokens: string; prompt: string }>();
const whole = (v: string, what: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 1) program.error(`${what}: '${v}' is not a whole number ≥ 1`);
  return n;
};
const levels = o.concurrency.split(',').map((v) => whole(v, '--concurrency'));
const [perClient, seconds, maxTokens, promptLength] = [whole(o.requests, '--requests'), whole(o.seconds, '--seconds'),
  whole(o.maxTokens, '--max-tokens'), whole(o.prompt, '--prompt')] as const;

const dir = o.run ?? await randomSmallRun();
const tokenizer = tokenizerFromSpec(readRunConfig(dir).tokenizer);
const prompts = benchPrompts(tokenizer, 64, promptLength).map((ids) => tokenizer.decode(ids));
const maxBatch = Math.max(...levels);

/** The CLI's server on a free port; resolves with its URL. */
async function startServer(): Promise<{ url: string; child: ChildProcess }> {
  const cli = new URL('../cli/main.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [cli, 'serve', '--run', dir, '--port', '0', '--max-batch', String(maxBatch), '--max-tokens-limit', String(maxTokens)],
    { stdio: ['ignore', 'pipe', 'inherit'] });
  const url = await new Promise<string>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => { out += d; const m = /on (http:\/\/\S+):/.exec(out); if (m) resolve(m[1]!); });
    child.once('exit', (code) => reject(new Error(`the server exited with code ${code}: ${out}`)));
  });
  return { url, child };
}

interface Sample { ttftMs: number; gapsMs: number[]; tokens: number; ok: boolean }

/** One streaming completion, timed event by event. */
async function completion(url: string, prompt: string, seed: number): Promise<Sample> {
  const start = performance.now();
  const sample: Sample = { ttftMs: NaN, gapsMs: [], tokens: 0, ok: false };
  try {
    const r = await fetch(`${url}/v1/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ prompt, max_tokens: maxTokens, temperature: 1, seed, stream: true }),
    });
    if (r.status !== 200 || !r.body) return sample;
    let buffered = '', last = start, finish: unknown;
    const decoder = new TextDecoder();
    const reader = r.body.getReader();
    for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) {
      buffered += decoder.decode(chunk.value, { stream: true });
      let end: number;
      while ((end = buffered.indexOf('\n\n')) >= 0) {
        const data = buffered.slice(6, end);
        buffered = buffered.slice(end + 2);
        if (data === '[DONE]') continue;
        const event = JSON.parse(data) as { choices?: { token_ids?: number[]; finish_reason: unknown }[]; error?: unknown };
        if (event.error) return sample;
        const c = event.choices![0]!;
        if (c.finish_reason) finish = c.finish_reason;
        if (!c.token_ids) continue;
        const now = performance.now();
        if (sample.tokens === 0) sample.ttftMs = now - start;
        else sample.gapsMs.push(now - last);
        last = now;
        sample.tokens++;
      }
    }
    sample.ok = finish === 'length' && sample.tokens === maxTokens;
  } catch {
    sample.ok = false;
  }
  return sample;
}

/** GET /health every 25 ms until stopped; its latencies. */
function probe(url: string): { stop: () => Promise<number[]> } {
  const latencies: number[] = [];
  let running = true;
  const loop = (async () => {
    while (running) {
      const start = performance.now();
      const r = await fetch(`${url}/health`);
      await r.json();
      latencies.push(performance.now() - start);
      await new Promise((resolve) => setTimeout(resolve, 25));
    }
  })();
  return { stop: async () => { running = false; await loop; return latencies; } };
}

const { url, child } = await startServer();
const rows: Row[] = [];
try {
  await completion(url, prompts[0]!, 0); // the model's first step compiles what it runs
  // The health check with nothing generating: this machine's floor, to read the levels against.
  const idle = probe(url);
  await new Promise((resolve) => setTimeout(resolve, 5000));
  const idleMs = await idle.stop();
  rows.push({
    suite: 'serve', concurrency: 0, requests: 0, errors: 0, health_p50_ms: quantile(idleMs, 0.5), health_p99_ms: quantile(idleMs, 0.99),
    health_max_ms: Math.max(...idleMs), health_checks: idleMs.length,
  });
  for (const concurrency of levels) {
    const health = probe(url);
    const samples: Sample[] = [];
    const deadline = performance.now() + seconds * 1000;
    const start = performance.now();
    await Promise.all(Array.from({ length: concurrency }, async (_, client) => {
      for (let i = 0; i < perClient && performance.now() < deadline; i++) {
        samples.push(await completion(url, prompts[(client * perClient + i) % prompts.length]!, client * 1000 + i));
      }
    }));
    const wall = (performance.now() - start) / 1000;
    const healthMs = await health.stop();
    const ok = samples.filter((s) => s.ok), gaps = ok.flatMap((s) => s.gapsMs), ttft = ok.map((s) => s.ttftMs);
    const tokens = samples.reduce((sum, s) => sum + s.tokens, 0);
    rows.push({
      suite: 'serve', concurrency, requests: samples.length, errors: samples.length - ok.length, seconds: wall,
      requests_per_s: samples.length / wall, tokens_per_s: tokens / wall,
      ttft_p50_ms: quantile(ttft, 0.5), ttft_p99_ms: quantile(ttft, 0.99), token_p50_ms: quantile(gaps, 0.5), token_p99_ms: quantile(gaps, 0.99),
      health_p50_ms: quantile(healthMs, 0.5), health_p99_ms: quantile(healthMs, 0.99), health_max_ms: Math.max(...healthMs), health_checks: healthMs.length,
    });
    console.log(`${concurrency} streams: ${samples.length} requests, ${(tokens / wall).toFixed(1)} tokens/s, health p99 ${quantile(healthMs, 0.99).toFixed(1)} ms`);
  }
} finally {
  child.kill('SIGTERM');
}
console.log();
printTable(rows, ['concurrency', 'requests', 'errors', 'requests_per_s', 'tokens_per_s', 'ttft_p50_ms', 'ttft_p99_ms', 'token_p50_ms', 'token_p99_ms', 'health_p50_ms', 'health_p99_ms', 'health_max_ms']);
if (o.json) {
  writeJson(o.json, rows.map((r) => ({
    ...r, max_tokens: maxTokens, prompt_tokens: promptLength, command: `npm run bench:serve -- ${process.argv.slice(2).join(' ')}`.trim(),
  })));
}
