// Continued training under PyTorch distributed (scripts/continue_fsdp.py): a tiny model trained
// here and exported continues under torchrun with FSDP2 on 2 processes (gloo, CPU); its first
// step's loss is ours on the same batch, and the folder it saves imports back and evaluates here
// as transformers evaluates it. Runs wherever a Python with torch and transformers is found.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ORACLES, needing } from './oracles.js';
import { findCorpus, makeDataset, validationBatches, type Batch } from '../app/data.js';
import { exportRun, importRun } from '../app/interchange.js';
import { openRun } from '../app/run-folder.js';
import { train } from '../app/train.js';
import { evaluateRun } from '../index.js';
import { createKernels } from '../kernels/index.js';

const kernels = createKernels();
const python = ORACLES.transformers.path;
const SCRIPT = fileURLToPath(new URL('../scripts/continue_fsdp.py', import.meta.url));
const scratch = () => mkdtempSync(join(tmpdir(), 'switchyard-fsdp-'));

/** Rows of a batch as the script's batches files hold them: {"inputs": [[ids]], "targets": [[ids]]}. */
const rowsOf = (b: Batch) => ({
  inputs: Array.from({ length: b.batch }, (_, r) => Array.from(b.inputs.subarray(r * b.context, (r + 1) * b.context))),
  targets: Array.from({ length: b.batch }, (_, r) => Array.from(b.targets.subarray(r * b.context, (r + 1) * b.context))),
});
const batchOf = (rows: { inputs: number[][]; targets: number[][] }): Batch => ({
  inputs: Int32Array.from(rows.inputs.flat()), targets: Int32Array.from(rows.targets.flat()),
  batch: rows.inputs.length, context: rows.inputs[0]!.length,
});

function runPython(args: string[]) {
  const r = spawnSync(python!, args, { encoding: 'utf8', timeout: 600_000 });
  if (r.error) throw r.error;
  return r;
}

interface StepLine { step: number; loss: number; cross_entropy: number; aux_loss: number; z_loss: number; lr: number; grad_norm: number }

describe('continued training under PyTorch distributed (scripts/continue_fsdp.py)', () => {
  it.skipIf(!python)(needing(ORACLES.transformers,
    'torchrun, FSDP2, 2 processes: the first loss is ours on its batch; the saved folder imports and evaluates as transformers does'), async () => {
    // A tiny model trained here: two Switch layers (1 and 3), dropless, no jitter (transformers' Qwen2-MoE has neither capacity nor jitter).
    const dir = scratch(), corpus = join(dir, 'corpus.txt'), run = join(dir, 'run'), hf = join(dir, 'hf'), out = join(dir, 'continued');
    writeFileSync(corpus, readFileSync(new URL('../data/tinyshakespeare.txt', import.meta.url), 'utf8').slice(0, 20_000));
    await train({
      out: run, data: corpus, workers: 0,
      model: { context: 16, layers: 4, heads: 2, dModel: 16, dFF: 24, numExperts: 4, sparseStep: 2, capacityFactor: null, routerJitter: 0 },
      train: { steps: 2, batch: 4, evalEvery: 2, evalBatches: 3 },
    });
    await exportRun(run, hf, kernels);

    const steps = 3;
    const r = runPython(['-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2', SCRIPT,
      '--from', hf, '--steps', String(steps), '--lr', '0.01', '--warmup', '0', '--out', out]);
    expect(r.stderr).not.toMatch(/Traceback|Error/);
    expect(r.status).toBe(0);
    // FSDP2 shards: rank 0 holds about half the parameters.
    const [, held, total] = /2 processes \(gloo\), fsdp: rank 0 holds (\d+) of the (\d+) parameters/.exec(r.stderr) ?? [];
    expect(Number(held)).toBeGreaterThan(0);
    expect(Number(held)).toBeLessThan(0.6 * Number(total));

    // One JSON line per step, from rank 0 only.
    const lines = r.stdout.trim().split('\n').map((l) => JSON.parse(l) as StepLine);
    expect(lines.map((l) => l.step)).toEqual([1, 2, 3]);
    for (const l of lines) expect(Number.isFinite(l.loss) && Number.isFinite(l.grad_norm)).toBe(true);

    // The hand-over: our loss on the script's first batch, with the weights it started from.
    const first = batchOf((JSON.parse(readFileSync(join(out, 'first-batch.json'), 'utf8')) as { batches: { inputs: number[][]; targets: number[][] }[] }).batches[0]!);
    expect([first.batch, first.context]).toEqual([4, 16]);
    const start = openRun(run, kernels);
    const ours = await start.model.forward(first);
    const handOver = {
      loss: Math.abs(lines[0]!.loss - ours.loss), crossEntropy: Math.abs(lines[0]!.cross_entropy - ours.crossEntropy),
      auxLoss: Math.abs(lines[0]!.aux_loss - ours.auxLoss), zLoss: Math.abs(lines[0]!.z_loss - ours.zLoss),
    };
    console.log(`continue_fsdp hand-over, |theirs − ours| at step 1: ${JSON.stringify(handOver)}`);
    expect(handOver.loss).toBeLessThan(1e-4);
    for (const v of Object.values(handOver)) expect(v).toBeLessThan(1e-5);

    // The saved folder imports, finds its corpus through the carried switchyard section, and evaluates as transformers does.
    expect(existsSync(join(out, 'model.safetensors')) && existsSync(join(out, 'tokenizer.json'))).toBe(true);
    const back = join(dir, 'back');
    await importRun(out, back, kernels);
    const continued = openRun(back, kernels);
    expect(continued.step).toBe(0);
    expect(continued.config.model).toEqual(start.config.model);
    const t = continued.config.train;
    const corpusText = findCorpus(continued.config.data, back).text;
    const valBatches = validationBatches(makeDataset(corpusText, continued.tokenizer).val, t.batch, 16, t.evalBatches, t.seed);
    const ourEval = (await evaluateRun(continued)).valLoss;
    const startEval = (await evaluateRun(start)).valLoss;
    expect(Math.abs(ourEval - startEval), 'the continued weights differ from the exported ones').toBeGreaterThan(1e-3);
    let ourAux = 0;
    for (const b of valBatches) ourAux += (await continued.model.forward(b)).auxLoss / valBatches.length;
    await start.model.dispose();
    await continued.model.dispose();

    const batchesFile = join(dir, 'val-batches.json');
    writeFileSync(batchesFile, JSON.stringify({ batches: valBatches.map(rowsOf) }));
    const e = runPython([SCRIPT, '--from', out, '--eval-only', '--batches-from', batchesFile]);
    expect(e.stderr).not.toMatch(/Traceback|Error/);
    expect(e.status).toBe(0);
    const theirs = JSON.parse(e.stdout.trim()) as { batches: number; eval_loss: number; aux_loss: number; transformers_aux_loss: number };
    expect(theirs.batches).toBe(t.evalBatches);
    console.log(`continue_fsdp eval: ours ${ourEval}, transformers ${theirs.eval_loss}, |difference| ${Math.abs(ourEval - theirs.eval_loss)}; `
      + `aux loss on those batches: ours ${ourAux}, the script's ${theirs.aux_loss}, transformers' own ${theirs.transformers_aux_loss}`);
    expect(Math.abs(ourEval - theirs.eval_loss)).toBeLessThan(1e-5);
    expect(Math.abs(ourAux - theirs.aux_loss)).toBeLessThan(1e-6);
  }, 900_000);

  it.skipIf(!python)(needing(ORACLES.transformers, 'a folder that switchyard export did not write is refused by name'), () => {
    const dir = scratch();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ model_type: 'qwen2_moe' }));
    const r = runPython([SCRIPT, '--from', dir, '--steps', '1', '--out', join(dir, 'out')]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(`${join(dir, 'config.json')}: no \`switchyard\` section; this script continues folders written by \`switchyard export\``);
  }, 300_000);
});
