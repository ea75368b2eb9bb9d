import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/**
 * The compiled JavaScript of a thread entry point in engine/ (or `folder`: app/ has one too).
 * Threads run JavaScript, so when the engine itself runs from its TypeScript source (as under
 * vitest), the script comes from dist/, which `npm install` builds.
 */
export function compiledScript(name: string, folder: 'engine' | 'app' = 'engine'): string {
  const here = fileURLToPath(import.meta.url);
  const root = here.endsWith('.ts') ? join(dirname(here), '..', 'dist') : join(dirname(here), '..');
  const file = join(root, folder, name);
  if (!existsSync(file)) throw new Error(`engine: thread script ${file} is missing; run \`npm run build\``);
  return file;
}

/**
 * Node flags for our threads: the process's own, less those that only make sense for a main
 * script (`node --input-type=module -e …` would otherwise stop every worker from starting).
 */
export function threadExecArgv(): string[] {
  return process.execArgv.filter((flag) => !flag.startsWith('--input-type'));
}
