// The PyTorch anchors (bench/anchors/*.py, docs/anchors.md): finding a Python that has torch,
// running an anchor script, and setting our rows against its rows. Nothing Python is a dependency
// of Switchyard: without such a Python each benchmark says why and measures our side alone.
import { spawn, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Row } from './report.js';

/** The repository root, found upward from this module: it runs as bench/ from the sources and as dist/bench/ from the build, and the scripts are only in the sources. */
const ROOT = (() => {
  for (let dir = dirname(fileURLToPath(import.meta.url)); ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json above ${fileURLToPath(import.meta.url)}`);
  }
})();

export type TorchPython = { python: string; torch: string } | { python: undefined; why: string };

let found: TorchPython | undefined;
const PROBE = `import importlib.metadata as m
try: print(m.version("torch"))
except m.PackageNotFoundError: raise SystemExit("torch is not installed")`;

/**
 * The first that has torch installed of $SWITCHYARD_PYTHON, $SWITCHYARD_ORACLE_PYTHON (the oracle tests'
 * variable), .venv-oracle/bin/python and python3; or why none does, naming each. Asked once a process.
 */
export function torchPython(): TorchPython {
  if (found) return found;
  const candidates: [string, string | undefined][] = [
    ['$SWITCHYARD_PYTHON', process.env.SWITCHYARD_PYTHON],
    ['$SWITCHYARD_ORACLE_PYTHON', process.env.SWITCHYARD_ORACLE_PYTHON],
    ['.venv-oracle/bin/python', join(ROOT, '.venv-oracle', 'bin', 'python')],
    ['python3', 'python3'],
  ];
  const tried: string[] = [];
  for (const [name, python] of candidates) {
    if (!python) {
      tried.push(`${name} is not set`);
      continue;
    }
    // The installed version, not `import torch`: that takes seconds, and each anchor imports it anyway (a broken install fails there, saying why).
    const r = spawnSync(python, ['-c', PROBE], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return (found = { python, torch: r.stdout.trim() });
    const error = r.error as NodeJS.ErrnoException | undefined;
    tried.push(`${name}: ${error?.code === 'ENOENT' ? 'not found' : error?.message ?? lastLine(r.stderr)}`);
  }
  return (found = { python: undefined, why: `no Python with torch (${tried.join('; ')}); docs/anchors.md says how to make one` });
}

/**
 * Runs bench/anchors/`script` with `args` and resolves to the JSON objects it prints, one a line;
 * `onRow` sees each as it arrives (the training anchor runs for minutes). Rejects with the
 * script's last error line when it fails.
 */
export function runAnchor(python: string, script: string, args: string[], onRow?: (row: Row) => void): Promise<Row[]> {
  return new Promise((resolve, reject) => {
    const child = spawn(python, [join(ROOT, 'bench', 'anchors', script), ...args], {
      stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, PYTHONDONTWRITEBYTECODE: '1' }, // no __pycache__ in the sources
    });
    const rows: Row[] = [];
    let stdout = '', stderr = '';
    let failure: Error | undefined;
    const take = (line: string) => {
      if (!line.trim() || failure) return;
      try {
        rows.push(JSON.parse(line) as Row);
      } catch {
        failure = new Error(`${script} printed a line that is not JSON: ${line.slice(0, 200)}`);
        child.kill();
        return;
      }
      onRow?.(rows.at(-1)!);
    };
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      const lines = (stdout + chunk).split('\n');
      stdout = lines.pop()!;
      lines.forEach(take);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => { stderr += chunk; });
    child.on('error', reject);
    child.on('close', (code) => {
      if (failure) return reject(failure);
      if (code !== 0) return reject(new Error(`${script} ${args.join(' ')} exited with ${code}: ${lastLine(stderr) || 'no message'}`));
      take(stdout);
      resolve(rows);
    });
  });
}

/** The anchor's rows, or none after saying why (no Python with torch, or the script failed): an anchor never stops our own measurements. */
export async function anchorRows(torch: TorchPython, script: string, args: string[], onRow?: (row: Row) => void): Promise<Row[]> {
  if (!torch.python) return [];
  try {
    return await runAnchor(torch.python, script, args, onRow);
  } catch (error) {
    console.log(`PyTorch anchor skipped: ${(error as Error).message}`);
    return [];
  }
}

/** The Python for a benchmark's anchor, none when not `wanted` (--no-pytorch); says up front when there is none, and why. */
export function anchorPython(wanted = true): TorchPython {
  const torch: TorchPython = wanted ? torchPython() : { python: undefined, why: '--no-pytorch' };
  if (torch.python === undefined) console.log(`PyTorch anchor skipped: ${torch.why}`);
  return torch;
}

/**
 * Sets vs_pytorch on every row that is not PyTorch's: its `value` over the `value` of the PyTorch
 * row that agrees with it on every `key` field (the same shape, form, threads…), so every backend's
 * rows, whoever adds them, get the ratio. Rows without such a PyTorch row get none.
 */
export function addVsPytorch(rows: Row[], key: string[], value: string): void {
  const anchors = rows.filter((r) => r.backend === 'pytorch');
  for (const row of rows) {
    const anchor = row.backend === 'pytorch' ? undefined : anchors.find((a) => key.every((k) => a[k] === row[k]));
    if (anchor) row.vs_pytorch = (row[value] as number) / (anchor[value] as number);
  }
}

function lastLine(text: string): string {
  return text.trim().split('\n').at(-1) ?? '';
}
