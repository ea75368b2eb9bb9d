// `npm run bench:kernels`: single-thread GEMM GFLOP/s, every form, every WebAssembly variant, at
// the square shapes and the expert FFN's shapes; every gpu.js mode this machine has at 512³ and
// the first expert shape; the plain-TypeScript reference at 256³ for scale; and, where a Python has
// torch, PyTorch's GEMM at each shape right after ours (bench/anchors/gemm.py), every row's
// vs_pytorch its GFLOP/s over PyTorch's for the same form and shape. Everything runs side by
// side in one run, so the ratios are fair on a noisy machine.
import { Command, Option } from 'commander';
import { Arena, GEMM_FORMS, type GemmForm, type Kernels, createKernels } from '../kernels/index.js';
import { WASM_VARIANTS, kernelModule } from '../kernels/wasm/backend.js';
import { type Row, printTable, writeJson } from './report.js';
import { measureGemm, measureGpujsGemm } from './suites.js';
import { describeProbe, loadGpujs } from '../kernels/gpujs/device.js';
import { addVsPytorch, anchorPython, anchorRows } from './pytorch.js';

/** m×k×n: C[m×n] = A[m×k]·B[k×n]. The expert shapes are a 640-token block through d 512 ↔ d_ff 2048. */
const SHAPES: [number, number, number][] = [
  [256, 256, 256], [512, 512, 512], [1024, 1024, 1024], [640, 512, 2048], [640, 2048, 512],
];

const program = new Command('bench:kernels')
  .description('GEMM GFLOP/s per form and backend, single thread')
  .option('--json <file>', 'also write the rows as a JSON array')
  .addOption(new Option('--max-time <seconds>', 'time per benchmark').default(1).argParser(Number))
  .option('--quick', 'only 512³ and the expert shapes')
  .option('--no-gpujs', 'leave out the gpu.js modes (their calls take seconds each in the CPU modes)')
  .option('--no-pytorch', 'leave out the PyTorch anchor')
  .parse();
const options = program.opts<{ json?: string; maxTime: number; quick?: boolean; gpujs: boolean; pytorch: boolean }>();

const show = (row: Row): Row => {
  console.log(`${String(row.backend).padEnd(18)} ${row.form} ${row.m}×${row.k}×${row.n}: ${(row.gflops as number).toFixed(1)} GFLOP/s`);
  return row;
};
const measure = (kernels: Kernels, form: GemmForm, m: number, k: number, n: number, maxTime: number): Row =>
  show(measureGemm(kernels, form, m, k, n, maxTime));

const backends: Kernels[] = WASM_VARIANTS.filter((v) => kernelModule(v))
  .map((variant) => createKernels({ backend: 'wasm', variant, arena: new Arena(64 * 1024 * 1024) }));
const shapes = options.quick ? SHAPES.filter(([m]) => m === 512 || m === 640) : SHAPES;
const torch = anchorPython(options.pytorch);
const rows: Row[] = [];
for (const [m, k, n] of shapes) {
  for (const form of GEMM_FORMS) for (const kernels of backends) rows.push(measure(kernels, form, m, k, n, options.maxTime));
  const args = ['--shapes', `${m}x${k}x${n}`, '--forms', GEMM_FORMS.join(','), '--max-time', String(options.maxTime), '--threads', '1'];
  rows.push(...(await anchorRows(torch, 'gemm.py', args)).map(show));
}
if (!options.quick) rows.push(measure(createKernels({ backend: 'reference' }), 'nn', 256, 256, 256, options.maxTime));
if (options.gpujs) {
  const { probe } = await loadGpujs();
  console.log(describeProbe(probe));
  for (const mode of probe.modes) {
    for (const [m, k, n] of [[512, 512, 512], [640, 512, 2048]] as const) {
      for (const form of GEMM_FORMS) rows.push(show(await measureGpujsGemm(mode, form, m, k, n, options.maxTime)));
    }
  }
}

addVsPytorch(rows, ['form', 'm', 'k', 'n', 'threads'], 'gflops');
console.log();
printTable(rows, ['backend', 'form', 'm', 'k', 'n', 'threads', 'gflops', 'gflops_best', 'vs_pytorch', 'ms', 'rme_pct']);
// Does the fused multiply-add pay? The same shape and form, relaxed over plain SIMD.
const speedups = rows.filter((r) => r.backend === 'wasm-relaxed-simd').map((r) => {
  const plain = rows.find((p) => p.backend === 'wasm-simd' && p.form === r.form && p.m === r.m && p.k === r.k && p.n === r.n);
  return plain ? (r.gflops as number) / (plain.gflops as number) : NaN;
}).filter((x) => !Number.isNaN(x));
if (speedups.length) {
  console.log(`\nrelaxed SIMD (FMA) over plain SIMD: ${Math.min(...speedups).toFixed(2)}× to ${Math.max(...speedups).toFixed(2)}×`);
}
if (options.json) writeJson(options.json, rows);
