// `npm run bench:ab -- A B`: a `tiny` training step of two builds (two dist/ folders, e.g. a
// worktree of the last commit's and this one's), in one process, alternating step by step, so
// that this shared machine's swings (up to 2× within minutes) hit both alike. Prints each build's
// step times and the median of the per-pair ratios B/A.
import { Command } from 'commander';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { type Row, printTable, quantile, writeJson } from './report.js';

const program = new Command('bench:ab')
  .description('interleaved A/B of the tiny training step between two builds (dist folders)')
  .argument('<a>', 'the baseline build: a dist/ folder')
  .argument('<b>', 'the build to compare: a dist/ folder')
  .option('--steps <n>', 'timed steps of each build', '80')
  .option('--workers <n>', 'worker threads of each build', '2')
  .option('--json <file>', 'also write the rows as a JSON array')
  .parse();
const [distA, distB] = program.args as [string, string];
const options = program.opts<{ steps: string; workers: string; json?: string }>();
const steps = Number(options.steps), workers = Number(options.workers);
if (!Number.isInteger(steps) || steps < 2) program.error(`--steps: '${options.steps}' is not an integer ≥ 2`);
if (!Number.isInteger(workers) || workers < 1) program.error(`--workers: '${options.workers}' is not a positive integer`);

interface Build { name: string; step: () => Promise<void>; close: () => Promise<void>; ms: number[] }

/** One build's `tiny` training step, from that build's own bench/suites.js. */
async function load(dist: string): Promise<Build> {
  const suites = (await import(pathToFileURL(resolve(dist, 'bench/suites.js')).href)) as typeof import('./suites.js');
  const trainer = await suites.trainStepper('tiny', workers);
  return { name: dist, ms: [], step: trainer.step, close: trainer.close };
}

const builds = [await load(distA), await load(distB)] as const;
const warmUp = 5;
for (let i = 0; i < steps + warmUp; i++) {
  for (const build of i % 2 ? builds : [...builds].reverse()) { // alternate which goes first
    const start = performance.now();
    await build.step();
    if (i >= warmUp) build.ms.push(performance.now() - start);
  }
  if ((i + 1) % 20 === 0) console.error(`${i + 1}/${steps + warmUp} pairs`);
}
for (const build of builds) await build.close();

const ratios = builds[1].ms.map((ms, i) => ms / builds[0].ms[i]!);
const rows: Row[] = builds.map((b) => ({
  build: b.name, median_ms: quantile(b.ms, 0.5), p25_ms: quantile(b.ms, 0.25), mean_ms: b.ms.reduce((s, x) => s + x, 0) / b.ms.length, steps,
}));
printTable(rows, ['build', 'median_ms', 'p25_ms', 'mean_ms', 'steps']);
console.log(`B/A step time, median of ${steps} pairs: ${quantile(ratios, 0.5).toFixed(3)} (quartiles ${quantile(ratios, 0.25).toFixed(3)}–${quantile(ratios, 0.75).toFixed(3)})`);
if (options.json) writeJson(options.json, [...rows, { build: 'B/A', median_ratio: quantile(ratios, 0.5), steps }]);
