// `npm run bench:engine`: one Switch layer training step (forward + backward with the SPEC losses,
// no optimizer) through the engine, at SMALL and MEDIUM, with 1 and 2 (or --workers) workers.
import Benchmark from 'benchmark';
import { Command } from 'commander';
import { SwitchEngine } from '../engine/switch-engine.js';
import { Rng } from '../model/rng.js';
import { type Row, printTable, writeJson } from './report.js';

const SHAPES = {
  SMALL: { tokens: 1024, dModel: 128, dFF: 512, numExperts: 8 },
  MEDIUM: { tokens: 4096, dModel: 512, dFF: 2048, numExperts: 8 },
} as const;

const program = new Command('bench:engine')
  .description('Switch layer training steps through the engine: tokens/s, overhead, bytes posted, worker busy/idle')
  .option('--json <file>', 'also write the rows as a JSON array')
  .option('--workers <list>', 'comma-separated worker counts', '1,2')
  .option('--shapes <list>', 'comma-separated shapes (SMALL, MEDIUM)', 'SMALL,MEDIUM')
  .option('--max-time <seconds>', 'time per configuration', '5')
  .parse();
const options = program.opts<{ json?: string; workers: string; shapes: string; maxTime: string }>();
const workerCounts = options.workers.split(',').map(Number);
const shapes = options.shapes.split(',') as (keyof typeof SHAPES)[];
for (const s of shapes) if (!(s in SHAPES)) program.error(`unknown shape '${s}' (use ${Object.keys(SHAPES).join(', ')})`);
for (const w of workerCounts) if (!Number.isInteger(w) || w < 1) program.error(`--workers: '${w}' is not a positive integer`);

async function measure(shape: keyof typeof SHAPES, workers: number): Promise<Row> {
  const { tokens, ...layer } = SHAPES[shape];
  const engine = new SwitchEngine({ ...layer, capacityFactor: 1.25, activation: 'relu', workers, seed: 1 });
  const rng = new Rng('bench-engine', shape);
  const x = rng.fillNormal(new Float32Array(tokens * layer.dModel));
  const dy = rng.fillNormal(new Float32Array(tokens * layer.dModel));
  const timings: ReturnType<SwitchEngine['lastTiming']>[] = [];
  let step = 0;
  const trainStep = async () => {
    await engine.forward(x, tokens, { training: true, step: step++ });
    await engine.backward(dy);
    timings.push(engine.lastTiming());
  };
  await trainStep(); // threads start and compile their kernels
  timings.length = 0;
  const bench = new Benchmark(`${shape} × ${workers}`, {
    defer: true, maxTime: Number(options.maxTime), minSamples: 3,
    fn: (deferred: { resolve(): void }) => { trainStep().then(() => deferred.resolve(), (e) => { console.error(e); process.exit(1); }); },
  });
  await new Promise((resolve) => bench.on('complete', resolve).run({ async: true }));
  await engine.close();
  const mean = (f: (t: typeof timings[0]) => number) => timings.reduce((s, t) => s + f(t), 0) / timings.length;
  const stepMs = bench.stats.mean * 1e3;
  const busy = Array.from({ length: workers }, (_, w) => mean((t) => t.workers[w]!.busyMs));
  const idle = Array.from({ length: workers }, (_, w) => mean((t) => t.workers[w]!.idleMs));
  const row: Row = {
    shape, workers, tokens_per_s: tokens / bench.stats.mean, step_ms: stepMs,
    best_tokens_per_s: tokens / Math.min(...bench.stats.sample),
    overhead_fraction: mean((t) => t.overheadFraction),
    messaging_fraction: mean((t) => t.messagingFraction),
    bytes_posted: Math.round(mean((t) => t.bytesPosted)),
    busy_ms: busy.map((b) => b.toFixed(1)).join('/'),
    idle_ms: idle.map((b) => b.toFixed(1)).join('/'),
    samples: bench.stats.sample.length,
  };
  console.log(`${shape} × ${workers} worker(s): ${(row.tokens_per_s as number).toFixed(0)} tokens/s`);
  return row;
}

const rows: Row[] = [];
for (const shape of shapes) for (const workers of workerCounts) rows.push(await measure(shape, workers));
console.log();
printTable(rows, ['shape', 'workers', 'tokens_per_s', 'best_tokens_per_s', 'step_ms', 'overhead_fraction', 'messaging_fraction', 'bytes_posted', 'busy_ms', 'idle_ms', 'samples']);
for (const shape of shapes) {
  const one = rows.find((r) => r.shape === shape && r.workers === 1);
  for (const r of rows.filter((r) => r.shape === shape && r.workers !== 1)) {
    if (one) console.log(`${shape}: ${r.workers} workers run at ${((r.tokens_per_s as number) / (one.tokens_per_s as number)).toFixed(2)}× one worker's tokens/s`);
  }
}
if (options.json) writeJson(options.json, rows);
