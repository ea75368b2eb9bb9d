// `switchyard bench` end to end: every benchmark of the quick suite reports a figure, and --json
// carries the machine's description. (Speeds are not asserted: this machine is shared.)
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

describe('switchyard bench', () => {
  it('runs the quick suite and writes every figure with the machine\'s description', () => {
    const json = join(mkdtempSync(join(tmpdir(), 'switchyard-bench-')), 'bench.json');
    const r = spawnSync(process.execPath, [new URL('../dist/cli/main.js', import.meta.url).pathname, 'bench', '--json', json],
      { encoding: 'utf8', timeout: 240_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/GEMM nn 512³\s+\d+\.\d GFLOP\/s/);
    expect(r.stdout).toMatch(/training step, tiny, \d workers?\s+\d+ tokens\/s/);
    expect(r.stdout).toMatch(/GEMM nn 512³, gpu\.js webasm\s+\d+\.\d GFLOP\/s/);
    expect(r.stdout).toMatch(/gpu\.js: /);
    const rows = JSON.parse(readFileSync(json, 'utf8')) as Record<string, unknown>[];
    expect(rows.map((row) => row.suite)).toEqual(expect.arrayContaining(['kernels', 'switch-layer', 'train-step', 'generation']));
    for (const row of rows) {
      expect(row).toMatchObject({ cpu: expect.any(String), cores: expect.any(Number), node: process.version, backend: expect.stringMatching(/^(native-|wasm|gpujs-)/) });
      expect((row.gflops ?? row.tokens_per_s) as number).toBeGreaterThan(0);
    }
  }, 240_000);
});

describe('bench:ab', () => {
  it('alternates two builds\' training steps and reports each build\'s times and the median ratio', () => {
    const dist = new URL('../dist', import.meta.url).pathname;
    const json = join(mkdtempSync(join(tmpdir(), 'switchyard-ab-')), 'ab.json');
    const r = spawnSync(process.execPath, [join(dist, 'bench', 'ab-train.js'), dist, dist, '--steps', '4', '--workers', '1', '--json', json],
      { encoding: 'utf8', timeout: 120_000 });
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/B\/A step time, median of 4 pairs: \d\.\d{3}/);
    const rows = JSON.parse(readFileSync(json, 'utf8')) as Record<string, unknown>[];
    expect(rows.slice(0, 2).map((row) => row.steps)).toEqual([4, 4]);
    for (const row of rows.slice(0, 2)) expect(row.median_ms as number).toBeGreaterThan(0);
    expect(rows[2]!.median_ratio as number).toBeGreaterThan(0);
    const bad = spawnSync(process.execPath, [join(dist, 'bench', 'ab-train.js'), dist, dist, '--steps', '1'], { encoding: 'utf8' });
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--steps: '1' is not an integer ≥ 2/);
  }, 120_000);
});
