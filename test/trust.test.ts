// Runs a user can trust: one writer per run folder, every way a run can stop survived exactly,
// resumes that say what they do, one validation for the API and the CLI, run folders that move,
// export and import that keep behaviour, and readers that refuse damaged files.
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { exportRun, importRun } from '../app/interchange.js';
import { readRunConfig } from '../app/run-folder.js';
import { decodeSafetensors } from '../app/safetensors.js';
import type { TrainOptions } from '../app/train.js';
import { duration } from '../cli/train.js';
import { createKernels } from '../kernels/index.js';
import { Rng } from '../model/rng.js';
import { evaluateRun, generate, loadRun, train } from '../index.js';

const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
const scratch = () => mkdtempSync(join(tmpdir(), 'switchyard-trust-'));
const corpusDir = scratch();
const corpus = join(corpusDir, 'corpus.txt');
writeFileSync(corpus, readFileSync(new URL('../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 60_000));
const SMALL: Omit<TrainOptions, 'out'> = {
  data: corpus,
  model: { layers: 2, heads: 2, dModel: 32, dFF: 64, context: 16, numExperts: 4, routerJitter: 0.05 },
  train: { batch: 4, steps: 30, evalEvery: 10, evalBatches: 2, warmupSteps: 4 },
  workers: 1,
};
const SMALL_FLAGS = ['--data', corpus, '--steps', '30', '--eval-every', '10', '--batch', '4', '--workers', '1', '--checkpoint-every', '3'];
const log = (dir: string) => readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as Record<string, number>);
const losses = (dir: string) => log(dir).map((l) => [l.step, l.loss]);
const cliRun = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });

/** A `switchyard train` child; resolves once its log has more than `steps` lines. */
function trainChild(out: string, args: string[], steps: number): { child: ChildProcess; logged: Promise<void>; exit: Promise<number | null>; output: () => string } {
  // The smallest model there is, so the child's steps are quick and a kill lands between any two writes.
  const child = spawn(process.execPath, [cli, 'train', '--out', out, ...args]);
  let output = '';
  child.stdout!.on('data', (d) => { output += d; });
  child.stderr!.on('data', (d) => { output += d; });
  const exit = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const logged = new Promise<void>((resolve, reject) => {
    const poll = setInterval(() => {
      const file = join(out, 'log.jsonl');
      if (existsSync(file) && readFileSync(file, 'utf8').split('\n').length > steps + 1) { clearInterval(poll); resolve(); }
      if (child.exitCode !== null) { clearInterval(poll); reject(new Error(`the child exited early:\n${output}`)); }
    }, 20);
  });
  return { child, logged, exit, output: () => output };
}

describe('one writer per run folder', () => {
  it('refuses a second writer at once, naming the holder; readers go on', async () => {
    const out = join(scratch(), 'run');
    const first = trainChild(out, [...SMALL_FLAGS, '--steps', '100000'], 4); // past its first checkpoint, for the reader
    await first.logged;
    await expect(train({ ...SMALL, out, resume: true })).rejects.toThrow(
      new RegExp(`is being written by \`switchyard train\` \\(pid ${first.child.pid} on .*, since .*\\); wait for it to finish or stop it, or choose another --out`));
    const kernels = createKernels();
    const exported = join(scratch(), 'hf');
    await exportRun(out, exported, kernels); // a reader
    await expect(importRun(exported, out, kernels)).rejects.toThrow(/is being written by `switchyard train`/);
    first.child.kill('SIGTERM');
    expect(await first.exit).toBe(143);
    expect(existsSync(join(out, '.writer.lock')), 'released on the way out').toBe(false);
  }, 60_000);

  it('takes over a lock whose holder no longer runs', async () => {
    const out = join(scratch(), 'stale');
    await train({ ...SMALL, train: { ...SMALL.train, steps: 2 }, out });
    const gone = spawnSync(process.execPath, ['-e', 'console.log(process.pid)'], { encoding: 'utf8' });
    mkdirSync(join(out, '.writer.lock'));
    writeFileSync(join(out, '.writer.json'), JSON.stringify({ pid: Number(gone.stdout), host: (await import('node:os')).hostname(), command: 'train', since: 'earlier' }));
    const result = await train({ ...SMALL, train: { ...SMALL.train, steps: 4 }, out, resume: true });
    expect(result.stepsDone).toBe(4);
  }, 60_000);
});

describe('every way a run can stop', () => {
  it.each([['SIGTERM', 143], ['SIGHUP', 129]] as const)('%s saves a checkpoint and exits with status %i', async (signal, status) => {
    const out = join(scratch(), signal);
    const child = trainChild(out, [...SMALL_FLAGS, '--steps', '100000'], 2);
    await child.logged;
    child.child.kill(signal);
    expect(await child.exit).toBe(status);
    const stoppedAt = Number(/stopped at step (\d+); checkpoint saved\. Continue with: npx switchyard train --resume --out /.exec(child.output())![1]);
    expect(loadRun(out).step).toBe(stoppedAt);
  }, 60_000);

  it('killed outright at random points, resumed each time, it ends with exactly the losses of an uninterrupted run', async () => {
    const whole = join(scratch(), 'whole');
    expect(cliRun('train', '--out', whole, ...SMALL_FLAGS).status).toBe(0);
    const parts = join(scratch(), 'parts');
    const rng = new Rng('kill-points');
    let kills = 0;
    for (let attempt = 0; attempt < 3; attempt++) {
      const resume = existsSync(join(parts, 'checkpoint.safetensors')) ? ['--resume'] : [];
      const done = existsSync(join(parts, 'log.jsonl')) ? log(parts).length : 0;
      const child = trainChild(parts, [...SMALL_FLAGS, ...resume], Math.min(29, done + 2 + Math.floor(rng.uniform() * 6)));
      await child.logged.catch(() => {}); // it may finish before the kill point: then nothing to kill
      // A random moment after that: mid-step, mid-log-line or mid-checkpoint.
      await new Promise((resolve) => setTimeout(resolve, rng.uniform() * 40));
      if (child.child.kill('SIGKILL')) kills++;
      await child.exit;
    }
    expect(kills).toBeGreaterThan(0);
    expect(cliRun('train', '--out', parts, ...SMALL_FLAGS, '--resume').status).toBe(0);
    expect(losses(parts)).toEqual(losses(whole));
    const elapsed = log(parts).map((l) => l.elapsed_s!);
    expect(elapsed.every((t, i) => i === 0 || t >= elapsed[i - 1]!), 'the clock continues across resumes').toBe(true);
  }, 120_000);

  it('keeps the checkpoint with the lowest validation loss when asked', async () => {
    const out = join(scratch(), 'best');
    await train({ ...SMALL, out, keepBest: true });
    const best = decodeSafetensors(readFileSync(join(out, 'checkpoint-best.safetensors')), 'best').metadata;
    const vals = log(out).filter((l) => 'val_loss' in l).map((l) => l.val_loss!);
    expect(Number(best.best_val_loss)).toBe(Math.min(...vals));
  }, 60_000);
});

describe('resume says what it does', () => {
  const trained = (async () => {
    const out = join(scratch(), 'run');
    await train({ ...SMALL, train: { ...SMALL.train, steps: 10 }, out });
    return out;
  })();

  it('refuses options that would change the run, naming them; the same values are no change', async () => {
    const out = await trained;
    const r = cliRun('train', '--resume', '--out', out, '--experts', '8', '--seed', '3', '--preset', 'small');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/these options would change it: preset \(--preset\), model\.numExperts \(--experts\), train\.seed \(--seed\)/);
    await expect(train({ ...SMALL, out, resume: true, tokenizer: 'byte' })).rejects.toThrow(/tokenizer \(--tokenizer\)/);
    await expect(train({ ...SMALL, out, resume: true, tokenizer: 'gpt2-512' })).rejects.toThrow(/tokenizer \(--tokenizer\)/);
    await expect(train({ ...SMALL, out: join(scratch(), 'x'), tokenizer: 'gpt2-9' as 'gpt2' })).rejects
      .toThrow('tokenizer (--tokenizer): expected char, byte, gpt2 or gpt2-N (256 ≤ N ≤ 50256), got "gpt2-9"');
  }, 60_000);

  it('applies and says schedule changes, and says when a run is finished', async () => {
    const out = join(scratch(), 'more');
    cpSync(await trained, out, { recursive: true });
    const lines: string[] = [];
    const result = await train({ ...SMALL, train: { ...SMALL.train, steps: 12, learningRate: 2e-3 }, out, resume: true, log: (l) => lines.push(l) });
    expect(result.stepsDone).toBe(12);
    expect(lines).toContain('resume: steps 10 → 12, learningRate 0.001 → 0.002');
    expect(readRunConfig(out).train.steps).toBe(12);
    const again = cliRun('train', '--resume', '--out', out);
    expect(again.status).toBe(0);
    expect(again.stdout).toMatch(/is finished: 12 of 12 steps \(validation loss \d\.\d{4}\); resume with a larger --steps to train further/);
  }, 60_000);
});

describe('one validation for the API and the CLI', () => {
  it.each([
    [{ train: { steps: -1 } }, 'train.steps (--steps): expected a whole number ≥ 1, got -1'],
    [{ train: { steps: NaN } }, 'train.steps (--steps): expected a whole number ≥ 1, got null'],
    [{ train: { learningRate: NaN } }, 'train.learningRate (--lr): expected a number > 0, got null'],
    [{ workers: -1 }, 'workers (--workers): expected a whole number ≥ 0, got -1'],
    [{ model: { capacityFactor: 0 } }, 'model.capacityFactor (--capacity-factor): expected a number > 0 or "dropless", got 0'],
    [{ train: { stepz: 3 } }, "train.stepz: not a train setting"],
    [{ preset: 'huge' }, 'preset (--preset): expected one of tiny, small, got "huge"'],
  ])('the API refuses %j before any work', async (bad, message) => {
    const out = join(scratch(), 'bad');
    await expect(train({ ...SMALL, ...bad, out } as TrainOptions)).rejects.toThrow(message);
    expect(existsSync(join(out, 'config.json'))).toBe(false);
  });

  it('the CLI says the same in one line, and where the flags are', () => {
    const r = cliRun('train', '--steps', '-1');
    expect(r.stderr.trim().split('\n')).toEqual([
      "error: option '--steps <n>' argument '-1' is invalid. expected a whole number ≥ 1, got '-1'",
      '(add --help to the command to list its flags)',
    ]);
    const file = join(scratch(), 'a-file');
    writeFileSync(file, '');
    expect(cliRun('train', '--out', file, '--data', corpus).stderr).toMatch(/--out .*a-file is a file, not a folder/);
  });

  it('formats times a person reads', () => {
    expect([duration(239.6), duration(7), duration(3725), duration(NaN)]).toEqual(['4m00s', '7s', '1h02m05s', '—']);
  });
});

describe('run folders that move', () => {
  it('finds its corpus relative to the run folder; a missing or different one is named, --data points at it', async () => {
    const home = scratch();
    const data = join(home, 'text.txt'), out = join(home, 'runs', 'r');
    cpSync(corpus, data);
    await train({ ...SMALL, data, train: { ...SMALL.train, steps: 4 }, out });
    expect(readRunConfig(out).data).toEqual({ name: 'text.txt', path: '../../text.txt', sha256: expect.stringMatching(/^[0-9a-f]{64}$/) });
    const moved = scratch();
    renameSync(join(home, 'runs'), join(moved, 'runs'));
    renameSync(data, join(moved, 'text.txt'));
    const run = loadRun(join(moved, 'runs', 'r'));
    const valLoss = (await evaluateRun(run)).valLoss;
    rmSync(join(moved, 'text.txt'));
    await expect(evaluateRun(run)).rejects.toThrow(/the run's corpus text\.txt \(sha256 [0-9a-f]{12}…\) is not at .*text\.txt \(config\.json: data\.path, relative to .*\); point at a copy of it with --data FILE/);
    const elsewhere = join(scratch(), 'copy.txt');
    cpSync(corpus, elsewhere);
    expect((await evaluateRun(run, { data: elsewhere })).valLoss).toBe(valLoss);
    writeFileSync(elsewhere, 'something else entirely, long enough to split into two sets of tokens');
    await expect(evaluateRun(run, { data: elsewhere })).rejects.toThrow(/is not the run's corpus text\.txt: its sha256 differs/);
    await run.model.dispose();
  }, 60_000);
});

describe('export and import keep behaviour', () => {
  it('an imported run evaluates and generates exactly as the original, capacity and jitter included', async () => {
    const out = join(scratch(), 'run');
    const model = { ...SMALL.model, capacityFactor: 1.25, routerJitter: 0.05, topK: 2, normalizeTopK: false };
    await train({ ...SMALL, model, train: { ...SMALL.train, steps: 6 }, out });
    const kernels = createKernels();
    const hf = join(scratch(), 'hf'), back = join(scratch(), 'back');
    await exportRun(out, hf, kernels);
    const notes = await importRun(hf, back, kernels);
    expect(notes.join('\n')).toMatch(/starts AdamW afresh/);
    expect(readRunConfig(back).model).toEqual(readRunConfig(out).model);
    const [a, b] = [loadRun(out), loadRun(back)];
    expect(await evaluateRun(b)).toEqual({ ...(await evaluateRun(a)), step: 0 });
    const sample = { prompt: 'ROMEO:', maxTokens: 40, temperature: 1, seed: 11 };
    expect(await generate(b, sample)).toBe(await generate(a, sample));
    await a.model.dispose();
    await b.model.dispose();
  }, 60_000);
});

describe('readers that refuse damage', () => {
  const trained = (async () => {
    const out = join(scratch(), 'run');
    await train({ ...SMALL, train: { ...SMALL.train, steps: 2 }, out });
    return out;
  })();

  it('refuses every random truncation, flipped byte and edited header of a checkpoint and a config: none crashes, hangs or is accepted', async () => {
    const dir = await trained;
    const rng = new Rng('fuzz');
    const files = { checkpoint: readFileSync(join(dir, 'checkpoint.safetensors')), config: readFileSync(join(dir, 'config.json')) };
    const target = join(scratch(), 'target');
    let tried = 0;
    for (const [name, good] of Object.entries(files)) {
      const damaged: Uint8Array[] = [];
      for (let i = 0; i < 40; i++) damaged.push(good.subarray(0, Math.floor(rng.uniform() * good.length)));
      for (let i = 0; i < 60; i++) {
        const copy = Uint8Array.from(good);
        // Half the flips land in the first kilobyte: the header, where a flip can still parse.
        const at = Math.floor(rng.uniform() * (i % 2 ? copy.length : Math.min(copy.length, 1024)));
        copy[at]! ^= 1 << Math.floor(rng.uniform() * 8);
        damaged.push(copy);
      }
      for (const bytes of damaged) {
        rmSync(target, { recursive: true, force: true });
        cpSync(dir, target, { recursive: true });
        writeFileSync(join(target, name === 'checkpoint' ? 'checkpoint.safetensors' : 'config.json'), bytes);
        expect(() => loadRun(target), `${name} damaged (${bytes.length} of ${good.length} bytes)`).toThrow(/config\.json|checkpoint\.safetensors/);
        tried++;
      }
    }
    expect(tried).toBe(200);
  }, 120_000);
});
