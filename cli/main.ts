#!/usr/bin/env node
// The `switchyard` command: a thin layer over the typed API.
import { Command, InvalidArgumentError, Option } from 'commander';
import { availableParallelism } from 'node:os';
import { basename, join } from 'node:path';
import { readRun, renderReport } from '../app/report.js';
import { exportRun, importRun } from '../app/interchange.js';
import { calibrationFile } from '../app/calibration-file.js';
import { writeFileAtomic } from '../app/files.js';
import { SwitchEngine } from '../engine/switch-engine.js';
import { ARCHITECTURES, PRESETS } from '../model/config.js';
import { BACKENDS as KERNEL_BACKENDS, type BackendName, createKernels } from '../kernels/index.js';
import { GPUJS_MODES, type GpujsMode } from '../kernels/gpujs/device.js';
import { EXPERT_BACKENDS, type ExpertBackend } from '../engine/devices.js';
import { inProcess } from '../app/reference-case.js';
import { evaluateRun, generate, loadRun } from '../index.js';
import { benchCommand } from './bench.js';
import { checkReferenceFiles } from './check-reference.js';
import { trainCommand } from './train.js';
import { DEFAULT_CHECKPOINT_EVERY, type PresetName } from '../app/train.js';
import { flagParser } from '../app/options.js';
import type { TokenizerChoice } from '../app/tokenizer.js';

const program = new Command('switchyard')
  .description('Switch Transformers (sparse mixture-of-experts) on Node.js')
  // One line for a bad flag, and where the flags are listed, rather than the whole help.
  .showHelpAfterError('(add --help to the command to list its flags)')
  .configureOutput({ outputError: (text, write) => write(text) });

/** A flag's parser from the one table of training options (app/options.ts): the same check and words as the API's. */
function option(flag: string): (value: string) => unknown {
  const parse = flagParser(flag);
  return (value) => {
    try {
      return parse(value);
    } catch (error) {
      throw new InvalidArgumentError((error as Error).message);
    }
  };
}

function integer(min: number) {
  return (value: string): number => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < min) throw new InvalidArgumentError(`expected a whole number ≥ ${min}, got '${value}'`);
    return n;
  };
}
function number(check: (n: number) => boolean, what: string) {
  return (value: string): number => {
    const n = Number(value);
    if (value.trim() === '' || !Number.isFinite(n) || !check(n)) throw new InvalidArgumentError(`expected ${what}, got '${value}'`);
    return n;
  };
}

function backendOption(): Option {
  return new Option('--backend <name>', 'what computes the experts: wasm (the CPU kernels on worker threads; the default), gpujs (gpu.js on every worker), '
    + 'or auto (times both once per machine and shape; a gpu.js GPU mode is added beside the CPU workers, a CPU mode takes a worker\'s place, each only where that shortens the step)').choices(EXPERT_BACKENDS);
}
function gpujsModeOption(): Option {
  return new Option('--gpujs-mode <mode>', 'gpu.js mode for --backend gpujs (default: the fastest here; GPU modes need the webgpu or gl bindings)')
    .choices(GPUJS_MODES);
}

program
  .command('train')
  .description('train a Switch Transformer language model (default: the tiny preset on tiny-shakespeare)')
  .addOption(new Option('--preset <name>', 'model and training preset (default: tiny)').choices(Object.keys(PRESETS)))
  .addOption(new Option('--arch <name>', 'architecture: gpt (LayerNorm, learned positions, GELU) or qwen2-moe (RMSNorm, rotary, SwiGLU; exportable; the presets\' default)').choices(Object.keys(ARCHITECTURES)))
  .option('--data <name|file>', 'a corpus by name (tinyshakespeare, embedded and the default, or one built by `npm run corpus`, e.g. mix) or a UTF-8 text file; with --resume, where the run\'s own corpus now is')
  .option('--tokenizer <kind>', 'char: the corpus\'s characters, as nanoGPT; byte: UTF-8 bytes; gpt2: GPT-2\'s byte-level BPE; gpt2-N: its first N tokens (default: char)', option('--tokenizer'))
  .option('--steps <n>', 'training steps', option('--steps'))
  .option('--out <dir>', 'the run folder (default: runs/<preset>-<date>-<time>)')
  .option('--seed <n>', 'seed for initialization, data order, dropout and jitter', option('--seed'))
  .option('--workers <n>', `expert worker threads; 0 runs the experts in the main thread (default: ${availableParallelism()})`, option('--workers'))
  .option('--resume', 'continue the run in --out from its checkpoint (schedule flags such as --steps and --lr apply; model and data flags are refused)')
  .addOption(backendOption())
  .addOption(gpujsModeOption())
  .addOption(new Option('--expert-dtype <dtype>', 'how expert weights are stored for compute').choices(['f32', 'bf16']))
  .option('--experts <n>', 'experts per Switch layer; 0 trains a dense model', option('--experts'))
  .option('--capacity-factor <x>', 'expert capacity factor, or "dropless"', option('--capacity-factor'))
  .option('--batch <n>', 'sequences per step', option('--batch'))
  .option('--lr <x>', 'peak learning rate', option('--lr'))
  .option('--eval-every <n>', 'steps between validations', option('--eval-every'))
  .option('--checkpoint-every <n>', `steps between checkpoints, besides one at every validation and on a stop (default: ${DEFAULT_CHECKPOINT_EVERY})`, option('--checkpoint-every'))
  .option('--keep-best', 'also keep the checkpoint with the lowest validation loss (checkpoint-best.safetensors)')
  .action(async (o: {
    preset?: PresetName; arch?: keyof typeof ARCHITECTURES; data?: string; tokenizer?: TokenizerChoice; steps?: number; out?: string; seed?: number;
    workers?: number; resume?: boolean; backend?: ExpertBackend; gpujsMode?: GpujsMode; expertDtype?: 'f32' | 'bf16'; experts?: number;
    capacityFactor?: number | null; batch?: number; lr?: number; evalEvery?: number; checkpointEvery?: number; keepBest?: boolean;
  }) => {
    if (o.resume && !o.out) throw new InvalidArgumentError('--resume needs --out <run folder>');
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
    const given = <T extends object>(fields: T) => Object.fromEntries(Object.entries(fields).filter(([, v]) => v !== undefined)) as Partial<T>;
    await trainCommand({
      out: o.out ?? `runs/${o.preset ?? 'tiny'}-${stamp}`,
      ...given({
        preset: o.preset, arch: o.arch, tokenizer: o.tokenizer, data: o.data, resume: o.resume, workers: o.workers, backend: o.backend,
        gpujsMode: o.gpujsMode, checkpointEvery: o.checkpointEvery, keepBest: o.keepBest,
      }),
      model: given({ expertDtype: o.expertDtype, numExperts: o.experts, capacityFactor: o.capacityFactor }),
      train: given({ steps: o.steps, seed: o.seed, batch: o.batch, learningRate: o.lr, evalEvery: o.evalEvery }),
    });
  });

program
  .command('eval')
  .description("a run's validation loss and perplexity")
  .requiredOption('--run <dir>', 'the run folder')
  .option('--data <file>', 'the run\'s corpus, where it is not at the path the run recorded')
  .action(async (o: { run: string; data?: string }) => {
    const run = loadRun(o.run);
    const r = await evaluateRun(run, o.data === undefined ? {} : { data: o.data });
    console.log(`step ${r.step}: validation loss ${r.valLoss.toFixed(4)}, perplexity ${r.perplexity.toFixed(3)}`);
    await run.model.dispose();
  });

program
  .command('generate')
  .description('sample text from a trained run')
  .requiredOption('--run <dir>', 'the run folder')
  .option('--prompt <text>', 'text to continue', '')
  .option('--tokens <n>', 'tokens to generate', integer(0), 300)
  .option('--temperature <x>', 'sampling temperature; 0 always takes the most likely token', number((n) => n >= 0, 'a number ≥ 0'), 0.8)
  .option('--top-k <n>', 'sample among the k most likely tokens; 0 = all', integer(0), 40)
  .option('--seed <n>', 'seed of the sampling', integer(0), 1)
  .action(async (o: { run: string; prompt: string; tokens: number; temperature: number; topK: number; seed: number }) => {
    const run = loadRun(o.run);
    console.log(await generate(run, { prompt: o.prompt, maxTokens: o.tokens, temperature: o.temperature, topK: o.topK, seed: o.seed }));
    await run.model.dispose();
  });

program
  .command('bench')
  .description('the quick benchmark suite: GEMM, the Switch layer on 1…all cores, a training step, generation')
  .option('--json <file>', 'also write every figure, with the machine\'s description, as JSON')
  .option('--full', 'add the expert GEMM shapes, the MEDIUM layer and the small preset (minutes)')
  .action((o: { json?: string; full?: boolean }) => benchCommand(o));

program
  .command('report')
  .description('an HTML report of a run: loss curves, dropped tokens, expert load over training (inline SVG, no network)')
  .requiredOption('--run <dir>', 'the run folder')
  .option('--out <file>', 'where to write it (default: <run>/report.html)')
  .action((o: { run: string; out?: string }) => {
    const out = o.out ?? join(o.run, 'report.html');
    writeFileAtomic(out, renderReport(`Switchyard run ${o.run}`, [readRun(o.run, basename(o.run))]));
    console.log(`wrote ${out}`);
  });

program
  .command('export')
  .description('write a run as a Hugging Face Qwen2-MoE folder (config.json, model.safetensors, tokenizer.json)')
  .requiredOption('--run <dir>', 'the run folder')
  .addOption(new Option('--format <name>', 'checkpoint format').choices(['qwen2-moe']).default('qwen2-moe'))
  .requiredOption('--out <dir>', 'the folder to write')
  .action(async (o: { run: string; out: string }) => {
    await exportRun(o.run, o.out, createKernels());
    console.log(`wrote ${o.out}: config.json, model.safetensors, tokenizer.json, tokenizer_config.json`);
  });

program
  .command('import')
  .description('read a Hugging Face Qwen2-MoE folder into a run folder (for eval, generate, train --resume)')
  .requiredOption('--from <dir>', 'the Qwen2-MoE folder')
  .requiredOption('--out <dir>', 'the run folder to write')
  .action(async (o: { from: string; out: string }) => {
    const notes = await importRun(o.from, o.out, createKernels());
    console.log(`wrote ${o.out}: config.json, checkpoint.safetensors (step 0)`);
    for (const note of notes) console.log(`  ${note}`);
  });

program
  .command('check-reference')
  .description('run reference cases (format: test/reference/FORMAT.md) through the Switch layer and compare every output and gradient')
  .argument('<file...>', 'case files (JSON)')
  .addOption(new Option('--backend <name>', 'wasm or reference: the kernels, in this thread (or the engine\'s workers with --workers); '
    + 'gpujs or auto: the engine, experts on gpu.js or on what auto chooses').choices([...KERNEL_BACKENDS, 'gpujs', 'auto']).default('wasm'))
  .addOption(gpujsModeOption())
  .option('--workers <n>', 'run the experts on N worker threads through the engine (wasm, gpujs, auto; default for gpujs and auto: 1)', integer(1))
  .action(async (files: string[], options: { backend: BackendName | 'gpujs' | 'auto'; gpujsMode?: GpujsMode; workers?: number }) => {
    const log = (line: string) => console.log(line);
    let ok: boolean;
    const { backend, gpujsMode } = options;
    if (gpujsMode && backend !== 'gpujs') throw new InvalidArgumentError('--gpujs-mode needs --backend gpujs');
    if (backend === 'gpujs' || backend === 'auto' || options.workers !== undefined) {
      if (backend === 'reference') throw new InvalidArgumentError('--workers needs the wasm, gpujs or auto backend');
      const workers = options.workers ?? 1;
      const on = backend === 'gpujs' ? `, experts on gpu.js ${gpujsMode ?? '(its fastest mode here)'}` : backend === 'auto' ? ', devices chosen by auto' : '';
      ok = await checkReferenceFiles(`engine with ${workers} worker${workers > 1 ? 's' : ''}${on}`,
        (o) => new SwitchEngine({ ...o, workers, backend, ...(gpujsMode && { gpujsMode }), calibration: calibrationFile() }), files, log);
    } else {
      const kernels = createKernels({ backend });
      ok = await checkReferenceFiles(`in process, backend ${kernels.name}`, inProcess(kernels), files, log);
    }
    process.exitCode = ok ? 0 : 1;
  });

try {
  await program.parseAsync();
} catch (error) {
  console.error(`switchyard: ${(error as Error).message}`);
  process.exitCode = 1;
}
