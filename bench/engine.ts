// `npm run bench:engine`: one Switch layer training step (forward + backward with the SPEC losses,
// no optimizer) through the engine, at SMALL and MEDIUM, with 1 and 2 (or --workers) workers.
import { Command } from 'commander';
import { type Row, printTable, writeJson } from './report.js';
import { SHAPES, type ShapeName, measureSwitchStep } from './suites.js';

const program = new Command('bench:engine')
  .description('Switch layer training steps through the engine: tokens/s, overhead, bytes posted, worker busy/idle')
  .option('--json <file>', 'also write the rows as a JSON array')
  .option('--workers <list>', 'comma-separated worker counts', '1,2')
  .option('--shapes <list>', 'comma-separated shapes (SMALL, MEDIUM)', 'SMALL,MEDIUM')
  .option('--max-time <seconds>', 'time per configuration', '5')
  .parse();
const options = program.opts<{ json?: string; workers: string; shapes: string; maxTime: string }>();
const workerCounts = options.workers.split(',').map(Number);
const shapes = options.shapes.split(',') as ShapeName[];
for (const s of shapes) if (!(s in SHAPES)) program.error(`unknown shape '${s}' (use ${Object.keys(SHAPES).join(', ')})`);
for (const w of workerCounts) if (!Number.isInteger(w) || w < 1) program.error(`--workers: '${w}' is not a positive integer`);

const rows: Row[] = [];
for (const shape of shapes) {
  for (const workers of workerCounts) {
    const row = await measureSwitchStep(shape, workers, Number(options.maxTime));
    console.log(`${shape} × ${workers} worker(s): ${(row.tokens_per_s as number).toFixed(0)} tokens/s`);
    rows.push(row);
  }
}
console.log();
printTable(rows, ['shape', 'workers', 'tokens_per_s', 'best_tokens_per_s', 'step_ms', 'overhead_fraction', 'messaging_fraction', 'bytes_posted', 'busy_ms', 'idle_ms', 'samples']);
for (const shape of shapes) {
  const one = rows.find((r) => r.shape === shape && r.workers === 1);
  for (const r of rows.filter((r) => r.shape === shape && r.workers !== 1)) {
    if (one) console.log(`${shape}: ${r.workers} workers run at ${((r.tokens_per_s as number) / (one.tokens_per_s as number)).toFixed(2)}× one worker's tokens/s`);
  }
}
if (options.json) writeJson(options.json, rows);
