// `npm run experiment:switch-vs-dense -- --data mix`: the Switch Transformer's claim, that at equal
// FLOPs per token more experts reach a given quality in fewer steps, tested where it can hold: a
// 71 MB corpus seen less than once, several million tokens a run (bench/experiments/design.ts).
//
// Every run shares the data order, steps, batch and learning-rate schedule: dense; dense with the
// parameters of Switch E = 8 (every FFN 4.5× as wide, 4.5× the FFN FLOPs: the upper bound); Switch
// top-1 with E = 2 … 64 at capacity factor 1.25, and dropless at E = 8 and 64; top-2 at E = 8; then
// two more seeds of dense and of the best Switch model. Runs go in order of what they tell, each in
// its own run folder, and resume where they stopped: rerun the same command after an interruption.
// After every run, results.json, report.html and the SVG curves are written again from the logs.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { train } from '../../app/train.js';
import { type LogLine, type ReportRun, readRun, renderReport } from '../../app/report.js';
import { readRunConfig } from '../../app/run-folder.js';
import { machine } from '../../app/machine.js';
import { lineChart, type Series } from '../../app/svg.js';
import type { TokenizerChoice } from '../../app/tokenizer.js';
import { printTable } from '../report.js';
import { MODEL, type RunSpec, SCHEDULE, SEEDS, dense, switchRun, trainingFlopsPerToken, wideDense } from './design.js';

const program = new Command('experiment:switch-vs-dense')
  .description('dense against Switch Transformers at equal FLOPs per token, on a named corpus; resumable (rerun the same command)')
  .option('--data <name>', 'the corpus (a name from data/corpora, built with `npm run corpus`, or a file)', 'mix')
  .option('--tokenizer <kind>', 'char, byte, gpt2 or gpt2-N (gpt2-1024: docs/corpora.md)', 'gpt2-1024')
  .option('--steps <n>', 'training steps per run (batch 16 × 128 tokens)', '2000')
  .option('--lr <x>', 'peak learning rate, every run (cosine to a tenth of it; the pilots\' best for dense and Switch alike)', '2e-3')
  .option('--aux <x>', 'load-balancing coefficient α of every Switch run', '0.01')
  .option('--eval-every <n>', 'validation every n steps (20 batches)', '100')
  .option('--out <dir>', 'where the runs, results.json and report.html go', 'runs/switch-vs-dense-mix')
  .option('--only <names>', 'a comma-separated subset of the runs; best-seeds: the two more seeds of the best Switch model among them')
  .option('--skip <names>', 'runs to leave out (e.g. dense-same-params-e8, the most expensive)')
  .option('--workers <n>', 'worker threads per run', '2')
  .option('--report-only', 'write results.json and report.html from the runs there, training nothing')
  .parse();
const o = program.opts<{
  data: string; tokenizer: string; steps: string; lr: string; aux: string; evalEvery: string; out: string; only?: string; skip?: string;
  workers: string; reportOnly?: boolean;
}>();
const positive = (s: string, flag: string, whole = false) => {
  const n = Number(s);
  if (!Number.isFinite(n) || n <= 0 || (whole && !Number.isInteger(n))) program.error(`${flag}: expected ${whole ? 'a whole number' : 'a number'} > 0, got '${s}'`);
  return n;
};
const steps = positive(o.steps, '--steps', true), lr = positive(o.lr, '--lr'), aux = Number(o.aux), evalEvery = positive(o.evalEvery, '--eval-every', true);
if (!(aux >= 0)) program.error(`--aux: expected a number ≥ 0, got '${o.aux}'`);
const only = o.only?.split(','), skip = o.skip?.split(',') ?? [];
const TOKENS_PER_STEP = SCHEDULE.batch! * MODEL.context!;
// The command that trains the runs (a --report-only rendering names the training command, not itself).
const COMMAND = `npm run experiment:switch-vs-dense -- ${process.argv.slice(2).filter((a) => a !== '--report-only').join(' ')}`;

/**
 * The runs before the best Switch model's seeds, most telling first: dense and the experts sweep,
 * dense's seed noise, the same-parameter upper bound (3× the cost of a run), then capacity and routing.
 */
const FIRST: RunSpec[] = [
  dense(), switchRun(8), switchRun(2), switchRun(4), switchRun(16), switchRun(32), switchRun(64),
  dense(SEEDS[1]), dense(SEEDS[2]), wideDense(8),
  switchRun(8, { capacityFactor: null }), switchRun(8, { topK: 2 }), switchRun(64, { capacityFactor: null }),
];
/**
 * After them, the diagnosis of why top-1 does not gain (docs/experiments/switch-vs-dense-mix): top-2
 * with the router's own probabilities as gates, the small gates top-1 has, against top-2's
 * normalised gates, which sum to 1.
 */
const LAST: RunSpec[] = [switchRun(8, { topK: 2, normalizeTopK: false })];

mkdirSync(o.out, { recursive: true });
const progress = (line: string) => {
  const stamped = `${new Date().toISOString()} ${line}`;
  console.log(stamped);
  appendFileSync(join(o.out, 'progress.log'), stamped + '\n');
};

const dirOf = (spec: RunSpec) => join(o.out, spec.name);
function lastLine(spec: RunSpec): LogLine | undefined {
  const file = join(dirOf(spec), 'log.jsonl');
  if (!existsSync(file)) return undefined;
  const lines = readFileSync(file, 'utf8').trim().split('\n').filter(Boolean);
  try {
    return lines.length ? JSON.parse(lines[lines.length - 1]!) as LogLine : undefined;
  } catch {
    return undefined; // a line cut by a kill: the run resumes from its checkpoint
  }
}
const finished = (spec: RunSpec) => (lastLine(spec)?.step ?? 0) >= steps && lastLine(spec)?.val_loss !== undefined;

/** Trains (or finishes) one run; false if it had finished already. */
async function runOne(spec: RunSpec): Promise<boolean> {
  if (finished(spec)) return false;
  const dir = dirOf(spec), resume = existsSync(join(dir, 'checkpoint.safetensors'));
  progress(`${spec.name}: ${resume ? `resuming at step ${lastLine(spec)?.step ?? 0}` : 'starting'} (${steps} steps)`);
  const result = await train({
    out: dir, data: o.data, tokenizer: o.tokenizer as TokenizerChoice, workers: Number(o.workers), checkpointEvery: 100,
    model: { ...MODEL, ...spec.model, ...(spec.experts > 0 && { auxLossCoef: aux }) },
    train: { ...SCHEDULE, steps, evalEvery, learningRate: lr, minLearningRate: lr / 10, seed: spec.seed },
    ...(resume && { resume: true }), signal: stop.signal,
    log: (line) => progress(`${spec.name}: ${line}`),
    onStep: (r) => { if (r.valLoss !== undefined) progress(`${spec.name}: step ${r.step}/${steps}, val ${r.valLoss.toFixed(4)}, ${r.elapsedS.toFixed(0)} s, ${Math.round(r.tokensPerS)} tokens/s`); },
  });
  progress(result.stopped ? `${spec.name}: stopped at step ${result.stepsDone}, checkpoint saved` : `${spec.name}: done, validation loss ${result.valLoss.toFixed(4)}`);
  return true;
}

const chosen = (s: RunSpec) => (!only || only.includes(s.name)) && !skip.includes(s.name);

/** The best top-1 Switch model of the first seed (lowest final validation loss), once every one of them has finished. */
function bestSwitch(): RunSpec | undefined {
  const candidates = FIRST.filter((s) => s.experts > 0 && s.topK === 1 && s.seed === SEEDS[0] && chosen(s));
  if (candidates.length === 0) return undefined;
  if (!candidates.every(finished)) return undefined;
  return candidates.reduce((a, b) => (lastLine(b)!.val_loss! < lastLine(a)!.val_loss! ? b : a));
}

function plan(): RunSpec[] {
  return [...FIRST.filter(chosen), ...(!only || only.includes('best-seeds') ? bestSeeds() : []), ...LAST.filter(chosen)];
}

/** The best Switch model's other seeds, once it is known. */
function bestSeeds(): RunSpec[] {
  const best = bestSwitch();
  return best ? SEEDS.slice(1).map((seed) => switchRun(best.experts, { capacityFactor: best.capacityFactor, seed })) : [];
}

// SIGINT, SIGTERM and SIGHUP stop the current run after its step, with a checkpoint; a second one quits at once.
const stop = new AbortController();
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
  process.on(signal, () => {
    if (stop.signal.aborted) process.exit(130);
    progress(`${signal}: stopping after this step with a checkpoint; rerun the same command to continue`);
    stop.abort();
  });
}

let written = false;
if (!o.reportOnly) {
  progress(`${COMMAND}: ${machine().cpu}, ${machine().cores} cores`);
  for (let done = new Set<string>(); ;) {
    const next = plan().find((s) => !done.has(s.name));
    if (!next || stop.signal.aborted) break;
    if (await runOne(next)) { writeResults(); written = true; }
    done.add(next.name);
  }
  if (!stop.signal.aborted) progress(`all ${plan().length} runs finished`);
}
if (!written) writeResults();

// ---------------------------------------------------------------------------------------------
// Results: results.json, report.html, and the headline curves as SVG.

interface Point { step: number; tokens: number; flops: number; wall_s: number; val_loss: number }

function writeResults(): void {
  const specs = [...FIRST, ...bestSeeds(), ...LAST].filter((s) => existsSync(join(dirOf(s), 'log.jsonl')));
  if (specs.length === 0) return;
  const runs = specs.map((s) => ({ spec: s, report: readRun(dirOf(s), s.name) }));
  const flopsPerToken = (r: ReportRun) => trainingFlopsPerToken(r.model);
  const curve = (r: ReportRun): Point[] => r.log.filter((l) => l.val_loss !== undefined).map((l) => ({
    step: l.step, tokens: l.step * TOKENS_PER_STEP, flops: l.step * TOKENS_PER_STEP * flopsPerToken(r), wall_s: l.elapsed_s, val_loss: l.val_loss!,
  }));
  const done = (r: ReportRun) => r.log[r.log.length - 1]!.step >= steps;
  const denseFinals = runs.filter((r) => r.spec.experts === 0 && !r.spec.sameParams && done(r.report)).map((r) => curve(r.report).at(-1)!);
  const denseFinal = denseFinals.length ? mean(denseFinals.map((p) => p.val_loss)) : NaN;
  const denseWall = denseFinals.length ? mean(denseFinals.map((p) => p.wall_s)) : NaN;
  const best = bestSwitch();

  const results = runs.map(({ spec, report }) => {
    const points = curve(report), final = points.at(-1);
    const reached = points.find((p) => p.val_loss <= denseFinal);
    const windows = report.log.length ? windowed(report.log, evalEvery) : [];
    return {
      name: spec.name, experts: spec.experts, top_k: spec.topK, capacity_factor: spec.experts ? spec.capacityFactor : null, same_params: spec.sameParams,
      seed: spec.seed, steps: report.log[report.log.length - 1]!.step, finished: done(report), tokens: report.log[report.log.length - 1]!.step * TOKENS_PER_STEP,
      val_loss: final?.val_loss ?? null, steps_to_dense_final: reached?.step ?? null, seconds_to_dense_final: reached?.wall_s ?? null,
      speedup_steps: reached ? Number((steps / reached.step).toFixed(3)) : null,
      speedup_seconds: reached && Number.isFinite(denseWall) ? Number((denseWall / reached.wall_s).toFixed(3)) : null,
      wall_s: report.log[report.log.length - 1]!.elapsed_s, flops_per_token: Math.round(flopsPerToken(report)),
      training_flops: report.log[report.log.length - 1]!.step * TOKENS_PER_STEP * flopsPerToken(report),
      parameters: parameterCount(dirOf(spec)), dropped_fraction: mean(report.log.map((l) => l.dropped_fraction)),
      best_switch: best !== undefined && spec.experts === best.experts && spec.capacityFactor === best.capacityFactor && spec.topK === 1,
      lr, aux_loss_coef: spec.experts ? aux : null, data: o.data, tokenizer: o.tokenizer, machine: machine().cpu,
      curves: {
        validation: points,
        /** Mean over each evaluation interval of the training steps' dropped fraction and first-choice load per layer and expert. */
        training: windows,
        /** Each evaluation's routing on the validation batches, per Switch layer (app/routing-stats.ts). */
        routing: report.log.filter((l) => l.routing).map((l) => ({ step: l.step, layers: l.routing })),
      },
    };
  });
  writeFileSync(join(o.out, 'results.json'), JSON.stringify(results, null, 1) + '\n');

  // Curves: dense and the best Switch model as seed means with their spread, the rest as single runs.
  const groups = new Map<string, typeof runs>();
  for (const r of runs) {
    const key = r.spec.name.replace(/-s\d+$/, '');
    groups.set(key, [...(groups.get(key) ?? []), r]);
  }
  const series = (x: (p: Point) => number): Series[] => [...groups].map(([name, members]) => {
    const curves = members.map((m) => curve(m.report));
    const n = Math.min(...curves.map((c) => c.length));
    const at = (i: number) => curves.map((c) => c[i]!);
    return {
      name: members.length > 1 ? `${name} (${members.length} seeds)` : name,
      points: Array.from({ length: n }, (_, i) => [mean(at(i).map(x)), mean(at(i).map((p) => p.val_loss))] as [number, number]),
      ...(members.length > 1 && { band: Array.from({ length: n }, (_, i) => [mean(at(i).map(x)), Math.min(...at(i).map((p) => p.val_loss)), Math.max(...at(i).map((p) => p.val_loss))] as [number, number, number]) }),
    };
  });
  const headline = lineChart(`Validation loss against steps (${o.data}, ${steps} × ${TOKENS_PER_STEP} tokens)`, 'step', 'validation loss (nats per token)', series((p) => p.step), 760, 420);
  const byFlops = lineChart('Validation loss against training FLOPs', 'training FLOPs', 'validation loss', series((p) => p.flops), 760, 420);
  const byWall = lineChart('Validation loss against wall seconds (a shared machine: noisy)', 'seconds', 'validation loss', series((p) => p.wall_s), 760, 420);
  const scaling = lineChart('Final validation loss against the number of experts (top-1, cf 1.25, seed 1)', 'log2(experts)', 'validation loss',
    [{ name: 'Switch', points: results.filter((r) => r.top_k === 1 && r.capacity_factor === 1.25 && r.seed === SEEDS[0] && r.finished).map((r) => [Math.log2(r.experts), r.val_loss!] as [number, number]).sort((a, b) => a[0] - b[0]) },
      { name: 'dense (mean of seeds)', points: Number.isFinite(denseFinal) ? [[1, denseFinal], [6, denseFinal]] : [] }]);
  writeFileSync(join(o.out, 'val-loss.svg'), headline);
  writeFileSync(join(o.out, 'val-loss-flops.svg'), byFlops);

  const rows = results.map((r) => `<tr><td>${r.name}${r.best_switch ? ' (best)' : ''}</td><td>${r.experts || (r.same_params ? 'dense, E = 8\'s parameters' : 'dense')}</td><td>${r.top_k}</td>`
    + `<td>${r.experts ? r.capacity_factor ?? 'dropless' : '—'}</td><td>${r.seed}</td><td>${r.steps}${r.finished ? '' : ' (running)'}</td><td>${(r.parameters / 1e6).toFixed(2)}M</td>`
    + `<td>${(r.flops_per_token / 1e6).toFixed(2)}M</td><td><b>${r.val_loss?.toFixed(4) ?? '—'}</b></td><td>${r.steps_to_dense_final ?? '—'}</td>`
    + `<td>${r.speedup_steps ? `${r.speedup_steps.toFixed(2)}×` : '—'}</td><td>${r.speedup_seconds ? `${r.speedup_seconds.toFixed(2)}×` : '—'}</td>`
    + `<td>${(100 * r.dropped_fraction).toFixed(2)}%</td><td>${Math.round(r.wall_s)}</td></tr>`).join('\n');
  const spread = [...groups].filter(([, m]) => m.length > 1 && m.every((r) => done(r.report))).map(([name, m]) => {
    const finals = m.map((r) => curve(r.report).at(-1)!.val_loss);
    return `<li>${name}: ${finals.map((v) => v.toFixed(4)).join(', ')} (mean ${mean(finals).toFixed(4)}, range ${(Math.max(...finals) - Math.min(...finals)).toFixed(4)})</li>`;
  }).join('\n');
  const before = `<p>Command: <code>${COMMAND}</code>. Every run: the same data order, ${steps} steps of ${SCHEDULE.batch} × ${MODEL.context} tokens, `
    + `AdamW at peak learning rate ${lr} (${SCHEDULE.warmupSteps} warm-up steps, cosine to ${lr / 10}), validation every ${evalEvery} steps on the same ${SCHEDULE.evalBatches} batches; `
    + `Switch runs α = ${aux}. Dense's final loss (mean of its finished seeds): ${Number.isFinite(denseFinal) ? denseFinal.toFixed(4) : 'not yet'}.</p>
<h2>The runs</h2>
<table><thead><tr><th>run</th><th>experts</th><th>top-k</th><th>capacity</th><th>seed</th><th>steps</th><th>parameters</th><th>FLOPs/token</th><th>val loss</th><th>steps to dense's final</th><th>speed-up (steps)</th><th>speed-up (seconds)</th><th>dropped</th><th>wall s</th></tr></thead>
<tbody>
${rows}
</tbody></table>
${spread ? `<h3>Seed spread of the final validation loss</h3><ul>${spread}</ul>` : ''}
<figure>${headline}</figure><figure>${byFlops}</figure><figure>${byWall}</figure><figure>${scaling}</figure>`;
  const heatmapsFor = new Set(['switch-e8', 'switch-e64', ...(best ? [best.name] : [])]);
  writeFileSync(join(o.out, 'report.html'), renderReport(`Switch vs dense on ${o.data}: ${steps} steps`, runs.map((r) => r.report),
    'Loss curves, routing and expert load of every run below; expert-load heatmaps for switch-e8, switch-e64 and the best Switch model.',
    { before, heatmapsFor: (r) => heatmapsFor.has(r.name) }));
  // The same table in Markdown, for the write-up.
  const md = [
    `Command: \`${COMMAND}\` (${machine().cpu}, ${machine().cores} cores, Node ${process.version}). Dense's final loss, mean of its finished seeds: ${Number.isFinite(denseFinal) ? denseFinal.toFixed(4) : '—'}.`,
    '',
    '| run | experts | top-k | capacity | seed | steps | parameters | FLOPs/token | val loss | steps to dense\'s final | speed-up (steps) | speed-up (s) | dropped | wall s |',
    '|---|---|---|---|---|---|---|---|---|---|---|---|---|---|',
    ...results.map((r) => `| ${r.name}${r.best_switch ? ' (best)' : ''} | ${r.experts || (r.same_params ? 'dense (E = 8\'s parameters)' : 'dense')} | ${r.top_k} | ${r.experts ? r.capacity_factor ?? 'dropless' : '—'} | ${r.seed} `
      + `| ${r.steps}${r.finished ? '' : ' (running)'} | ${(r.parameters / 1e6).toFixed(2)} M | ${(r.flops_per_token / 1e6).toFixed(2)} M | ${r.val_loss?.toFixed(4) ?? '—'} | ${r.steps_to_dense_final ?? '—'} `
      + `| ${r.speedup_steps ? `${r.speedup_steps.toFixed(2)}×` : '—'} | ${r.speedup_seconds ? `${r.speedup_seconds.toFixed(2)}×` : '—'} | ${(100 * r.dropped_fraction).toFixed(2)}% | ${Math.round(r.wall_s)} |`),
  ];
  writeFileSync(join(o.out, 'summary.md'), md.join('\n') + '\n');
  printTable(results.map((r) => ({
    run: r.name, steps: r.steps, val_loss: r.val_loss ?? NaN, steps_to_dense_final: r.steps_to_dense_final ?? '—',
    speedup: r.speedup_steps ?? '—', dropped_pct: 100 * r.dropped_fraction, wall_s: Math.round(r.wall_s),
  })), ['run', 'steps', 'val_loss', 'steps_to_dense_final', 'speedup', 'dropped_pct', 'wall_s']);
}

function mean(xs: number[]): number {
  return xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
}

/** Each evaluation interval's mean dropped fraction and first-choice load per layer and expert, from the per-step log. */
function windowed(log: LogLine[], every: number): { step: number; dropped_fraction: number; expert_load: number[][] }[] {
  const out = [];
  for (let start = 0; start < log.length; start += every) {
    const w = log.slice(start, start + every);
    const layers = w[0]!.expert_load;
    out.push({
      step: w[w.length - 1]!.step, dropped_fraction: Number(mean(w.map((l) => l.dropped_fraction)).toFixed(6)),
      expert_load: layers.map((row, i) => row.map((_, e) => Number(mean(w.map((l) => l.expert_load[i]![e]!)).toFixed(5)))),
    });
  }
  return out;
}

/** Every parameter of the run's model (experts and routers included), from its config. */
function parameterCount(dir: string): number {
  const m = readRunConfig(dir).model, d = m.dModel, ffn = (m.activation === 'swiglu' ? 3 : 2) * d * m.dFF;
  let n = m.vocabSize * d + d; // tied embedding, final norm
  for (let layer = 0; layer < m.layers; layer++) {
    n += 4 * d * d + 2 * d;
    n += m.numExperts > 0 && (layer + 1) % m.sparseStep === 0 ? m.numExperts * ffn + d * m.numExperts : ffn;
  }
  return n;
}
