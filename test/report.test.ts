// The HTML report of a run: self-contained (inline SVG, no scripts, no network), every chart and
// heatmap present, and rendered by a real browser where Chromium is installed.
import { mkdtempSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ORACLES, needing } from './oracles.js';
import { readRun, renderReport } from '../app/report.js';
import { train } from '../app/train.js';

const scratch = () => mkdtempSync(join(tmpdir(), 'switchyard-report-'));
const corpus = join(scratch(), 'corpus.txt');
writeFileSync(corpus, readFileSync(new URL('../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 40_000));
const trained = (async () => {
  const out = join(scratch(), 'run');
  await train({
    out, data: corpus, workers: 0,
    model: { layers: 4, heads: 2, dModel: 16, dFF: 32, context: 16, numExperts: 4 },
    train: { batch: 2, steps: 12, evalEvery: 4, evalBatches: 1 },
  });
  return out;
})();

describe('the run report', () => {
  it('holds the figures table, the curves and a load heatmap per Switch layer, and nothing external', async () => {
    const html = renderReport('test run', [readRun(await trained, 'tiny-test')]);
    expect(html).toMatch(/<td>tiny-test<\/td><td>4<\/td><td>1<\/td><td>1.25<\/td><td>12<\/td><td><b>\d\.\d{4}<\/b>/);
    for (const title of ['Validation loss against steps', 'Validation loss against wall time', 'Training loss', 'Dropped token assignments',
      'Router entropy at each evaluation', 'Overload, busiest expert / mean, at each evaluation']) {
      expect(html).toContain(`aria-label="${title}`);
    }
    expect(html.match(/aria-label="tiny-test: share of tokens per expert, layer \d/g))
      .toEqual(['aria-label="tiny-test: share of tokens per expert, layer 1', 'aria-label="tiny-test: share of tokens per expert, layer 3']);
    expect(html).toMatch(/<li><b>tiny-test<\/b>: preset tiny, data corpus\.txt, seed 1337, kernels (native|wasm)-[a-z0-9-]+ × 0 workers; 4 layers, d 16, 4 experts every 2 layers<\/li>/);
    expect(html.match(/class="small">[012]×<\/text>/g), 'each heatmap has its colour scale').toHaveLength(6);
    // Each Switch layer's routing at the last evaluation (step 12): entropy of log 4, overload, load, drops, dead experts.
    expect(html.match(/<tr><td>tiny-test<\/td><td>[13]<\/td><td>12<\/td><td>\d\.\d{3} of 1\.386<\/td><td>\d\.\d\d \(max \d\.\d\d\)<\/td><td>\d\.\d\d–\d\.\d\d×<\/td><td>\d+\.\d\d%<\/td><td>\d+\.\d%<\/td><td>(none|[\d ,()a-z]+)<\/td><\/tr>/g)).toHaveLength(2);
    expect(html).toContain('<h3>Dead experts</h3>');
    expect(html).toContain('figure svg{width:100%');
    expect(html).not.toMatch(/<script|<link|src=|url\(/);
    expect(html.replace(/xmlns="http:\/\/www\.w3\.org\/2000\/svg"/g, '')).not.toMatch(/https?:/);
  }, 60_000);

  it('compares runs by capacity factor when they differ', async () => {
    const a = readRun(await trained, 'cf 1.25');
    const b = { ...a, name: 'cf 2', model: { ...a.model, capacityFactor: 2 } };
    expect(renderReport('two', [a, b])).toContain('aria-label="Dropped fraction against capacity factor"');
  }, 60_000);

  it('names a folder that has no log', () => {
    expect(() => readRun(scratch())).toThrow(/no log\.jsonl/);
  });

  it('is written by `switchyard report --run`', async () => {
    const dir = await trained;
    const r = spawnSync(process.execPath, [new URL('../dist/cli/main.js', import.meta.url).pathname, 'report', '--run', dir], { encoding: 'utf8' });
    expect(r.stdout).toMatch(/wrote .*report\.html/);
    expect(readFileSync(join(dir, 'report.html'), 'utf8')).toMatch(/^<!doctype html>/);
  }, 60_000);

  const chromium = ORACLES.chromium.path;
  it.skipIf(!chromium)(needing(ORACLES.chromium, 'renders in headless Chromium'), async () => {
    const dir = await trained;
    const page = join(dir, 'page.html'), shot = join(dir, 'page.png');
    writeFileSync(page, renderReport('browser check', [readRun(dir, 'run')]));
    const flags = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking',
      '--disable-component-update', '--disable-sync', `--user-data-dir=${scratch()}`, '--window-size=1100,2400'];
    const dom = spawnSync(chromium!, [...flags, '--dump-dom', `file://${page}`], { encoding: 'utf8', timeout: 60_000 });
    expect((dom.stdout.match(/<svg /g) ?? []).length).toBe(8); // six curves, two heatmaps, as parsed by the browser
    spawnSync(chromium!, [...flags, `--screenshot=${shot}`, `file://${page}`], { timeout: 60_000 });
    expect(statSync(shot).size).toBeGreaterThan(30_000); // a blank page is a few kilobytes
  }, 120_000);
});
