// `npm run bench:engine`: one Switch layer training step (forward + backward with the SPEC losses,
// no optimizer) through the engine, at SMALL and MEDIUM, with 1 and 2 (or --workers) workers;
// then, per shape, each worker count against one worker, interleaved, for the scaling. Where a
// Python has torch, PyTorch's eager step (bench/anchors/switch_step.py) on as many threads as each
// worker count right after ours, and our rows' vs_pytorch: our tokens/s over PyTorch's.
import { Command } from 'commander';
import { type Row, printTable, writeJson } from './report.js';
import { SHAPES, type ShapeName, interleavedScaling, measureSwitchStep, switchStepper } from './suites.js';
import { addVsPytorch, anchorPython, anchorRows } from './pytorch.js';

const program = new Command('bench:engine')
  .description('Switch layer training steps through the engine: tokens/s, overhead, bytes posted, worker busy/idle')
  .option('--json <file>', 'also write the rows as a JSON array')
  .option('--workers <list>', 'comma-separated worker counts', '1,2')
  .option('--shapes <list>', 'comma-separated shapes (SMALL, MEDIUM)', 'SMALL,MEDIUM')
  .option('--max-time <seconds>', 'time per configuration', '5')
  .option('--scaling-time <seconds>', 'time per interleaved scaling measurement (0: skip)', '30')
  .option('--no-pytorch', 'leave out the PyTorch anchor')
  .parse();
const options = program.opts<{ json?: string; workers: string; shapes: string; maxTime: string; scalingTime: string; pytorch: boolean }>();
const workerCounts = options.workers.split(',').map(Number);
const shapes = options.shapes.split(',') as ShapeName[];
for (const s of shapes) if (!(s in SHAPES)) program.error(`unknown shape '${s}' (use ${Object.keys(SHAPES).join(', ')})`);
for (const [name, v] of [['--max-time', options.maxTime], ['--scaling-time', options.scalingTime]]) if (!(Number(v) >= 0)) program.error(`${name}: '${v}' is not a number of seconds`);
for (const w of workerCounts) if (!Number.isInteger(w) || w < 1) program.error(`--workers: '${w}' is not a positive integer`);

const torch = anchorPython(options.pytorch);
const rows: Row[] = [];
for (const shape of shapes) {
  for (const workers of workerCounts) {
    const row = await measureSwitchStep(shape, workers, Number(options.maxTime));
    console.log(`${shape} × ${workers} worker(s): ${(row.tokens_per_s as number).toFixed(0)} tokens/s`);
    rows.push(row);
  }
  const { tokens, dModel, dFF, numExperts } = SHAPES[shape];
  for (const threads of workerCounts) {
    const args = ['--tokens', tokens, '--d-model', dModel, '--d-ff', dFF, '--experts', numExperts, '--threads', threads, '--max-time', options.maxTime].map(String);
    for (const row of await anchorRows(torch, 'switch_step.py', args)) {
      console.log(`${shape} × ${threads} thread(s), PyTorch: ${(row.tokens_per_s as number).toFixed(0)} tokens/s`);
      rows.push({ ...row, shape, workers: threads });
    }
  }
}
addVsPytorch(rows, ['shape', 'workers'], 'tokens_per_s');
console.log();
printTable(rows, ['shape', 'backend', 'kernels', 'workers', 'tokens_per_s', 'best_tokens_per_s', 'vs_pytorch', 'step_ms', 'overhead_fraction', 'messaging_fraction', 'routing_fraction', 'bytes_posted', 'busy_ms', 'idle_ms', 'stolen_chunks', 'samples']);
const scalingTime = Number(options.scalingTime);
if (scalingTime > 0 && workerCounts.some((w) => w > 1)) {
  console.log('\nScaling, each worker count against one worker, steps interleaved (median of the per-pair ratios):');
  for (const shape of shapes) {
    for (const workers of workerCounts.filter((w) => w > 1)) {
      const one = await switchStepper(shape, 1), many = await switchStepper(shape, workers);
      try {
        const r = await interleavedScaling(one, many, scalingTime);
        const row = rows.find((x) => x.shape === shape && x.workers === workers && x.backend !== 'pytorch')!;
        Object.assign(row, { scaling_vs_1_worker: r.scaling, scaling_q1: r.scaling_q1, scaling_q3: r.scaling_q3, contention: r.contention, scaling_pairs: r.pairs });
        console.log(`${shape}: ${workers} workers run at ${(r.scaling as number).toFixed(2)}× one worker (quartiles ${(r.scaling_q1 as number).toFixed(2)}–${(r.scaling_q3 as number).toFixed(2)}, ${r.pairs} pairs); `
          + `their summed busy time is ${(r.contention as number).toFixed(2)}× one worker's for the same step (the host's contention between cores)`);
      } finally {
        await one.close();
        await many.close();
      }
    }
  }
}
if (options.json) writeJson(options.json, rows);
