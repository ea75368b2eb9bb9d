// `npm run experiment:routing-by-domain -- --run DIR [--batches N]`: do a trained Switch model's
// experts specialise by domain? Validation windows of the run's corpus are labelled code, markup
// (reST) or prose by their characters, routed through the model, and each Switch layer's
// first choices are counted per domain: the share of each expert per domain, and how much knowing
// the expert tells about the domain (mutual information over the domain's entropy: 0 when routing
// ignores the domain, 1 when each expert serves one domain). It also says how large the gate is
// (the chosen expert's router probability, by which its output is scaled: 1/E for a uniform router)
// and how much larger the experts' weights have grown than the dense FFNs' of the same model.
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command } from 'commander';
import { findCorpus, makeDataset, validationBatches } from '../../app/data.js';
import { isSparseLayer } from '../../model/config.js';
import { loadRun } from '../../index.js';
import { printTable } from '../report.js';

const program = new Command('experiment:routing-by-domain')
  .requiredOption('--run <dir>', 'a trained Switch run folder')
  .option('--batches <n>', 'validation batches to route (the run\'s own batches first)', '40')
  .option('--data <file>', 'where the run\'s corpus is, if it has moved')
  .parse();
const o = program.opts<{ run: string; batches: string; data?: string }>();

const DOMAINS = ['code', 'markup', 'prose'] as const;
type Domain = (typeof DOMAINS)[number];

/** A window's domain from its characters, roughly: Go's keywords and comments or many brackets and operators, reST's markup, or prose. */
function domainOf(text: string): Domain {
  const symbols = (text.match(/[{}();=<>&|*[\]]/g) ?? []).length / Math.max(1, text.length);
  if (symbols > 0.05 || /\bfunc\b|:=|^\s*\/\/|\bnil\b|^\s*(?:package|import|return) /m.test(text)) return 'code';
  if (/^\s*\.\. |::\s*$|``|^[=\-~^*]{4,}\s*$|:[a-z]+:`/m.test(text)) return 'markup';
  return 'prose';
}

const run = loadRun(o.run);
const c = run.config, m = c.model;
if (m.numExperts === 0) throw new Error(`${o.run}: a dense model has no experts to route`);
const corpus = findCorpus(c.data, run.dir, o.data);
const data = makeDataset(corpus.text, run.tokenizer, corpus.source);
const batches = validationBatches(data.val, c.train.batch, m.context, Number(o.batches), c.train.seed);
const layers = Array.from({ length: m.layers }, (_, i) => i).filter((i) => isSparseLayer(m, i));
const E = m.numExperts;
// counts[layer][domain][expert], first choices
const counts = layers.map(() => DOMAINS.map(() => new Float64Array(E)));
const windows: Record<Domain, number> = { code: 0, markup: 0, prose: 0 };
const gates = layers.map(() => ({ sum: 0, n: 0 }));
for (const b of batches) {
  const out = await run.model.forward(b, { training: false });
  for (let row = 0; row < b.batch; row++) {
    const d = DOMAINS.indexOf(domainOf(run.tokenizer.decode(b.inputs.subarray(row * b.context, (row + 1) * b.context))));
    windows[DOMAINS[d]!]++;
    out.switchStats.forEach((s, i) => {
      const k = s.expertIndex.length / (b.batch * b.context);
      for (let t = row * b.context; t < (row + 1) * b.context; t++) {
        counts[i]![d]![s.expertIndex[t * k]!]!++;
        gates[i]!.sum += s.routerProbs[t * E + s.expertIndex[t * k]!]!;
        gates[i]!.n++;
      }
    });
  }
}
const rms = (name: string) => {
  const p = run.model.params.list.find((x) => x.name === name);
  return p ? Math.sqrt(p.data.reduce((s, v) => s + v * v, 0) / p.data.length) : NaN;
};
const denseLayers = Array.from({ length: m.layers }, (_, i) => i).filter((i) => !isSparseLayer(m, i));
const denseOut = denseLayers.reduce((s, i) => s + rms(`layers.${i}.mlp.down.weight`), 0) / denseLayers.length;
const denseIn = denseLayers.reduce((s, i) => s + rms(`layers.${i}.mlp.up.weight`), 0) / denseLayers.length;
await run.model.dispose();

const entropy = (p: number[]) => -p.reduce((h, x) => (x > 0 ? h + x * Math.log(x) : h), 0);
const result = layers.map((layer, i) => {
  const byDomain = counts[i]!;
  const total = byDomain.reduce((s, row) => s + row.reduce((a, b) => a + b, 0), 0);
  const pDomain = byDomain.map((row) => row.reduce((a, b) => a + b, 0) / total);
  const pExpert = Array.from({ length: E }, (_, e) => byDomain.reduce((s, row) => s + row[e]!, 0) / total);
  let mi = 0;
  byDomain.forEach((row, d) => row.forEach((n, e) => { if (n > 0) mi += (n / total) * Math.log((n / total) / (pDomain[d]! * pExpert[e]!)); }));
  return {
    layer, mutual_information: mi, domain_entropy: entropy(pDomain), normalised: mi / entropy(pDomain),
    mean_gate: gates[i]!.sum / gates[i]!.n, uniform_gate: 1 / E,
    /** RMS of the experts' weights over that of the dense FFNs' (NaN in a model with no dense FFN). */
    w_out_vs_dense: rms(`layers.${layer}.moe.w_out`) / denseOut, w_in_vs_dense: rms(`layers.${layer}.moe.w_in`) / denseIn,
    share: Object.fromEntries(DOMAINS.map((d, j) => {
      const row = byDomain[j]!, n = row.reduce((a, b) => a + b, 0);
      return [d, Array.from(row, (x) => Number((x / Math.max(1, n)).toFixed(4)))];
    })),
  };
});
const file = join(o.run, 'routing-by-domain.json');
writeFileSync(file, JSON.stringify({ run: o.run, step: run.step, windows, layers: result }, null, 2) + '\n');
console.log(`windows: ${DOMAINS.map((d) => `${d} ${windows[d]}`).join(', ')}`);
printTable(result.flatMap((r) => DOMAINS.map((d) => {
  const share = r.share[d]!, top = share.map((x, e) => [x, e] as const).sort((a, b) => b[0] - a[0]).slice(0, 3);
  return { layer: r.layer, domain: d, top_experts: top.map(([x, e]) => `${e}:${(100 * x).toFixed(0)}%`).join(' '), 'I(domain;expert)/H(domain)': r.normalised };
})), ['layer', 'domain', 'top_experts', 'I(domain;expert)/H(domain)']);
printTable(result.map((r) => ({ layer: r.layer, mean_gate: r.mean_gate, uniform_gate: r.uniform_gate, w_out_vs_dense: r.w_out_vs_dense, w_in_vs_dense: r.w_in_vs_dense })),
  ['layer', 'mean_gate', 'uniform_gate', 'w_out_vs_dense', 'w_in_vs_dense']);
console.log(`wrote ${file}`);
