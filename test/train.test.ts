// Training end to end through the API and the CLI: logs, determinism, exact resume, checkpoints
// that refuse damage, evaluation and sampling.
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { evaluateRun, generate, loadRun, train } from '../index.js';
import type { TrainOptions } from '../app/train.js';

const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
const scratch = () => mkdtempSync(join(tmpdir(), 'switchyard-train-'));

// A small corpus and model so each run takes a second or two.
const corpus = join(scratch(), 'corpus.txt');
writeFileSync(corpus, readFileSync(new URL('../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 60_000));
const SMALL: Omit<TrainOptions, 'out'> = {
  data: corpus,
  model: { layers: 2, heads: 2, dModel: 32, dFF: 64, context: 16, numExperts: 4 },
  train: { batch: 4, steps: 24, evalEvery: 8, evalBatches: 2, warmupSteps: 4 },
  workers: 2,
};
const log = (dir: string) => readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));

describe('train', () => {
  it('logs every step, validates every evalEvery steps, and learns', async () => {
    const out = join(scratch(), 'run');
    const result = await train({ ...SMALL, out });
    expect(result).toMatchObject({ stepsDone: 24, stopped: false });
    const lines = log(out);
    expect(lines.map((l) => l.step)).toEqual(Array.from({ length: 24 }, (_, i) => i + 1));
    expect(lines.filter((l) => 'val_loss' in l).map((l) => l.step)).toEqual([8, 16, 24]);
    for (const l of lines) {
      expect(l.tokens_per_s).toBeGreaterThan(0);
      expect(l.expert_load).toHaveLength(1); // one Switch layer of two
      expect(l.expert_load[0].reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 6);
    }
    // Each evaluation also logs the Switch layer's routing on the validation batches (app/routing-stats.ts).
    expect(lines.filter((l) => 'routing' in l).map((l) => l.step)).toEqual([8, 16, 24]);
    for (const l of lines.filter((x) => 'routing' in x)) {
      expect(l.routing).toHaveLength(1);
      const r = l.routing[0];
      expect(r.layer).toBe(1);
      expect(r.load.reduce((a: number, b: number) => a + b, 0)).toBeCloseTo(1, 5);
      expect(r.dropped).toHaveLength(4);
      expect(r.entropy).toBeGreaterThan(0);
      expect(r.entropy).toBeLessThanOrEqual(Math.log(4) + 1e-6);
      expect(r.overload).toBeGreaterThanOrEqual(1);
      expect(r.overload_max).toBeGreaterThanOrEqual(r.overload);
      expect(r.dead).toEqual([]);
    }
    expect(lines[0].loss).toBeCloseTo(Math.log(60), 0); // about uniform over the corpus's characters at first
    expect(lines[23].loss).toBeLessThan(lines[0].loss - 0.3);
    expect(existsSync(join(out, 'checkpoint.safetensors'))).toBe(true);
  }, 60_000);

  it('gives the identical loss curve for the same seed, whatever the worker count', async () => {
    const runs = [];
    for (const workers of [0, 1, 2]) {
      const out = join(scratch(), `w${workers}`);
      await train({ ...SMALL, train: { ...SMALL.train, steps: 10 }, workers, out });
      runs.push(log(out).map((l) => l.loss));
    }
    expect(runs[1]).toEqual(runs[0]);
    expect(runs[2]).toEqual(runs[0]);
    const other = join(scratch(), 'seed');
    await train({ ...SMALL, train: { ...SMALL.train, steps: 10, seed: 7 }, out: other });
    expect(log(other).map((l) => l.loss)).not.toEqual(runs[0]);
  }, 60_000);

  it('trains with the experts on gpu.js to the losses of the WebAssembly experts', async () => {
    const losses: number[][] = [];
    for (const backend of ['wasm', 'gpujs'] as const) {
      const out = join(scratch(), backend);
      await train({ ...SMALL, train: { ...SMALL.train, steps: 4 }, workers: 2, backend, gpujsMode: 'webasm', out });
      losses.push(log(out).map((l) => l.loss as number));
    }
    expect(losses[1]).toHaveLength(4);
    losses[1]!.forEach((loss, i) => expect(Math.abs(loss - losses[0]![i]!) / losses[0]![i]!).toBeLessThan(1e-4));
  }, 60_000);

  it('resumes exactly: an interrupted and resumed run logs the losses of an uninterrupted one', async () => {
    const whole = join(scratch(), 'whole');
    await train({ ...SMALL, out: whole });
    const parts = join(scratch(), 'parts');
    const stop = new AbortController();
    const first = await train({ ...SMALL, out: parts, signal: stop.signal, onStep: (r) => { if (r.step === 11) stop.abort(); } });
    expect(first).toMatchObject({ stepsDone: 11, stopped: true });
    // An interrupted run may have logged past its checkpoint; the resume must not keep those lines twice.
    const second = await train({ ...SMALL, out: parts, resume: true });
    expect(second).toMatchObject({ stepsDone: 24, stopped: false });
    // Each session's first line also says what it ran on; the resumed session has one more.
    const withoutSession = (lines: Record<string, unknown>[]) => lines.map(({ kernels: _k, workers: _w, ...l }) => l);
    expect(withoutSession(log(parts))).toEqual(withoutSession(log(whole)).map((l) => ({ ...l, tokens_per_s: expect.any(Number), elapsed_s: expect.any(Number) })));
    expect(log(parts).filter((l) => 'kernels' in l).map((l) => l.step)).toEqual([1, 12]);
  }, 60_000);

  it("trains with GPT-2's BPE cut to 512 tokens, records it, and resumes with it", async () => {
    const out = join(scratch(), 'bpe');
    await train({ ...SMALL, tokenizer: 'gpt2-512', train: { ...SMALL.train, steps: 4 }, out });
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config.tokenizer).toEqual({ kind: 'bpe', encoding: 'gpt2', vocab: 512 });
    expect(config.model.vocabSize).toBe(512);
    expect(log(out)[0].loss).toBeCloseTo(Math.log(512), 0);
    await train({ ...SMALL, tokenizer: 'gpt2-512', train: { ...SMALL.train, steps: 6 }, out, resume: true });
    expect(log(out)).toHaveLength(6);
    const run = loadRun(out);
    expect((await generate(run, { prompt: 'ROMEO:', maxTokens: 5, seed: 1 })).startsWith('ROMEO:')).toBe(true);
    await run.model.dispose();
  }, 60_000);

  it('refuses a second run into the same folder without --resume', async () => {
    const out = join(scratch(), 'run');
    await train({ ...SMALL, train: { ...SMALL.train, steps: 2 }, out });
    await expect(train({ ...SMALL, out })).rejects.toThrow(/already holds a run; pass --resume/);
  }, 30_000);

  it('stores bf16 expert weights for compute with float32 masters', async () => {
    const out = join(scratch(), 'bf16');
    await train({ ...SMALL, model: { ...SMALL.model, expertDtype: 'bf16' }, train: { ...SMALL.train, steps: 4 }, out });
    const run = loadRun(out);
    const expert = run.model.params.list.find((p) => p.name.endsWith('moe.w_in'))!;
    const bits = new Uint32Array(Float32Array.from(expert.compute!).buffer);
    expect(bits.every((b) => (b & 0xffff) === 0)).toBe(true); // bfloat16: the low 16 bits are zero
    expect(Array.from(expert.data).some((v, i) => v !== expert.compute![i])).toBe(true); // masters keep full precision
    const router = run.model.params.list.find((p) => p.name.endsWith('moe.router'))!;
    expect(router.compute).toBeUndefined(); // the router stays float32
    await run.model.dispose();
  }, 30_000);
});

describe('checkpoints', () => {
  const trained = (async () => {
    const out = join(scratch(), 'run');
    await train({ ...SMALL, train: { ...SMALL.train, steps: 8 }, out });
    return out;
  })();

  it('load into eval and generate; sampling is seeded', async () => {
    const run = loadRun(await trained);
    expect(run.step).toBe(8);
    const { valLoss, perplexity } = await evaluateRun(run);
    expect(valLoss).toBeCloseTo(log(await trained)[7].val_loss, 5);
    expect(perplexity).toBeCloseTo(Math.exp(valLoss), 6);
    const a = await generate(run, { prompt: 'ROMEO:', maxTokens: 20, seed: 3 });
    expect(a.startsWith('ROMEO:')).toBe(true);
    expect(a.length).toBe(26);
    expect(await generate(run, { prompt: 'ROMEO:', maxTokens: 20, seed: 3 })).toBe(a);
    expect(await generate(run, { prompt: 'ROMEO:', maxTokens: 20, seed: 4 })).not.toBe(a);
    await run.model.dispose();
  }, 30_000);

  it('a truncated, tampered or mismatched checkpoint is a clear error', async () => {
    const dir = await trained;
    const bytes = readFileSync(join(dir, 'checkpoint.safetensors'));
    const copy = (name: string, data: Uint8Array, config?: (c: any) => void) => {
      const d = join(scratch(), name);
      spawnSync('cp', ['-r', dir, d]);
      writeFileSync(join(d, 'checkpoint.safetensors'), data);
      if (config) {
        const c = JSON.parse(readFileSync(join(d, 'config.json'), 'utf8'));
        delete c.checksum; // an edit on purpose
        config(c);
        writeFileSync(join(d, 'config.json'), JSON.stringify(c));
      }
      return d;
    };
    expect(() => loadRun(copy('cut', bytes.subarray(0, bytes.length - 100)))).toThrow(/checkpoint\.safetensors: .*(run past|truncated)/);
    const flipped = Uint8Array.from(bytes);
    flipped[flipped.length - 5]! ^= 0xff;
    expect(() => loadRun(copy('flip', flipped))).toThrow(/checkpoint\.safetensors: data was modified: sha256 mismatch/);
    expect(() => loadRun(copy('shape', bytes, (c) => { c.model.dFF = 96; }))).toThrow(/tensor "layers\.0\.mlp\.up\.weight" has shape \[32×64\], expected \[32×96\]/);
  }, 30_000);
});

describe('the CLI', () => {
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });

  it('trains, evaluates and generates', () => {
    const out = join(scratch(), 'cli-run');
    const t = run('train', '--data', corpus, '--steps', '4', '--eval-every', '2', '--out', out, '--workers', '1', '--batch', '2');
    expect(t.status).toBe(0);
    // The progress bar (on stderr; a line every 10 s where stderr is not a terminal) ends at the last step.
    expect(t.stderr).toMatch(/step 4\/4 =+ loss \d\.\d{4} val \d\.\d{4} \| \d+ tok\/s \| ETA 0s \| dropped \d+\.\d% \| load \d\.\d\d–\d\.\d\d×/);
    expect(t.stdout).toMatch(/done: 4 steps, validation loss \d\.\d{4}/);
    expect(log(out)).toHaveLength(4);
    const e = run('eval', '--run', out);
    expect(e.stdout).toMatch(/^step 4: validation loss \d\.\d{4}, perplexity \d+\.\d{3}$/m);
    const g = run('generate', '--run', out, '--prompt', 'ROMEO:', '--tokens', '10', '--seed', '2');
    expect(g.status).toBe(0);
    expect(g.stdout.startsWith('ROMEO:')).toBe(true);
  }, 120_000);

  it('says what is accepted for unknown flags and bad values', () => {
    expect(run('train', '--steps', 'ten').stderr).toMatch(/--steps <n>' argument 'ten' is invalid\. expected a whole number ≥ 1/);
    expect(run('train', '--preset', 'huge').stderr).toMatch(/Allowed choices are tiny, small/);
    expect(run('train', '--expert-dtype', 'f16').stderr).toMatch(/Allowed choices are f32, bf16/);
    expect(run('train', '--bogus').stderr).toMatch(/unknown option '--bogus'/);
    expect(run('train', '--resume').stderr).toMatch(/--resume needs --out/);
    expect(run('generate', '--run', '/nonexistent').stderr).toMatch(/\/nonexistent: not a run folder/);
    expect(run('train', '--help').stdout).toMatch(/--expert-dtype <dtype>/);
  }, 60_000);

  it('Ctrl-C saves a checkpoint and exits with the signal\'s status; --resume continues', async () => {
    const out = join(scratch(), 'interrupted');
    const child = spawn(process.execPath, [cli, 'train', '--data', corpus, '--steps', '2000', '--out', out, '--workers', '1', '--batch', '2', '--eval-every', '1000']);
    let stdout = '';
    child.stdout.on('data', (d) => { stdout += d; });
    // Interrupt once the first steps are logged.
    await new Promise<void>((resolve) => {
      const poll = setInterval(() => {
        if (existsSync(join(out, 'log.jsonl')) && readFileSync(join(out, 'log.jsonl'), 'utf8').split('\n').length > 3) {
          clearInterval(poll);
          child.kill('SIGINT');
          resolve();
        }
      }, 50);
    });
    const code = await new Promise((resolve) => child.on('exit', resolve));
    expect(code).toBe(130);
    expect(stdout).toMatch(/stopped at step (\d+); checkpoint saved/);
    const stoppedAt = Number(/stopped at step (\d+)/.exec(stdout)![1]);
    expect(loadRun(out).step).toBe(stoppedAt);
  }, 60_000);
});
