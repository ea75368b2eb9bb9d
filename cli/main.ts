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
import { runKind } from '../app/run-folder.js';
import { isSwitchTransformersFolder } from '../app/switch-transformers.js';

/** The switch-transformers commands, loaded when used: the tokenizers library's native module takes a second to load. */
const seq2seq = () => import('./switch-transformers.js');

const program = new Command('switchyard')
  .description('Switch Transformers (sparse mixture-of-experts) on Node.js')
  .showHelpAfterError()
  .configureOutput({ outputError: (text, write) => write(text) });

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

function backendOption(fallback: ExpertBackend): Option {
  return new Option('--backend <name>', 'what computes the experts: wasm (WebAssembly workers), gpujs (gpu.js on every worker), '
    + 'or auto (times both once per machine and shape, adds a gpu.js worker where that is faster)').choices(EXPERT_BACKENDS).default(fallback);
}
function gpujsModeOption(): Option {
  return new Option('--gpujs-mode <mode>', 'gpu.js mode for --backend gpujs (default: the fastest here; GPU modes need the webgpu or gl bindings)')
    .choices(GPUJS_MODES);
}

program
  .command('train')
  .description('train a Switch Transformer language model (default: the tiny preset on tiny-shakespeare)')
  .addOption(new Option('--preset <name>', 'model and training preset').choices(Object.keys(PRESETS)).default('tiny'))
  .addOption(new Option('--arch <name>', 'architecture: gpt (LayerNorm, learned positions, GELU) or qwen2-moe (RMSNorm, rotary, SwiGLU; exportable; the presets\' default)').choices(Object.keys(ARCHITECTURES)))
  .option('--data <file>', 'a UTF-8 text file to train on (default: the embedded tiny-shakespeare)')
  .addOption(new Option('--tokenizer <kind>', 'char: the corpus\'s characters, as nanoGPT; byte: UTF-8 bytes').choices(['char', 'byte']).default('char'))
  .option('--steps <n>', 'training steps', integer(1))
  .option('--out <dir>', 'the run folder (default: runs/<preset>-<date>-<time>)')
  .option('--seed <n>', 'seed for initialization, data order, dropout and jitter', integer(0))
  .option('--workers <n>', `expert worker threads; 0 runs the experts in the main thread (default: ${availableParallelism()})`, integer(0))
  .option('--resume', 'continue the run in --out from its checkpoint')
  .addOption(backendOption('wasm'))
  .addOption(gpujsModeOption())
  .addOption(new Option('--expert-dtype <dtype>', 'how expert weights are stored for compute').choices(['f32', 'bf16']))
  .option('--experts <n>', 'experts per Switch layer; 0 trains a dense model', integer(0))
  .option('--capacity-factor <x>', 'expert capacity factor, or "dropless"', (v: string) => (v === 'dropless' ? null : number((n) => n > 0, 'a number > 0 or "dropless"')(v)))
  .option('--batch <n>', 'sequences per step', integer(1))
  .option('--lr <x>', 'peak learning rate', number((n) => n > 0, 'a number > 0'))
  .option('--eval-every <n>', 'steps between validations', integer(1))
  .action(async (o: {
    preset: keyof typeof PRESETS; arch?: keyof typeof ARCHITECTURES; data?: string; tokenizer: 'char' | 'byte'; steps?: number; out?: string; seed?: number;
    workers?: number; resume?: boolean; backend: ExpertBackend; gpujsMode?: GpujsMode; expertDtype?: 'f32' | 'bf16'; experts?: number;
    capacityFactor?: number | null; batch?: number; lr?: number; evalEvery?: number;
  }) => {
    if (o.resume && !o.out) throw new InvalidArgumentError('--resume needs --out <run folder>');
    const stamp = new Date().toISOString().replace(/[-:]/g, '').replace('T', '-').slice(0, 15);
    await trainCommand({
      preset: o.preset, tokenizer: o.tokenizer, out: o.out ?? `runs/${o.preset}-${stamp}`,
      ...(o.data !== undefined && { data: o.data }),
      ...(o.resume && { resume: true }),
      ...(o.workers !== undefined && { workers: o.workers }),
      backend: o.backend, ...(o.gpujsMode && { gpujsMode: o.gpujsMode }),
      model: {
        ...(o.arch && ARCHITECTURES[o.arch]),
        ...(o.expertDtype && { expertDtype: o.expertDtype }),
        ...(o.experts !== undefined && { numExperts: o.experts }),
        ...(o.capacityFactor !== undefined && { capacityFactor: o.capacityFactor }),
      },
      train: {
        ...(o.steps !== undefined && { steps: o.steps }), ...(o.seed !== undefined && { seed: o.seed }),
        ...(o.batch !== undefined && { batch: o.batch }), ...(o.lr !== undefined && { learningRate: o.lr }),
        ...(o.evalEvery !== undefined && { evalEvery: o.evalEvery }),
      },
    });
  });

program
  .command('eval')
  .description("a run's validation loss and perplexity; for a switch-transformers run, the loss on --data pairs")
  .requiredOption('--run <dir>', 'the run folder')
  .option('--data <file>', 'switch-transformers runs: a JSONL file of {"input", "target"} lines; the loss is the mean cross-entropy over every target token')
  .option('--json', 'switch-transformers runs: print {loss, perplexity, tokens, pairs, step} as JSON')
  .action(async (o: { run: string; data?: string; json?: boolean }) => {
    if (runKind(o.run) === 'switch-transformers') return (await seq2seq()).evalCommand(o.run, o);
    if (o.data || o.json) throw new InvalidArgumentError('--data and --json are for switch-transformers runs; a language model is evaluated on its own corpus');
    const run = loadRun(o.run);
    const r = await evaluateRun(run);
    console.log(`step ${r.step}: validation loss ${r.valLoss.toFixed(4)}, perplexity ${r.perplexity.toFixed(3)}`);
    await run.model.dispose();
  });

program
  .command('generate')
  .description('sample text from a trained run; a switch-transformers run answers its prompt (span filling: "The <extra_id_0> walks in <extra_id_1> park .")')
  .requiredOption('--run <dir>', 'the run folder')
  .option('--prompt <text>', 'text to continue (switch-transformers: the encoder\'s input)', '')
  .option('--tokens <n>', 'tokens to generate (default: 300; switch-transformers: 32, stopping at </s>)', integer(0))
  .option('--temperature <x>', 'sampling temperature; 0 always takes the most likely token (default: 0.8; switch-transformers: 0, transformers\' greedy generate)',
    number((n) => n >= 0, 'a number ≥ 0'))
  .option('--top-k <n>', 'sample among the k most likely tokens; 0 = all (default: 40; switch-transformers: 0)', integer(0))
  .option('--seed <n>', 'seed of the sampling', integer(0), 1)
  .option('--no-cache', 'switch-transformers: recompute the decoder\'s prefix every step, so its Switch layers drop tokens over capacity '
    + '(transformers\' generate(use_cache=False)); by default the keys and values are cached and one token per sequence is routed')
  .option('--json', 'switch-transformers: print the new {ids, text} as JSON')
  .action(async (o: { run: string; prompt: string; tokens?: number; temperature?: number; topK?: number; seed: number; cache: boolean; json?: boolean }) => {
    if (runKind(o.run) === 'switch-transformers') return (await seq2seq()).generateCommand(o.run, o);
    if (!o.cache || o.json) throw new InvalidArgumentError('--no-cache and --json are for switch-transformers runs');
    const run = loadRun(o.run);
    console.log(await generate(run, { prompt: o.prompt, maxTokens: o.tokens ?? 300, temperature: o.temperature ?? 0.8, topK: o.topK ?? 40, seed: o.seed }));
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
  .description('read a Hugging Face folder into a run folder: Qwen2-MoE (for eval, generate, train --resume) or Switch Transformers '
    + '(google/switch-base-8 and kin: for eval --data, generate, finetune)')
  .requiredOption('--from <dir>', 'the Hugging Face folder (config.json, safetensors, tokenizer.json)')
  .requiredOption('--out <dir>', 'the run folder to write')
  .addOption(new Option('--format <name>', 'checkpoint format (default: from config.json\'s model_type)').choices(['qwen2-moe', 'switch-transformers']))
  .action(async (o: { from: string; out: string; format?: string }) => {
    if ((o.format ?? (isSwitchTransformersFolder(o.from) ? 'switch-transformers' : 'qwen2-moe')) === 'switch-transformers') {
      return (await seq2seq()).importCommand(o.from, o.out);
    }
    await importRun(o.from, o.out, createKernels());
    console.log(`wrote ${o.out}: config.json, checkpoint.safetensors (step 0)`);
  });

program
  .command('finetune')
  .description('fine-tune an imported switch-transformers run on {"input", "target"} pairs (checkpoints, log.jsonl, --resume as train)')
  .option('--from <dir>', 'the run to start from (switchyard import --format switch-transformers)')
  .option('--data <file>', 'a JSONL file of {"input", "target"} lines; every tenth is held out for validation (with ten or more)')
  .requiredOption('--out <dir>', 'the run folder to write, or to resume')
  .option('--resume', 'continue the run in --out from its checkpoint')
  .option('--steps <n>', 'training steps (default 100)', integer(1))
  .option('--batch <n>', 'pairs per step (default 8)', integer(1))
  .option('--lr <x>', 'learning rate (default 1e-4, after 10 warm-up steps)', number((n) => n > 0, 'a number > 0'))
  .option('--eval-every <n>', 'steps between validations and checkpoints (default 50)', integer(1))
  .option('--seed <n>', 'seed of the batches and the router jitter', integer(0))
  .option('--workers <n>', `worker threads for the experts and dense FFNs; 0 computes in the main thread (default: ${availableParallelism()})`, integer(0))
  .action(async (o: { from?: string; data?: string; out: string; resume?: boolean; steps?: number; batch?: number; lr?: number; evalEvery?: number;
    seed?: number; workers?: number }) => {
    if (o.resume && (o.from || o.data)) throw new InvalidArgumentError('--resume continues --out with its own weights and data; drop --from and --data');
    await (await seq2seq()).finetuneCommand({
      out: o.out, ...(o.from && { from: o.from }), ...(o.data && { data: o.data }), ...(o.resume && { resume: true }),
      ...(o.workers !== undefined && { workers: o.workers }),
      train: {
        ...(o.steps !== undefined && { steps: o.steps }), ...(o.batch !== undefined && { batch: o.batch }),
        ...(o.lr !== undefined && { learningRate: o.lr, minLearningRate: o.lr }), ...(o.evalEvery !== undefined && { evalEvery: o.evalEvery }),
        ...(o.seed !== undefined && { seed: o.seed }),
      },
    });
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
