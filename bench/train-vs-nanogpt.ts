// `npm run bench:train`: nanoGPT's Shakespeare-char CPU run in PyTorch (bench/anchors/nanogpt.py),
// then right after it our `train --preset tiny` for as many steps on the same corpus; the wall
// time of each process, the validation loss at each evaluation and at the end, and how long our
// run takes to reach nanoGPT's final validation loss.
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { Command, InvalidArgumentError } from 'commander';
import { type Row, printTable, writeJson } from './report.js';
import { anchorPython, anchorRows } from './pytorch.js';

const positive = (name: string) => (v: string) => {
  if (!/^\d+$/.test(v) || Number(v) < 1) throw new InvalidArgumentError(`${name} must be a positive integer, got '${v}'`);
  return Number(v);
};
const program = new Command('bench:train')
  .description("nanoGPT's Shakespeare-char CPU run in PyTorch, then ours for as many steps: wall time, validation loss, time to nanoGPT's loss")
  .option('--steps <n>', 'training steps of each run', positive('--steps'), 2000)
  .option('--threads <n>', 'PyTorch threads, and our expert workers', positive('--threads'), 2)
  .option('--json <file>', 'also write the rows as a JSON array')
  .parse();
const options = program.opts<{ steps: number; threads: number; json?: string }>();

/** One evaluation: the steps done before it, its validation loss, and the training time before it. */
interface Eval { step: number; val_loss: number; elapsed_s: number }
interface Run { name: string; wallS: number; evals: Eval[] }

const seconds = (since: number) => (performance.now() - since) / 1000;

async function nanogpt(): Promise<Run | undefined> {
  const torch = anchorPython();
  if (torch.python === undefined) return undefined;
  console.log(`nanoGPT (PyTorch), ${options.steps} steps on ${options.threads} threads…`);
  const began = performance.now();
  const rows = await anchorRows(torch, 'nanogpt.py', ['--steps', String(options.steps), '--threads', String(options.threads)], (row) => {
    if (row.step !== undefined) console.log(`  step ${row.step}: val ${(row.val_loss as number).toFixed(4)} at ${(row.elapsed_s as number).toFixed(1)} s`);
  });
  const wallS = seconds(began);
  const evals = rows.filter((r) => r.step !== undefined).map((r) => ({ step: r.step as number, val_loss: r.val_loss as number, elapsed_s: r.elapsed_s as number }));
  return evals.length ? { name: 'nanogpt-pytorch', wallS, evals } : undefined;
}

/** Our run, in a fresh folder under the system's temporary directory (kept: its log and checkpoint are the run's record). */
async function ours(): Promise<Run> {
  const out = mkdtempSync(join(tmpdir(), 'switchyard-bench-train-'));
  console.log(`switchyard train --preset tiny, ${options.steps} steps on ${options.threads} workers…`);
  const main = new URL('../cli/main.js', import.meta.url).pathname;
  const args = [main, 'train', '--preset', 'tiny', '--steps', String(options.steps), '--workers', String(options.threads), '--out', out];
  const began = performance.now();
  await new Promise<void>((resolve, reject) => {
    const child = spawn(process.execPath, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    // Its progress line, every 10 s when not on a terminal: the run takes minutes.
    createInterface({ input: child.stdout }).on('line', (line) => console.log(`  ${line}`));
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => (code === 0 ? resolve() : reject(new Error(`switchyard train exited with ${code}: ${stderr.trim()}`))));
  });
  const wallS = seconds(began);
  const log = readFileSync(join(out, 'log.jsonl'), 'utf8').trim().split('\n').map((line) => JSON.parse(line) as Record<string, number>);
  const evals = log.filter((l) => l.val_loss !== undefined).map((l) => ({ step: l.step!, val_loss: l.val_loss!, elapsed_s: l.elapsed_s! }));
  return { name: 'switchyard', wallS, evals };
}

const anchor = await nanogpt();
const runs = anchor ? [anchor, await ours()] : [await ours()];

/** A run's figures; beside nanoGPT's, also its wall time over nanoGPT's and when it first reached nanoGPT's final validation loss. */
function summary(run: Run): Row {
  const row: Row = {
    suite: 'train-vs-nanogpt', row: 'run', run: run.name, steps: options.steps, threads: options.threads, wall_s: run.wallS,
    final_val_loss: run.evals.at(-1)!.val_loss,
  };
  if (!anchor) return row;
  const target = anchor.evals.at(-1)!.val_loss;
  const reachedBy = (r: Run) => r.evals.find((e) => e.val_loss <= target);
  const reached = reachedBy(run);
  Object.assign(row, { wall_vs_nanogpt: run.wallS / anchor.wallS, s_to_nanogpt_final: reached?.elapsed_s ?? 'not reached' });
  if (reached) Object.assign(row, { step_reached: reached.step, to_loss_vs_nanogpt: reached.elapsed_s / reachedBy(anchor)!.elapsed_s });
  return row;
}
const rows = runs.map(summary);

console.log();
printTable(rows, ['run', 'steps', 'threads', 'wall_s', 'wall_vs_nanogpt', 'final_val_loss', 's_to_nanogpt_final', 'step_reached', 'to_loss_vs_nanogpt']);
// Validation loss at each evaluation, the runs side by side (nanoGPT also evaluates before the first step).
const steps = [...new Set(runs.flatMap((r) => r.evals.map((e) => e.step)))].sort((a, b) => a - b);
const evalRows: Row[] = steps.map((step) => Object.fromEntries([['step', step], ...runs.flatMap((run) => {
  const e = run.evals.find((x) => x.step === step);
  return e ? [[`${run.name}_val`, e.val_loss], [`${run.name}_s`, Number(e.elapsed_s.toFixed(1))]] : [];
})]) as Row);
console.log();
printTable(evalRows, ['step', ...runs.flatMap((r) => [`${r.name}_val`, `${r.name}_s`])]);
if (options.json) {
  writeJson(options.json, [...rows, ...runs.flatMap((run) => run.evals.map((e) => ({ suite: 'train-vs-nanogpt', row: 'eval', run: run.name, ...e })))]);
}
