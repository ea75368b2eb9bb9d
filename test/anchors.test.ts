// The PyTorch anchors (bench/anchors/*.py, docs/anchors.md): where a Python imports torch, each
// script runs once on tiny settings and prints its documented fields with sane values; where none
// does, those tests are skipped and their name says why. Speeds are not asserted: this machine is shared.
import { describe, expect, it } from 'vitest';
import { addVsPytorch, runAnchor, torchPython } from '../bench/pytorch.js';

const torch = torchPython();
const [python, version, skipped] = torch.python === undefined ? ['', '', ` (skipped: ${torch.why})`] : [torch.python, torch.torch, ''];

const expectPositive = (row: Record<string, unknown>, fields: string[]) => {
  for (const f of fields) {
    expect(row[f], f).toBeTypeOf('number');
    expect(Number.isFinite(row[f]) && (row[f] as number) > 0, `${f} = ${String(row[f])}`).toBe(true);
  }
};

describe.skipIf(torch.python === undefined)(`PyTorch anchor scripts${skipped}`, () => {
  it('gemm.py: a row per form with GFLOP/s, as our kernel rows', async () => {
    const rows = await runAnchor(python, 'gemm.py', ['--shapes', '64x64x64', '--max-time', '0.05']);
    expect(rows.map((r) => r.form)).toEqual(['nn', 'nt', 'tn']);
    for (const row of rows) {
      expect(row).toMatchObject({ suite: 'kernels', backend: 'pytorch', m: 64, k: 64, n: 64, threads: 1, torch: version });
      expectPositive(row, ['gflops', 'gflops_best', 'ms', 'samples']);
    }
  }, 60_000);

  it('switch_step.py --check: the float32 step computes the float64 oracle\'s function, drops included', async () => {
    const [row] = await runAnchor(python, 'switch_step.py', ['--check']);
    expect(row).toMatchObject({ check: 'ok' });
    expect(row!.worst_rel_err as number).toBeLessThan(1e-5);
    expect(row!.dropped as number).toBeGreaterThan(0);
  }, 60_000);

  it('switch_step.py: tokens/s of a tiny Switch layer step', async () => {
    const [row] = await runAnchor(python, 'switch_step.py', ['--tokens', '64', '--d-model', '16', '--d-ff', '32', '--experts', '4', '--max-time', '0.05']);
    expect(row).toMatchObject({ suite: 'switch-layer', backend: 'pytorch', tokens: 64, d_model: 16, d_ff: 32, num_experts: 4, threads: 1 });
    expectPositive(row!, ['tokens_per_s', 'best_tokens_per_s', 'step_ms', 'samples']);
    expect(row!.dropped as number).toBeGreaterThanOrEqual(0);
  }, 60_000);

  it('nanogpt.py --steps 3: an evaluation before the first step and after the last, then the wall time', async () => {
    const rows = await runAnchor(python, 'nanogpt.py', ['--steps', '3', '--threads', '1']);
    expect(rows.map((r) => r.step)).toEqual([0, 3, undefined]);
    for (const row of rows.slice(0, 2)) {
      expectPositive(row, ['train_loss', 'val_loss']);
      expect(row.val_loss as number).toBeLessThan(5); // ln 65 ≈ 4.17 at the start
      expect(row.elapsed_s as number).toBeGreaterThanOrEqual(0);
    }
    expect(rows[2]).toMatchObject({ steps: 3, threads: 1, params: expect.any(Number) });
    expectPositive(rows[2]!, ['wall_s']);
  }, 120_000);
});

describe('vs_pytorch', () => {
  it('is each row\'s figure over the PyTorch row\'s with the same key, whatever the backend', () => {
    const rows = [
      { backend: 'wasm-simd', form: 'nn', m: 8, gflops: 10 }, { backend: 'native-avx2', form: 'nn', m: 8, gflops: 30 },
      { backend: 'pytorch', form: 'nn', m: 8, gflops: 40 }, { backend: 'wasm-simd', form: 'nt', m: 8, gflops: 10 },
    ];
    addVsPytorch(rows, ['form', 'm'], 'gflops');
    expect(rows.map((r) => (r as Record<string, unknown>).vs_pytorch)).toEqual([0.25, 0.75, undefined, undefined]);
  });
});
