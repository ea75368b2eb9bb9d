// The optional oracles some tests compare against (a Python with torch, transformers or
// safetensors; a Chromium), found once, each with the reason when it is missing. The suite prints
// them at its start (test/oracles-report.ts), and a test that needs one names why it skipped.
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';

export interface Oracle { name: string; path?: string; detail: string }

const repo = (relative: string) => new URL(`../${relative}`, import.meta.url).pathname;
const PYTHONS = [process.env.SWITCHYARD_ORACLE_PYTHON, repo('.venv-oracle/bin/python'), 'python3'].filter((p): p is string => !!p);
const HOW = 'make .venv-oracle: python3 -m venv .venv-oracle && .venv-oracle/bin/pip install torch transformers==5.18.0 sentencepiece (docs/anchors.md)';

/** The first Python that imports every one of `modules`, with their versions. */
function python(name: string, modules: string[]): Oracle {
  const probe = `import ${modules.join(', ')}; print(', '.join(m.__name__ + ' ' + getattr(m, '__version__', '?') for m in (${modules.join(', ')},)))`;
  for (const py of PYTHONS) {
    if (py.includes('/') && !existsSync(py)) continue;
    const r = spawnSync(py, ['-c', probe], { encoding: 'utf8', timeout: 60_000 });
    if (r.status === 0) return { name, path: py, detail: `${py}: ${r.stdout.trim()}` };
  }
  return { name, detail: `no Python imports ${modules.join(', ')} (tried ${PYTHONS.join(', ')}); ${HOW}` };
}

function chromium(): Oracle {
  const path = ['/usr/bin/chromium', '/usr/bin/chromium-browser'].find((p) => existsSync(p));
  return path ? { name: 'chromium', path, detail: path } : { name: 'chromium', detail: 'not installed (apt-get install chromium)' };
}

export const ORACLES = {
  transformers: python('transformers', ['torch', 'transformers']),
  safetensors: python('safetensors', ['safetensors', 'numpy']),
  chromium: chromium(),
};

/** A test's name with, where its oracle is missing, why it skips. */
export function needing(o: Oracle, name: string): string {
  return o.path ? `${name} (oracle: ${o.detail})` : `${name} (skipped: ${o.detail})`;
}
