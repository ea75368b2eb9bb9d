#!/usr/bin/env node
// The `switchyard` command: a thin layer over the typed API.
import { Command, InvalidArgumentError, Option } from 'commander';
import { SwitchEngine } from '../engine/switch-engine.js';
import { BACKENDS, type BackendName, createKernels } from '../kernels/index.js';
import { inProcess } from '../model/reference-case.js';
import { checkReferenceFiles } from './check-reference.js';

const program = new Command('switchyard')
  .description('Switch Transformers (sparse mixture-of-experts) on Node.js')
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

program
  .command('check-reference')
  .description('run reference cases (shared/reference format) through the Switch layer and compare every output and gradient')
  .argument('<file...>', 'case files (JSON)')
  .addOption(new Option('--backend <name>', 'kernel backend').choices(BACKENDS).default('wasm'))
  .option('--workers <n>', 'run the experts on N worker threads through the engine (wasm backend)', positiveInteger)
  .action(async (files: string[], options: { backend: BackendName; workers?: number }) => {
    const log = (line: string) => console.log(line);
    let ok: boolean;
    if (options.workers !== undefined) {
      if (options.backend !== 'wasm') throw new InvalidArgumentError('--workers needs the wasm backend');
      const workers = options.workers;
      ok = await checkReferenceFiles(`engine with ${workers} worker${workers > 1 ? 's' : ''}`,
        (o) => new SwitchEngine({ ...o, workers }), files, log);
    } else {
      const kernels = createKernels({ backend: options.backend });
      ok = await checkReferenceFiles(`in process, backend ${kernels.name}`, inProcess(kernels), files, log);
    }
    process.exitCode = ok ? 0 : 1;
  });

function positiveInteger(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got '${value}'`);
  return n;
}

await program.parseAsync();
