#!/usr/bin/env node
// The `switchyard` command: a thin layer over the typed API.
import { Command, InvalidArgumentError, Option } from 'commander';
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, join } from 'node:path';
import { readRun, renderReport, routingSection } from '../app/report.js';
import { exportRun, importRun } from '../app/interchange.js';
import { calibrationFile } from '../app/calibration-file.js';
import { writeFileAtomic } from '../app/files.js';
import { SwitchEngine } from '../engine/switch-engine.js';
import { ARCHITECTURES, PRESETS } from '../model/config.js';
import { BACKENDS as KERNEL_BACKENDS, type BackendName, createKernels } from '../kernels/index.js';
import { GPUJS_MODES, type GpujsMode } from '../kernels/gpujs/device.js';
import { EXPERT_BACKENDS, type ExpertBackend } from '../engine/devices.js';
import { inProcess } from '../app/reference-case.js';
import { type ServeOptions, evaluateRun, loadRun } from '../index.js';
import { benchCommand } from './bench.js';
import { infoCommand } from './info.js';
import { checkReferenceFiles } from './check-reference.js';
import { type GenerateCommand, generateCommand } from './generate.js';
import { serveCommand } from './serve.js';
import { trainCommand } from './train.js';
import { DEFAULT_CHECKPOINT_EVERY, type PresetName } from '../app/train.js';
import { flagParser } from '../app/options.js';
import { runKind } from '../app/run-folder.js';
import { isSwitchTransformersFolder } from '../app/switch-transformers.js';
import type { TokenizerChoice } from '../app/tokenizer.js';

/** The switch-transformers commands, loaded when used: the tokenizers library's native module takes a second to load. */
const seq2seq = () => import('./switch-transformers.js');

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
  .description("a run's validation loss and perplexity; for a switch-transformers run, the loss on --data pairs")
  .requiredOption('--run <dir>', 'the run folder')
  .option('--data <file>', 'the run\'s corpus, where it is not at the path the run recorded; for a switch-transformers run, a JSONL file of '
    + '{"input", "target"} lines (the loss is the mean cross-entropy over every target token)')
  .option('--json', 'switch-transformers runs: print {loss, perplexity, tokens, pairs, step} as JSON')
  .action(async (o: { run: string; data?: string; json?: boolean }) => {
    if (runKind(o.run) === 'switch-transformers') return (await seq2seq()).evalCommand(o.run, o);
    if (o.json) throw new InvalidArgumentError('--json is for switch-transformers runs');
    const run = loadRun(o.run);
    const r = await evaluateRun(run, o.data === undefined ? {} : { data: o.data });
    console.log(`step ${r.step}: validation loss ${r.valLoss.toFixed(4)}, perplexity ${r.perplexity.toFixed(3)}`);
    await run.model.dispose();
  });

program
  .command('generate')
  .description('text from a trained run, printed as it is generated; a switch-transformers run answers its prompt '
    + '(span filling: "The <extra_id_0> walks in <extra_id_1> park .")')
  .requiredOption('--run <dir>', 'the run folder')
  .option('--prompt <text>', 'text to continue (switch-transformers: the encoder\'s input)', '')
  .option('--tokens <n>', 'tokens to generate (default: 300; switch-transformers: 32, stopping at </s>)', integer(0))
  .option('--temperature <x>', 'sampling temperature; 0 always takes the most likely token (default: 0.8; switch-transformers: 0, transformers\' greedy generate)',
    number((n) => n >= 0, 'a number ≥ 0'))
  .option('--top-k <n>', 'sample among the k most likely tokens; 0 = all (default: 40; switch-transformers: 0)', integer(0))
  .option('--seed <n>', 'seed of the sampling', integer(0), 1)
  .addOption(new Option('--at-context <policy>', "when the model's context is full: stop, or slide the window on (keeping its last half)")
    .choices(['stop', 'slide']).default('stop'))
  .option('--no-cache', 'recompute the whole window for every token instead of keeping keys and values (the reference path; slower); '
    + 'switch-transformers: recompute the decoder\'s prefix every step, so its Switch layers drop tokens over capacity (transformers\' generate(use_cache=False))')
  .addOption(new Option('--capacity <mode>', 'expert capacity while generating: dropless (every token reaches its expert), or configured '
    + '(the model\'s capacity factor over each step\'s tokens; docs/inference.md)').choices(['dropless', 'configured']).default('dropless'))
  .option('--show-experts', 'colour each token by the expert it went to (a terminal; else a listing), and routing in --json')
  .option('--json', 'print one JSON object at the end: prompt_ids, ids, text, finish_reason (and the routing with --show-experts); '
    + 'switch-transformers: the new {ids, text}')
  .action(async (o: Omit<GenerateCommand, 'tokens' | 'temperature' | 'topK'> & { tokens?: number; temperature?: number; topK?: number }) => {
    if (runKind(o.run) === 'switch-transformers') return (await seq2seq()).generateCommand(o.run, { ...o, cache: o.cache !== false });
    return generateCommand({ ...o, tokens: o.tokens ?? 300, temperature: o.temperature ?? 0.8, topK: o.topK ?? 40 });
  });

program
  .command('serve')
  .description('an OpenAI-style completions server over a run: POST /v1/completions (stream: server-sent events), GET /v1/models, GET /health')
  .requiredOption('--run <dir>', 'the run folder')
  .option('--port <n>', 'the port; 0 picks a free one', integer(0), 8000)
  .option('--host <address>', 'the address to listen on; 0.0.0.0 (or ::) opens the server to the network', '127.0.0.1')
  .option('--max-batch <n>', 'sequences decoded together at most', integer(1), 32)
  .option('--max-queue <n>', 'requests waiting beyond --max-batch; more are answered 429', integer(0), 64)
  .option('--max-tokens-limit <n>', 'the largest max_tokens a request may ask', integer(1), 4096)
  .option('--drain <seconds>', 'on SIGTERM or Ctrl-C, how long requests in flight may finish before they are cancelled', number((n) => n >= 0, 'a number ≥ 0'), 10)
  .option('--no-cache', 'recompute the whole window for every token (the reference path; slower)')
  .addOption(new Option('--capacity <mode>', 'expert capacity while generating (see generate --help)').choices(['dropless', 'configured']).default('dropless'))
  .action((o: ServeOptions & { drain: number }) => serveCommand(o));

program
  .command('info')
  .description('what this machine runs: the CPU kernels and why, gpu.js\'s modes, where --backend auto would put the experts')
  .option('--json', 'everything as JSON (kernels, CPU features, native build, gpu.js probe, calibrations)')
  .option('--measure', 'calibrate what --backend auto has not measured here yet (seconds)')
  .action((o: { json?: boolean; measure?: boolean }) => infoCommand(o));

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
  .option('--prompt <text>', "also show where each of this text's tokens goes in every Switch layer")
  .action(async (o: { run: string; out?: string; prompt?: string }) => {
    const out = o.out ?? join(o.run, 'report.html');
    // A run with no training log (an imported one) can still show a prompt's routing.
    const runs = o.prompt !== undefined && !existsSync(join(o.run, 'log.jsonl')) ? [] : [readRun(o.run, basename(o.run))];
    let routing = '';
    if (o.prompt !== undefined) {
      const run = loadRun(o.run);
      routing = await routingSection(run, o.prompt);
      await run.model.dispose();
    }
    writeFileAtomic(out, renderReport(`Switchyard run ${o.run}`, runs, runs.length ? '' : 'This run has no training log.', { after: routing }));
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
    const notes = await importRun(o.from, o.out, createKernels());
    console.log(`wrote ${o.out}: config.json, checkpoint.safetensors (step 0)`);
    for (const note of notes) console.log(`  ${note}`);
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
