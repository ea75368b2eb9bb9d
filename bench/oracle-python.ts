// A Python with torch and transformers, for measuring against Hugging Face and checking against
// it: SWITCHYARD_ORACLE_PYTHON, or the virtual environment at .venv-oracle (docs/scaling-out.md).
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

/** The interpreter, or why there is none (for a skipped row's or test's reason). */
export function oraclePython(): { python: string } | { missing: string } {
  const candidates = [process.env.SWITCHYARD_ORACLE_PYTHON, new URL('../../.venv-oracle/bin/python', import.meta.url).pathname,
    new URL('../.venv-oracle/bin/python', import.meta.url).pathname];
  for (const python of candidates) {
    if (python && existsSync(python) && spawnSync(python, ['-c', 'import torch, transformers'], { encoding: 'utf8' }).status === 0) return { python };
  }
  return { missing: 'no Python that imports torch and transformers (set SWITCHYARD_ORACLE_PYTHON, or make .venv-oracle)' };
}

/** The environment PyTorch runs in for a fair comparison: `threads` threads that sleep when idle. */
export function oracleEnv(threads: number): NodeJS.ProcessEnv {
  return { ...process.env, OMP_NUM_THREADS: String(threads), MKL_NUM_THREADS: String(threads), OMP_WAIT_POLICY: 'PASSIVE' };
}
