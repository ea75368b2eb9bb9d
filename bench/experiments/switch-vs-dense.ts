// `npm run experiment:switch-vs-dense`: the paper's claim at our scale. The tiny preset on the
// embedded corpus, same seed, steps and batch, dense against Switch with 2–16 experts, capacity
// factors 1.0–2.0 and dropless, and top-2 routing. Writes results.json, report.html and the
// headline curve as an SVG into the output folder.
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { train } from '../../app/train.js';
import type { ModelConfig } from '../../model/config.js';
import { finalFigures, readRun, renderReport } from '../../app/report.js';
import { machine } from '../../app/machine.js';
import { printTable } from '../report.js';
import { lineChart } from '../../app/svg.js';

const RUNS: [string, Partial<ModelConfig>][] = [
  ['dense', { numExperts: 0 }],
  ['switch-e2', { numExperts: 2 }],
  ['switch-e4', { numExperts: 4 }],
  ['switch-e8', { numExperts: 8 }],
  ['switch-e16', { numExperts: 16 }],
  ['switch-e8-cf1.0', { numExperts: 8, capacityFactor: 1.0 }],
  ['switch-e8-cf2.0', { numExperts: 8, capacityFactor: 2.0 }],
  ['switch-e8-dropless', { numExperts: 8, capacityFactor: null }],
  ['top2-e8', { numExperts: 8, topK: 2 }],
];

const program = new Command('experiment:switch-vs-dense')
  .description('train dense and Switch variants of the tiny preset with the same seed, steps and batch; write results.json and report.html')
  .option('--steps <n>', 'training steps per run', '2000')
  .option('--out <dir>', 'where the runs, results.json and report.html go', 'runs/switch-vs-dense')
  .option('--only <names>', `comma-separated subset of: ${RUNS.map(([n]) => n).join(', ')}`)
  .option('--workers <n>', 'expert worker threads per run (default: one per core)')
  .parse();
const o = program.opts<{ steps: string; out: string; only?: string; workers?: string }>();
const steps = Number(o.steps);
if (!Number.isInteger(steps) || steps < 1) program.error(`--steps: expected a whole number ≥ 1, got '${o.steps}'`);
const only = o.only?.split(',');
for (const name of only ?? []) if (!RUNS.some(([n]) => n === name)) program.error(`--only: unknown run '${name}'`);
const chosen = RUNS.filter(([n]) => !only || only.includes(n));

mkdirSync(o.out, { recursive: true });
for (const [i, [name, model]] of chosen.entries()) {
  const dir = join(o.out, name);
  console.log(`[${i + 1}/${chosen.length}] ${name}`);
  // A run folder from an interrupted experiment continues where it stopped; a finished one is kept.
  await train({
    out: dir, model, train: { steps, evalEvery: Math.min(250, Math.max(1, Math.floor(steps / 8))) },
    ...(existsSync(join(dir, 'checkpoint.safetensors')) && { resume: true }),
    ...(o.workers !== undefined && { workers: Number(o.workers) }),
    onStep: (r) => { if (r.valLoss !== undefined) console.log(`  step ${r.step}: val ${r.valLoss.toFixed(4)}, ${r.elapsedS.toFixed(0)} s`); },
  });
}

const runs = chosen.map(([name]) => readRun(join(o.out, name), name));
const figures = runs.map((r) => ({ name: r.name, ...finalFigures(r) }));
writeFileSync(join(o.out, 'results.json'), JSON.stringify({
  machine: machine(), steps,
  runs: runs.map((r, i) => ({
    ...figures[i], model: r.model,
    validation: r.log.filter((l) => l.val_loss !== undefined).map((l) => ({ step: l.step, elapsed_s: l.elapsed_s, val_loss: l.val_loss })),
  })),
}, null, 2) + '\n');
writeFileSync(join(o.out, 'report.html'), renderReport(`Switch vs dense: tiny preset, ${steps} steps`, runs,
  'Same seed, steps, batch and FLOPs per token (top-2 doubles the expert FLOPs).'));
writeFileSync(join(o.out, 'val-loss.svg'), lineChart(`Validation loss, tiny preset, ${steps} steps`, 'step', 'validation loss',
  runs.map((r) => ({ name: r.name, points: r.log.filter((l) => l.val_loss !== undefined).map((l) => [l.step, l.val_loss!] as [number, number]) }))));
printTable(figures.map((f) => ({
  run: f.name, val_loss: f.finalValLoss, best_val: f.bestValLoss, tokens_per_s: Math.round(f.tokensPerS), wall_s: f.wallS,
  dropped_pct: 100 * f.droppedFraction,
})), ['run', 'val_loss', 'best_val', 'tokens_per_s', 'wall_s', 'dropped_pct']);
console.log(`wrote ${join(o.out, 'results.json')}, report.html and val-loss.svg`);
