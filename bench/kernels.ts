// `npm run bench:kernels`: single-thread GEMM GFLOP/s, every form, every native ISA build this CPU
// runs and every WebAssembly variant, at the square shapes, the expert FFN's shapes and the small
// shapes of the tiny preset; a few elementwise and row kernels per backend; every gpu.js mode this
// machine has at 512³ and the first expert shape; the plain-TypeScript reference at 256³ for scale.
// Where a Python has torch, PyTorch's GEMM at each shape right after ours (bench/anchors/gemm.py),
// every row's vs_pytorch its GFLOP/s over PyTorch's for the same form and shape. Everything runs
// side by side in one run, so the ratios are fair on a noisy machine.
// --cpu-time times by the process's CPU time instead of the wall clock: on a shared machine a
// neighbour taking the core halves wall-clock figures, not CPU-time ones (docs/kernels.md).
import Benchmark from 'benchmark';
import { Command, Option } from 'commander';
import { Arena, GEMM_FORMS, type GemmForm, type Kernels, createKernels } from '../kernels/index.js';
import { NativeKernels, loadNative } from '../kernels/native/backend.js';
import { WASM_VARIANTS, kernelModule } from '../kernels/wasm/backend.js';
import { Rng } from '../model/rng.js';
import { type Row, printTable, writeJson } from './report.js';
import { measureGemm, measureGpujsGemm } from './suites.js';
import { describeProbe, loadGpujs } from '../kernels/gpujs/device.js';
import { addVsPytorch, anchorPython, anchorRows } from './pytorch.js';

/**
 * m×k×n: C[m×n] = A[m×k]·B[k×n]. The expert shapes are a 640-token block through d 512 ↔ d_ff 2048;
 * the small ones the tiny preset's (d 128, d_ff 344, 64-token heads and blocks).
 */
const SHAPES: [number, number, number][] = [
  [256, 256, 256], [512, 512, 512], [1024, 1024, 1024], [640, 512, 2048], [640, 2048, 512],
  [64, 128, 344], [256, 128, 512], [1024, 128, 512],
];
/** An attention head of the tiny preset: 64 positions, head width 32. */
const ATTENTION: [number, number, number][] = [[64, 32, 64], [64, 64, 32]];
const QUICK: [number, number, number][] = [[512, 512, 512], [640, 512, 2048], [640, 2048, 512], [64, 128, 344]];

const program = new Command('bench:kernels')
  .description('GEMM GFLOP/s per form and backend, single thread; elementwise and row kernels per backend')
  .option('--json <file>', 'also write the rows as a JSON array')
  .addOption(new Option('--max-time <seconds>', 'time per benchmark').default(1).argParser(Number))
  .option('--quick', 'only 512³, the expert shapes and 64×128×344')
  .option('--no-gpujs', 'leave out the gpu.js modes (their calls take seconds each in the CPU modes)')
  .option('--no-pytorch', 'leave out the PyTorch anchor')
  .option('--cpu-time', 'time by process CPU time, not Benchmark.js\'s wall clock (PyTorch too)')
  .parse();
const options = program.opts<{ json?: string; maxTime: number; quick?: boolean; gpujs: boolean; pytorch: boolean; cpuTime?: boolean }>();

/** Seconds per call of `run` by process CPU time, over `seconds` of it: the mean and the fastest batch. */
function cpuTime(run: () => void, seconds: number): { mean: number; best: number } {
  const now = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1e6; };
  run();
  let calls = 1, spent = 0;
  while (spent < 0.01) { // batches of at least 10 ms, above the clock's resolution
    const start = now();
    for (let i = 0; i < calls; i++) run();
    spent = now() - start;
    if (spent < 0.01) calls *= 2;
  }
  let total = 0, count = 0, best = Infinity;
  for (const end = now() + seconds; now() < end;) {
    const start = now();
    for (let i = 0; i < calls; i++) run();
    const each = (now() - start) / calls;
    total += each; count++; best = Math.min(best, each);
  }
  return { mean: total / count, best };
}

const show = (row: Row): Row => {
  const figure = row.gflops !== undefined ? `${(row.gflops as number).toFixed(1)} GFLOP/s` : `${(row.gb_s as number).toFixed(2)} GB/s`;
  console.log(`${String(row.backend).padEnd(18)} ${row.form ?? row.kernel} ${row.m ? `${row.m}×${row.k}×${row.n}` : row.size}: ${figure}`);
  return row;
};
const measure = (kernels: Kernels, form: GemmForm, m: number, k: number, n: number, maxTime: number): Row =>
  show(options.cpuTime ? gemmByCpuTime(kernels, form, m, k, n, maxTime) : measureGemm(kernels, form, m, k, n, maxTime));

function gemmByCpuTime(kernels: Kernels, form: GemmForm, m: number, k: number, n: number, seconds: number): Row {
  const rng = new Rng('bench', m, k, n);
  const a = rng.fillNormal(kernels.allocF32(m * k)), b = rng.fillNormal(kernels.allocF32(k * n)), c = kernels.allocF32(m * n);
  const { mean, best } = cpuTime(() => kernels.gemm(form, m, n, k, a, b, c, false), seconds);
  for (const x of [a, b, c]) kernels.free(x);
  const flop = 2 * m * n * k;
  return { suite: 'kernels', backend: kernels.name, form, m, k, n, threads: 1, gflops: flop / mean / 1e9, gflops_best: flop / best / 1e9, ms: mean * 1e3, clock: 'cpu' };
}

const native = loadNative();
if (!native.ok) console.log(`native kernels not measured: ${native.reason}`);
const backends: Kernels[] = [
  ...(native.ok ? native.addon.isas().map((isa) => new NativeKernels(new Arena(64 * 1024 * 1024), isa)) : []),
  ...WASM_VARIANTS.filter((v) => kernelModule(v)).map((variant) => createKernels({ backend: 'wasm', variant, arena: new Arena(64 * 1024 * 1024) })),
];
const shapes = options.quick ? QUICK : [...SHAPES, ...ATTENTION];
const torch = anchorPython(options.pytorch);
const rows: Row[] = [];
for (const [m, k, n] of shapes) {
  for (const form of GEMM_FORMS) for (const kernels of backends) rows.push(measure(kernels, form, m, k, n, options.maxTime));
  const args = ['--shapes', `${m}x${k}x${n}`, '--forms', GEMM_FORMS.join(','), '--max-time', String(options.maxTime), '--threads', '1',
    ...(options.cpuTime ? ['--cpu-time'] : [])];
  rows.push(...(await anchorRows(torch, 'gemm.py', args)).map(show));
}
if (!options.quick) rows.push(measure(createKernels({ backend: 'reference' }), 'nn', 256, 256, 256, options.maxTime));

// Elementwise and row kernels at a training step's sizes (the tiny preset: 768 tokens × 128, × 344
// in the FFN, 64-wide attention rows): bytes read and written per second.
const elementwise: [string, string, number, (k: Kernels, a: Float32Array[], index: Int32Array) => void, number][] = [
  ['add', '768×128', 768 * 128, (k, [x, y, z]) => k.add(x!, y!, z!), 3],
  ['gelu', '768×344', 768 * 344, (k, [x, y]) => k.gelu(x!, y!), 2],
  ['geluBackward', '768×344', 768 * 344, (k, [x, dy, dx]) => k.geluBackward(x!, dy!, dx!), 3],
  ['swiglu', '768×344', 768 * 344, (k, [g, u, h]) => k.swiglu(g!, u!, h!), 3],
  ['swigluBackward', '768×344', 768 * 344, (k, [g, u, dh, dg, du]) => k.swigluBackward(g!, u!, dh!, dg!, du!), 5],
  ['softmaxRows', '3072×64', 3072 * 64, (k, [x, y, l]) => k.softmaxRows(x!, y!, 3072, 64, l!), 2],
  ['softmaxBackwardRows', '3072×64', 3072 * 64, (k, [p, dp, out]) => k.softmaxBackwardRows(p!, dp!, out!, 3072, 64, 0.125), 3],
  ['layerNorm', '768×128', 768 * 128, (k, [x, o, g, b, r, m]) => k.layerNorm(x!, g!, b!, o!, r!, m!, 768, 128, 1e-5), 2],
  ['layerNormBackward', '768×128', 768 * 128, (k, [x, dy, dx, g, r, m]) => k.layerNormBackward(x!, g!, r!, m!, dy!, dx!, g!, g!, 768, 128), 3],
  ['rmsNorm', '768×128', 768 * 128, (k, [x, o, g, r]) => k.rmsNorm(x!, g!, o!, r!, 768, 128, 1e-6), 2],
  ['rmsNormBackward', '768×128', 768 * 128, (k, [x, dy, dx, g, dg, r]) => k.rmsNormBackward(x!, g!, r!, dy!, dx!, dg!, 768, 128), 3],
  ['rope', '768×128', 768 * 128, (k, [x, c, s]) => k.rope(x!, 768, 128, 4, 32, 64, c!, s!, false), 2],
  ['gatherRows', '768×128', 768 * 128, (k, [src, out], index) => k.gatherRows(src!, index, 768, 128, out!), 2],
  ['adamw', '1M', 1 << 20, (k, [w, g, m, v]) => k.adamw(w!, g!, m!, v!, HYPER), 7],
  ['sumSquares', '1M', 1 << 20, (k, [x]) => { k.sumSquares(x!); }, 1],
];
const HYPER = { lr: 1e-3, beta1: 0.9, beta2: 0.99, correct1: 0.5, correct2: 0.3, decay: 0.9999, clip: 1, eps: 1e-8 };
for (const [kernel, size, n, run, streams] of elementwise) {
  for (const kernels of backends) {
    const rng = new Rng('bench', kernel);
    const arrays = Array.from({ length: 6 }, () => rng.fillUniform(kernels.allocF32(n), 0.1, 2)); // positive: valid variances, scales
    const index = kernels.allocI32(768);
    index.forEach((_, i) => { index[i] = (i * 7) % 768; });
    let mean: number, rme: number | undefined;
    if (options.cpuTime) {
      mean = cpuTime(() => run(kernels, arrays, index), options.maxTime / 2).mean;
    } else {
      const bench = new Benchmark(`${kernels.name} ${kernel}`, () => run(kernels, arrays, index), { maxTime: options.maxTime / 2, minSamples: 5 });
      bench.run();
      mean = bench.stats.mean;
      rme = bench.stats.rme;
    }
    for (const a of [...arrays, index]) kernels.free(a);
    rows.push(show({
      suite: 'kernels', backend: kernels.name, kernel, size, threads: 1, ms: mean * 1e3, gb_s: (streams * 4 * n) / mean / 1e9,
      ...(rme !== undefined && { rme_pct: rme }),
    }));
  }
}

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
const gemmRows = rows.filter((r) => r.gflops !== undefined);
printTable(gemmRows, ['backend', 'form', 'm', 'k', 'n', 'threads', 'gflops', 'gflops_best', 'vs_pytorch', 'ms', 'rme_pct']);
console.log();
printTable(rows.filter((r) => r.kernel !== undefined), ['backend', 'kernel', 'size', 'ms', 'gb_s', 'rme_pct']);

/** The range of `faster`'s GEMM speed over `slower`'s, matched by shape and form. */
function speedup(faster: string, slower: string): string | undefined {
  const ratios = gemmRows.filter((r) => r.backend === faster).map((r) => {
    const base = gemmRows.find((p) => p.backend === slower && p.form === r.form && p.m === r.m && p.k === r.k && p.n === r.n);
    return base ? (r.gflops as number) / (base.gflops as number) : NaN;
  }).filter((x) => !Number.isNaN(x));
  return ratios.length ? `${Math.min(...ratios).toFixed(2)}× to ${Math.max(...ratios).toFixed(2)}×` : undefined;
}
console.log();
for (const [faster, slower, what] of [
  ['wasm-relaxed-simd', 'wasm-simd', 'relaxed SIMD (FMA) over plain SIMD'],
  ...backends.filter((b) => b.name.startsWith('native-')).map((b) => [b.name, b.name === 'native-portable' ? 'wasm-simd' : 'wasm-relaxed-simd',
    `${b.name} over ${b.name === 'native-portable' ? 'wasm-simd' : 'wasm-relaxed-simd'} (the same bits)`]),
] as [string, string, string][]) {
  const range = speedup(faster, slower);
  if (range) console.log(`${what}: ${range}`);
}
if (options.json) writeJson(options.json, rows);
