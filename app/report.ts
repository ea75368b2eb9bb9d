// A self-contained HTML report of one or more training runs (inline SVG, no scripts, no network):
// validation loss against steps and wall time, dropped tokens, the experts' load over training,
// and a table of the final figures. `switchyard report --run DIR` and the experiments write it;
// with --prompt, also where each of the prompt's tokens went in every Switch layer.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { type LoadedRun, readRunConfig } from './run-folder.js';
import { localInference } from './inference.js';
import { pieceDecoder } from './tokenizer.js';
import type { ModelConfig } from '../model/config.js';
import { machine } from './machine.js';
import { DEAD_EXPERT_STEPS, type LayerRouting } from './routing-stats.js';
import { color, heatmap, lineChart, type Series } from './svg.js';

export interface LogLine {
  step: number; loss: number; val_loss?: number; tokens_per_s: number; elapsed_s: number;
  dropped_fraction: number; expert_load: number[][];
  /** On the first step of each training session: the kernels and worker threads it ran on. */
  kernels?: string; workers?: number;
  /** On evaluation lines of a Switch model: each Switch layer's routing on the validation batches. */
  routing?: LayerRouting[];
  /** Dead experts found at this step. */
  warnings?: string[];
}

/** What a reader needs to know of where a run came from. */
export interface RunOrigin { preset?: string; data: string; seed: number; kernels: string[] }

export interface ReportRun { name: string; model: ModelConfig; log: LogLine[]; origin?: RunOrigin }

export function readRun(dir: string, name = dir): ReportRun {
  const file = join(dir, 'log.jsonl');
  if (!existsSync(file)) throw new Error(`${dir}: no log.jsonl (not a run folder, or a run that has not logged a step)`);
  const log = readFileSync(file, 'utf8').split('\n').filter(Boolean).map((line, i) => {
    try {
      return JSON.parse(line) as LogLine;
    } catch {
      throw new Error(`${file}: line ${i + 1} is not JSON`);
    }
  });
  if (log.length === 0) throw new Error(`${file}: empty`);
  const config = readRunConfig(dir);
  const kernels = [...new Set(log.flatMap((l) => (l.kernels ? [`${l.kernels} × ${l.workers} workers`] : [])))];
  return {
    name, model: config.model, log,
    origin: {
      ...(config.preset && { preset: config.preset }), data: typeof config.data === 'string' ? config.data : config.data.name,
      seed: config.train.seed, kernels,
    },
  };
}

const esc = (s: string) => s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
const mean = (xs: number[]) => xs.reduce((a, b) => a + b, 0) / Math.max(1, xs.length);
const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); return s[s.length >> 1] ?? NaN; };

/** Averages of `f` over consecutive windows, as chart points at each window's last step. */
function smoothed(log: LogLine[], f: (l: LogLine) => number, points = 100): [number, number][] {
  const size = Math.max(1, Math.ceil(log.length / points));
  const out: [number, number][] = [];
  for (let i = 0; i < log.length; i += size) {
    const window = log.slice(i, i + size);
    out.push([window[window.length - 1]!.step, mean(window.map(f))]);
  }
  return out;
}

export function finalFigures(r: ReportRun) {
  const val = r.log.filter((l) => l.val_loss !== undefined);
  return {
    steps: r.log[r.log.length - 1]!.step,
    finalValLoss: val[val.length - 1]?.val_loss ?? NaN,
    bestValLoss: Math.min(...val.map((l) => l.val_loss!)),
    trainLoss: mean(r.log.slice(-50).map((l) => l.loss)),
    tokensPerS: median(r.log.map((l) => l.tokens_per_s)),
    wallS: r.log[r.log.length - 1]!.elapsed_s,
    droppedFraction: mean(r.log.map((l) => l.dropped_fraction)),
  };
}

/**
 * A prompt's routing: one line per Switch layer, each token on the colour of the expert it went
 * to (its gate and expert on hover), from a prefill of the prompt.
 */
export async function routingSection(run: LoadedRun, prompt: string): Promise<string> {
  const inference = localInference(run.model, run.tokenizer);
  const result = await inference.stream({ prompt, maxTokens: 0, returnExperts: true, atContext: 'slide' }).result;
  await inference.close();
  const decoder = pieceDecoder(run.tokenizer);
  const pieces = result.promptIds.map((id) => decoder.piece(id));
  const routing = result.promptRouting!;
  const layers = routing.find((t) => t.length > 0)?.map((l) => l.layer) ?? [];
  const E = run.config.model.numExperts;
  const shown = (text: string) => esc(text).replace(/\n/g, '↵').replace(/ /g, '&nbsp;');
  const lines = layers.map((layer, j) => {
    const spans = pieces.map((text, t) => {
      const l = routing[t]?.[j];
      if (!l) return `<span title="outside the window">${shown(text)}</span>`;
      const e = l.experts[0]!;
      return `<span style="background:${color(e)}55;border-bottom:3px solid ${color(e)}" title="expert ${e}, gate ${l.gates[0]!.toFixed(3)}">${shown(text)}</span>`;
    }).join('');
    return `<p><b>layer ${layer}</b><br><code style="font-size:16px;line-height:2">${spans}</code></p>`;
  }).join('\n');
  const legend = Array.from({ length: E }, (_, e) => `<span style="background:${color(e)}55;border-bottom:3px solid ${color(e)};padding:0 6px">expert ${e}</span>`).join(' ');
  return `<h2>Routing of a prompt</h2>
<p>Each token on the colour of the expert its first choice went to in that Switch layer (hover for the gate), dropless, as generation routes it${layers.length === 0 ? '. This model has no Switch layer.' : ':'}</p>
${lines}
<p>${legend}</p>`;
}

export interface ReportOptions {
  /** HTML placed after the introduction (an experiment's own tables and charts). */
  before?: string;
  /** Which runs get expert-load heatmaps (default: every Switch run). */
  heatmapsFor?: (run: ReportRun) => boolean;
  /** HTML placed at the end (a prompt's routing). */
  after?: string;
}

export function renderReport(title: string, runs: ReportRun[], intro = '', options: ReportOptions = {}): string {
  const valSeries = (x: (l: LogLine) => number): Series[] =>
    runs.map((r) => ({ name: r.name, points: r.log.filter((l) => l.val_loss !== undefined).map((l) => [x(l), l.val_loss!]) }));
  const charts = [
    lineChart('Validation loss against steps', 'step', 'validation loss', valSeries((l) => l.step)),
    lineChart('Validation loss against wall time', 'seconds', 'validation loss', valSeries((l) => l.elapsed_s)),
    lineChart('Training loss (windowed mean)', 'step', 'loss', runs.map((r) => ({ name: r.name, points: smoothed(r.log, (l) => l.loss) }))),
  ];
  const sparse = runs.filter((r) => r.log[0]!.expert_load.length > 0);
  if (sparse.length > 0) {
    charts.push(lineChart('Dropped token assignments (windowed mean)', 'step', 'fraction dropped',
      sparse.map((r) => ({ name: r.name, points: smoothed(r.log, (l) => l.dropped_fraction) }))));
  }
  const byCapacity = sparse.filter((r) => r.model.capacityFactor !== null);
  if (new Set(byCapacity.map((r) => r.model.capacityFactor)).size > 1) {
    const points = byCapacity.map((r) => [r.model.capacityFactor!, finalFigures(r).droppedFraction] as [number, number]).sort((a, b) => a[0] - b[0]);
    charts.push(lineChart('Dropped fraction against capacity factor', 'capacity factor', 'mean fraction dropped', [{ name: 'runs', points }]));
  }
  charts.push(...routingCharts(sparse));
  const heatmaps = sparse.filter((r) => options.heatmapsFor?.(r) ?? true).flatMap((r) => {
    const columns = Math.min(40, r.log.length), size = Math.ceil(r.log.length / columns);
    const bins = Array.from({ length: Math.ceil(r.log.length / size) }, (_, b) => r.log.slice(b * size, (b + 1) * size));
    const sparseLayers = Array.from({ length: r.model.layers }, (_, i) => i).filter((i) => (i + 1) % r.model.sparseStep === 0);
    return r.log[0]!.expert_load.map((_, layer) => {
      const E = r.log[0]!.expert_load[layer]!.length;
      const values = Array.from({ length: E }, (_, e) => bins.map((bin) => mean(bin.map((l) => l.expert_load[layer]![e]!))));
      return heatmap(`${r.name}: share of tokens per expert, layer ${sparseLayers[layer] ?? layer}`, (e) => `expert ${e}`,
        bins.map((bin) => String(bin[bin.length - 1]!.step)), values, 1 / E);
    });
  });
  const origins = runs.filter((r) => r.origin).map((r) => {
    const o = r.origin!;
    return `<li><b>${esc(r.name)}</b>: preset ${esc(o.preset ?? '—')}, data ${esc(o.data)}, seed ${o.seed}, `
      + `kernels ${esc(o.kernels.join(', ') || 'not recorded')}; ${r.model.layers} layers, d ${r.model.dModel}, `
      + `${r.model.numExperts ? `${r.model.numExperts} experts every ${r.model.sparseStep} layers` : 'dense'}</li>`;
  });
  const rows = runs.map((r) => {
    const f = finalFigures(r);
    const cell = (v: number, digits: number) => (Number.isFinite(v) ? v.toFixed(digits) : '—');
    return `<tr><td>${esc(r.name)}</td><td>${r.model.numExperts || 'dense'}</td><td>${r.model.topK}</td><td>${r.model.capacityFactor ?? 'dropless'}</td>`
      + `<td>${f.steps}</td><td><b>${cell(f.finalValLoss, 4)}</b></td><td>${cell(f.bestValLoss, 4)}</td><td>${cell(f.trainLoss, 4)}</td>`
      + `<td>${cell(f.tokensPerS, 0)}</td><td>${cell(f.wallS, 1)}</td><td>${cell(100 * f.droppedFraction, 2)}%</td></tr>`;
  }).join('\n');
  const m = machine();
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>${esc(title)}</title>
<style>body{font:14px/1.45 sans-serif;margin:24px;max-width:1200px;color:#222}table{border-collapse:collapse}td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}td:first-child,th:first-child{text-align:left}figure{margin:16px 0}figure svg{width:100%;height:auto}</style>
</head><body>
<h1>${esc(title)}</h1>
<p>Rendered on ${esc(String(m.cpu))}, ${m.cores} cores, Node ${esc(String(m.node))}. ${intro}</p>
${options.before ?? ''}
${origins.length ? `<ul>${origins.join('\n')}</ul>` : ''}
${runs.length === 0 ? '' : `<h2>Final figures</h2>
<table><thead><tr><th>run</th><th>experts</th><th>top-k</th><th>capacity</th><th>steps</th><th>val loss</th><th>best val</th><th>train loss (last 50)</th><th>tokens/s (median)</th><th>wall s</th><th>dropped</th></tr></thead>
<tbody>
${rows}
</tbody></table>
${charts.map((c) => `<figure>${c}</figure>`).join('\n')}
${routingTable(sparse)}
${heatmaps.length ? '<h2>Expert load over training</h2>' : ''}
${heatmaps.map((c) => `<figure>${c}</figure>`).join('\n')}`}
${options.after ?? ''}
</body></html>
`;
}

/** Router entropy and the max/mean overload at each evaluation: per layer for one run, the mean over layers for several. */
function routingCharts(runs: ReportRun[]): string[] {
  const withRouting = runs.filter((r) => r.log.some((l) => l.routing));
  if (withRouting.length === 0) return [];
  const series = (f: (x: LayerRouting) => number): Series[] => withRouting.flatMap((r) => {
    const evals = r.log.filter((l) => l.routing);
    if (withRouting.length > 1) return [{ name: r.name, points: evals.map((l) => [l.step, mean(l.routing!.map(f))] as [number, number]) }];
    return evals[0]!.routing!.map((x, i) => ({ name: `layer ${x.layer}`, points: evals.map((l) => [l.step, f(l.routing![i]!)] as [number, number]) }));
  });
  const over = withRouting.length > 1 ? ' (mean over layers)' : '';
  return [
    lineChart(`Router entropy at each evaluation${over}`, 'step', 'nats per token', series((x) => x.entropy)),
    lineChart(`Overload, busiest expert / mean, at each evaluation${over}`, 'step', 'max / mean', series((x) => x.overload)),
  ];
}

/** Each Switch layer's routing at the last evaluation, and the dead-expert warnings. */
function routingTable(runs: ReportRun[]): string {
  const rows = runs.flatMap((r) => {
    const last = [...r.log].reverse().find((l) => l.routing);
    return (last?.routing ?? []).map((x) => {
      const E = x.load.length, shares = x.load.map((s) => s * E);
      const dead = x.dead.length ? x.dead.map((d) => `${d.expert} (${d.idle_steps} steps)`).join(', ') : 'none';
      return `<tr><td>${esc(r.name)}</td><td>${x.layer}</td><td>${last!.step}</td><td>${x.entropy.toFixed(3)} of ${Math.log(E).toFixed(3)}</td>`
        + `<td>${x.overload.toFixed(2)} (max ${x.overload_max.toFixed(2)})</td><td>${Math.min(...shares).toFixed(2)}–${Math.max(...shares).toFixed(2)}×</td>`
        + `<td>${(100 * x.dropped_fraction).toFixed(2)}%</td><td>${(100 * Math.max(...x.dropped)).toFixed(1)}%</td><td>${esc(dead)}</td></tr>`;
    });
  });
  if (rows.length === 0) return '';
  const warnings = runs.flatMap((r) => r.log.flatMap((l) => (l.warnings ?? []).map((w) => `<li><b>${esc(r.name)}</b>, step ${l.step}: ${esc(w)}</li>`)));
  return `<h2>Routing at the last evaluation (validation batches)</h2>
<table><thead><tr><th>run</th><th>layer</th><th>step</th><th>router entropy (nats, of log E)</th><th>overload max/mean</th><th>expert load (min–max, × even)</th><th>dropped</th><th>worst expert dropped</th><th>dead experts</th></tr></thead>
<tbody>
${rows.join('\n')}
</tbody></table>
<h3>Dead experts</h3>
${warnings.length ? `<ul>${warnings.slice(0, 50).join('\n')}${warnings.length > 50 ? `<li>… and ${warnings.length - 50} more</li>` : ''}</ul>` : `<p>No expert went without a first-choice token for ${DEAD_EXPERT_STEPS} steps.</p>`}`;
}
