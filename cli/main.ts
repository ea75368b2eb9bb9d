#!/usr/bin/env node
// The `switchyard` command: a thin layer over the typed API.
import { Command, Option } from 'commander';
import { BACKENDS, type BackendName, createKernels } from '../kernels/index.js';
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
  .action((files: string[], options: { backend: BackendName }) => {
    const ok = checkReferenceFiles(createKernels({ backend: options.backend }), files, (line) => console.log(line));
    process.exitCode = ok ? 0 : 1;
  });

await program.parseAsync();
