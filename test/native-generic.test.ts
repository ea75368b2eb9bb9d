// The plain-C GEMM that arm64's builds use cannot run its own ISA here; this compiles it for
// x86-64 and checks it against the x86-64 builds of the same rounding (test/native/generic-gemm.c).
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const src = fileURLToPath(new URL('../kernels/native/src/', import.meta.url));
const cc = process.env.CC || 'cc';
const haveCc = spawnSync(cc, ['--version']).status === 0;
const why = process.arch !== 'x64' ? ' (skipped: needs x86-64)' : haveCc ? '' : ` (skipped: no C compiler ${cc})`;

describe(`the generic C GEMM (arm64's neon and portable builds)${why}`, () => {
  it.runIf(process.arch === 'x64' && haveCc)('gives the bits of the x86-64 builds with the same rounding', () => {
    const dir = mkdtempSync(join(tmpdir(), 'switchyard-generic-'));
    const flags = ['-std=gnu11', '-O3', '-ffp-contract=off', '-fno-math-errno', '-fno-trapping-math', `-I${src}`];
    const objects: [string, string[]][] = [
      ['gemm_generic.c', ['-DISA=generic_fma', '-DHAS_FMA=1', '-mfma']],
      ['gemm_generic.c', ['-DISA=generic', '-DHAS_FMA=0']],
      ['gemm_avx2.c', ['-DISA=avx2', '-DHAS_FMA=1', '-mavx2', '-mfma']],
      ['gemm_sse2.c', ['-DISA=portable', '-DHAS_FMA=0']],
    ];
    const built = objects.map(([file, defines], i) => {
      const out = join(dir, `${i}.o`);
      const r = spawnSync(cc, [...flags, ...defines, '-c', join(src, file), '-o', out], { encoding: 'utf8' });
      expect(r.status, r.stderr).toBe(0);
      return out;
    });
    const exe = join(dir, 'generic-gemm');
    const link = spawnSync(cc, [...flags, fileURLToPath(new URL('./native/generic-gemm.c', import.meta.url)), ...built, '-o', exe], { encoding: 'utf8' });
    expect(link.status, link.stderr).toBe(0);
    const run = spawnSync(exe, { encoding: 'utf8' });
    expect(run.stdout).toMatch(/^84 of 84 comparisons identical/m);
    expect(run.status).toBe(0);
  }, 120_000);
});
