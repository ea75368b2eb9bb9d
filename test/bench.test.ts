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
      expect(row).toMatchObject({ cpu: expect.any(String), cores: expect.any(Number), node: process.version, backend: expect.stringMatching(/^(wasm|gpujs-)/) });
      expect((row.gflops ?? row.tokens_per_s) as number).toBeGreaterThan(0);
    }
  }, 240_000);
});
