// `switchyard bench`: the quick suite (or --full) with a progress bar, one table, and --json.
import { availableParallelism } from 'node:os';
import { SingleBar } from 'cli-progress';
import { createKernels } from '../kernels/index.js';
import { type Row, printTable, writeJson } from '../bench/report.js';
import { measureGemm, measureGeneration, measureGpujsGemm, measureSwitchStep, measureTrainStep } from '../bench/suites.js';
import { describeProbe, loadGpujs } from '../kernels/gpujs/device.js';

export async function benchCommand(o: { json?: string; full?: boolean }): Promise<void> {
  const cores = availableParallelism();
  const workerCounts = Array.from({ length: cores }, (_, i) => i + 1);
  const kernels = createKernels();
  const t = o.full ? 2 : 0.5;
  const { probe } = await loadGpujs();
  const gpujsShapes: [number, number, number][] = o.full ? [[512, 512, 512], [640, 512, 2048]] : [[512, 512, 512]];
  const gpujsForms = o.full ? (['nn', 'nt', 'tn'] as const) : (['nn'] as const);
  const jobs: [string, () => Row | Promise<Row>][] = [
    ...(['nn', 'nt', 'tn'] as const).map((form) => [`GEMM ${form} 512³`, () => measureGemm(kernels, form, 512, 512, 512, t)] as [string, () => Row]),
    ...(o.full ? (['nn', 'nt', 'tn'] as const).flatMap((form) => [
      [`GEMM ${form} 640×512×2048`, () => measureGemm(kernels, form, 640, 512, 2048, t)],
      [`GEMM ${form} 640×2048×512`, () => measureGemm(kernels, form, 640, 2048, 512, t)],
    ] as [string, () => Row][]) : []),
    ...probe.modes.flatMap((mode) => gpujsShapes.flatMap(([m, k, n]) => gpujsForms.map((form) =>
      [`GEMM ${form} ${m === k && k === n ? `${m}³` : `${m}×${k}×${n}`}, gpu.js ${mode}`, () => measureGpujsGemm(mode, form, m, k, n, t)] as [string, () => Promise<Row>]))),
    ...workerCounts.map((w) => [`Switch layer SMALL, ${w} worker${w > 1 ? 's' : ''}`, () => measureSwitchStep('SMALL', w, 2 * t)] as [string, () => Promise<Row>]),
    ...(o.full ? workerCounts.map((w) => [`Switch layer MEDIUM, ${w} worker${w > 1 ? 's' : ''}`, () => measureSwitchStep('MEDIUM', w, 4 * t)] as [string, () => Promise<Row>]) : []),
    ...(o.full ? [[`Switch layer SMALL, ${cores} workers, experts on gpu.js ${probe.modes[0]}`,
      () => measureSwitchStep('SMALL', cores, 2 * t, 'gpujs')] as [string, () => Promise<Row>]] : []),
    [`training step, tiny, ${cores} workers`, () => measureTrainStep('tiny', cores, 2 * t)],
    ...(o.full ? [[`training step, small, ${cores} workers`, () => measureTrainStep('small', cores, 4 * t)] as [string, () => Promise<Row>]] : []),
    ['generation, tiny', () => measureGeneration('tiny', 100)],
  ];
  const bar = new SingleBar({ format: '{bar} {value}/{total} {name}', barsize: 20, hideCursor: true, noTTYOutput: true, notTTYSchedule: 5000 });
  bar.start(jobs.length, 0, { name: jobs[0]![0] });
  const rows: Row[] = [];
  for (const [i, [name, run]] of jobs.entries()) {
    bar.update(i, { name });
    rows.push({ name, ...(await run()) });
  }
  bar.update(jobs.length, { name: 'done' });
  bar.stop();
  const shown = rows.map((r) => ({
    benchmark: r.name!, throughput: r.gflops !== undefined ? `${(r.gflops as number).toFixed(1)} GFLOP/s` : `${Math.round(r.tokens_per_s as number)} tokens/s`,
    best: r.gflops_best !== undefined ? `${(r.gflops_best as number).toFixed(1)} GFLOP/s` : r.best_tokens_per_s !== undefined ? `${Math.round(r.best_tokens_per_s as number)} tokens/s` : '',
    ms: (r.ms ?? r.step_ms ?? r.ms_per_token) as number,
  }));
  printTable(shown, ['benchmark', 'throughput', 'best', 'ms']);
  console.log(`backend ${kernels.name}, ${cores} cores; ${describeProbe(probe)}`);
  if (o.json) writeJson(o.json, rows.map((r) => ({ backend: kernels.name, ...r })));
}
