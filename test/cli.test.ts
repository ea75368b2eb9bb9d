// The `switchyard` command as a user runs it: the compiled CLI in a child process.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
const ref = (name: string) => new URL(`./reference/${name}`, import.meta.url).pathname;
const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

describe('the package', () => {
  it('exposes its typed API by name, as a user imports it', () => {
    const r = spawnSync(process.execPath, ['--input-type=module', '-e',
      "import { train, loadRun, generate, evaluateRun, createEngine, SwitchLayer } from 'switchyard'; console.log([train, loadRun, generate, evaluateRun, createEngine, SwitchLayer].map((f) => typeof f).join())"],
    { encoding: 'utf8', cwd: new URL('..', import.meta.url).pathname });
    expect(r.stdout.trim()).toBe('function,function,function,function,function,function');
  });
});

describe('switchyard check-reference', () => {
  it('passes the shared cases and prints every field', () => {
    const out = execFileSync(process.execPath, [cli, 'check-reference', ref('top1-relu-cf1.25.json'), ref('top2-relu-cf1.0.json')], { encoding: 'utf8' });
    expect(out).toMatch(/pass top1-relu-cf1\.25/);
    expect(out).toMatch(/grad expert_w_out\s+\d\.\d\de-\d/);
    expect(out).toMatch(/^2 passed, 0 failed$/m);
  });

  it('runs the cases through the engine with --workers', () => {
    const r = run('check-reference', '--workers', '2', ref('top1-swiglu-cf2.0.json'), ref('top2-relu-cf1.0.json'));
    expect(r.stdout).toMatch(/^engine with 2 workers/);
    expect(r.stdout).toMatch(/^2 passed, 0 failed$/m);
    expect(r.status).toBe(0);
    expect(run('check-reference', '--workers', '0', ref('top2-relu-cf1.0.json')).stderr).toMatch(/expected a whole number ≥ 1, got '0'/);
  });

  it('fails, naming the field, when a case is wrong', () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-'));
    const c = JSON.parse(readFileSync(ref('top1-relu-cf1.25.json'), 'utf8'));
    c.outputs.y[0][0] += 1;
    c.outputs.dropped += 1;
    writeFileSync(join(dir, 'wrong.json'), JSON.stringify(c));
    const r = run('check-reference', join(dir, 'wrong.json'));
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/✗ dropped\s+DIFFERS/);
    expect(r.stdout).toMatch(/✗ y\s+\d/);
    expect(r.stdout).toMatch(/0 passed, 1 failed/);
  });

  it('names an unreadable, malformed or mis-shaped case file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-'));
    writeFileSync(join(dir, 'broken.json'), '{"name": ');
    const c = JSON.parse(readFileSync(ref('top1-relu-cf1.25.json'), 'utf8'));
    c.inputs.x[3].pop();
    writeFileSync(join(dir, 'shape.json'), JSON.stringify(c));
    const r = run('check-reference', join(dir, 'missing.json'), join(dir, 'broken.json'), join(dir, 'shape.json'));
    expect(r.status).toBe(1);
    expect(r.stdout).toMatch(/missing\.json: cannot read the case file/);
    expect(r.stdout).toMatch(/broken\.json: not valid JSON/);
    expect(r.stdout).toMatch(/shape\.json: inputs\.x must have shape \[16×8\]: inputs\.x\[3\] has 7 entries, expected 8/);
  });

  it.each(['webasm', 'cpu'])('runs cases through the engine with the experts on gpu.js %s', (mode) => {
    const r = run('check-reference', '--backend', 'gpujs', '--gpujs-mode', mode, ref('top1-swiglu-cf2.0.json'), ref('top2-relu-cf1.0.json'));
    expect(r.stdout).toContain(`engine with 1 worker, experts on gpu.js ${mode}`);
    expect(r.stdout).toMatch(/2 passed, 0 failed/);
    expect(r.status).toBe(0);
  });

  it('refuses a gpu.js mode without the gpujs backend, and modes gpu.js does not have', () => {
    expect(run('check-reference', '--gpujs-mode', 'cpu', ref('top2-relu-cf1.0.json')).stderr).toMatch(/--gpujs-mode needs --backend gpujs/);
    expect(run('check-reference', '--backend', 'gpujs', '--gpujs-mode', 'cuda', ref('top2-relu-cf1.0.json')).stderr)
      .toMatch(/Allowed choices are webgpu, headlessgl, webasm, cpu/);
  });

  it('rejects unknown options and shows what is accepted', () => {
    const r = run('check-reference', '--backend', 'cuda', ref('top1-relu-cf1.25.json'));
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Allowed choices are wasm, reference, gpujs, auto/);
    expect(run('--help').stdout).toMatch(/check-reference/);
  });
});
