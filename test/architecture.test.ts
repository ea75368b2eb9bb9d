// The dependency rule, read from the sources: each layer imports only the layers below it.
//   kernels ← model ← engine ← app ← cli (and index.ts, the API)
// model/ is the mathematics: no files, no clock, no threads. bench/ and test/ may use any layer.
import { readFileSync, readdirSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const LAYERS = ['kernels', 'model', 'engine', 'app', 'cli'] as const;
type Layer = (typeof LAYERS)[number];

function sources(dir: string): string[] {
  return readdirSync(join(root, dir), { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return e.name === 'assembly' || e.name === 'build' ? [] : sources(path);
    return /\.(ts|mjs)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [path] : [];
  });
}

/** Every module a file imports, statically or dynamically, as written. */
function imports(file: string): string[] {
  const text = readFileSync(join(root, file), 'utf8');
  return [...text.matchAll(/(?:^|\n)\s*(?:import|export)[^'"]*?from\s*['"]([^'"]+)['"]|import\(\s*['"]([^'"]+)['"]\s*\)/g)]
    .map((m) => (m[1] ?? m[2])!);
}

/** The layer a path inside the repository belongs to (index.ts sits with cli, at the top). */
function layerOf(path: string): Layer | undefined {
  if (path === 'index.ts') return 'cli';
  return LAYERS.find((l) => path === l || path.startsWith(`${l}/`));
}

const files = [...LAYERS.flatMap((l) => sources(l)), 'index.ts'];

describe('the dependency rule', () => {
  it('finds the sources it checks', () => {
    for (const layer of LAYERS) expect(files.some((f) => layerOf(f) === layer), layer).toBe(true);
  });

  it.each(files)('%s imports only from its own layer and those below', (file) => {
    const own = LAYERS.indexOf(layerOf(file)!);
    const upward = imports(file).filter((spec) => spec.startsWith('.')).flatMap((spec) => {
      const target = relative(root, resolve(root, dirname(file), spec));
      const layer = layerOf(target);
      return layer !== undefined && LAYERS.indexOf(layer) > own ? [`${spec} (${layer})`] : [];
    });
    expect(upward, `${file} reaches up`).toEqual([]);
  });

  it.each(files.filter((f) => layerOf(f) !== 'kernels'))('%s reaches the kernels through kernels/index.ts, never a backend', (file) => {
    const backends = imports(file).filter((spec) => /kernels\/(wasm|native|reference|arena-kernels)\b/.test(spec));
    expect(backends).toEqual([]);
  });

  it.each(files.filter((f) => layerOf(f) !== 'cli'))('%s never imports the benchmarks or the tests', (file) => {
    const beside = imports(file).filter((spec) => /^\.\.?\/(?:\.\.\/)*(bench|test)\//.test(spec));
    expect(beside).toEqual([]);
  });

  it.each(files.filter((f) => layerOf(f) === 'model'))('%s is pure mathematics: no files, clock, threads or processes', (file) => {
    const text = readFileSync(join(root, file), 'utf8');
    const nodeModules = imports(file).filter((spec) => spec.startsWith('node:'));
    expect(nodeModules, `${file} imports Node's modules`).toEqual([]);
    expect(text.match(/performance\.now|Date\.now|new Date\b|setTimeout|process\./g) ?? [], `${file} reads the clock or the process`).toEqual([]);
  });

  it('catches an upward import', () => {
    // The check itself: a model file importing from engine/ would be reported.
    const target = relative(root, resolve(root, 'model', '../engine/switch-engine.js'));
    expect(layerOf(target)).toBe('engine');
    expect(LAYERS.indexOf('engine')).toBeGreaterThan(LAYERS.indexOf('model'));
  });
});
