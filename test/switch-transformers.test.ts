// Google's Switch Transformers against transformers 5.18's SwitchTransformersForConditionalGeneration:
// the oracle's outputs committed in test/fixtures/switch-transformers (made by
// test/oracle/switch_transformers.py), and, where a Python with torch and transformers 5.18 is
// found, the oracle run live on folders that transformers itself saved. Tolerances (float32):
// logits 1e-5 relative (L2), router probabilities 3e-5 absolute, losses 1e-5 relative, gradients
// 1e-4 of each tensor's gradient norm (torch's own float32 gradients differ from its float64 ones
// by 2.6e-5 on this model); router choices, keep masks, generated ids and tokenizer ids exactly.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { loadTokenizer } from '../app/hf-tokenizer.js';
import { type SafetensorsReader, decodeSafetensors, encodeSafetensors } from '../app/safetensors.js';
import { pairsLoss } from '../app/seq2seq-eval.js';
import { GREEDY, generateIds } from '../app/seq2seq-generate.js';
import { type Seq2SeqRun, importSwitchTransformers, openSeq2SeqRun, readPairs } from '../app/seq2seq-run.js';
import { checkMemory, configFromHf, hfSources } from '../app/switch-transformers.js';
import { createKernels } from '../kernels/index.js';
import { shiftRight } from '../model/t5/encoder-decoder.js';
import { relativeBucket } from '../model/t5/relative-position.js';
import { type Expected, FIXTURES, oraclePython, readExpected, signs, writeHfFolder } from './switch-transformers-fixture.js';

const kernels = createKernels();
const scratch = () => mkdtempSync(join(tmpdir(), 'switchyard-st-'));
const opened: Seq2SeqRun[] = [];
afterAll(async () => { for (const run of opened) await run.model.dispose(); });

async function importRun(from: string): Promise<Seq2SeqRun> {
  const out = scratch();
  await importSwitchTransformers(from, out, kernels);
  const run = openSeq2SeqRun(out, kernels, { gradients: true });
  opened.push(run);
  return run;
}

function relative(got: ArrayLike<number>, want: ArrayLike<number>): number {
  let err = 0, norm = 0;
  for (let i = 0; i < want.length; i++) { err += (got[i]! - want[i]!) ** 2; norm += want[i]! ** 2; }
  return Math.sqrt(err / norm);
}

function batchOf(e: Expected) {
  const B = e.input_ids.length, S = e.input_ids[0]!.length, T = e.labels[0]!.length;
  const labels = Int32Array.from(e.labels.flat());
  return {
    batch: B, inputs: Int32Array.from(e.input_ids.flat()), inputMask: Uint8Array.from(e.attention_mask.flat()), inputLength: S,
    decoderInputs: shiftRight(labels, B, T, 0, 0), targetLength: T, labels,
  };
}

/** Everything the oracle computed, for the runs imported with capacity 3 and 64. */
function checkAgainstOracle(label: string, runs: () => { 3: Seq2SeqRun; 64: Seq2SeqRun }, oracle: () => { values: Expected; tensors: SafetensorsReader }) {
  describe(label, () => {
    it.each([3, 64] as const)('capacity %i: logits, router probabilities, choices, keep masks and losses', async (cap) => {
      const { values, tensors } = oracle(), run = runs()[cap], want = values[`cap${cap}`];
      const r = await run.model.forward(batchOf(values));
      expect(relative(r.logits, tensors.readF32(`cap${cap}.logits`))).toBeLessThan(1e-5);
      const stats = [...r.encoderStats, ...r.decoderStats];
      expect(stats.length).toBe(4);
      let dropped = 0;
      stats.forEach((s, i) => {
        const probs = tensors.readF32(`cap${cap}.router${i}.probs`);
        expect(Math.max(...probs.map((p, j) => Math.abs(p - s.routerProbs[j]!)))).toBeLessThan(3e-5);
        expect(Array.from(s.expertIndex)).toEqual(Array.from(tensors.readI32(`cap${cap}.router${i}.choice`)));
        expect(Array.from(s.kept)).toEqual(Array.from(tensors.readI32(`cap${cap}.router${i}.kept`)));
        dropped += s.dropped;
      });
      expect(dropped > 0).toBe(cap === 3); // capacity 3 binds, 64 does not
      const close = (got: number, expected: number) => expect(Math.abs(got - expected) / Math.abs(expected)).toBeLessThan(1e-5);
      close(r.crossEntropy, want.cross_entropy);
      close(r.encoder.zLoss, 0.001 * want.encoder_z_loss);
      close(r.decoder.zLoss, 0.001 * want.decoder_z_loss);
      close(r.encoder.auxLoss, 0.001 * want.encoder_aux_loss);
      close(r.decoder.auxLoss, 0.001 * want.decoder_aux_loss);
      close(r.loss, want.loss);
    });

    it('one training step\'s gradients, every tensor (capacity binding)', async () => {
      const { values, tensors } = oracle(), run = runs()[3], config = run.config.model;
      const r = await run.model.forward(batchOf(values), { training: true });
      expect(Math.abs(r.loss - values.train_loss) / values.train_loss).toBeLessThan(1e-5);
      await run.model.backward();
      let checked = 0, full = 0;
      for (const p of run.model.params) {
        for (const s of hfSources(config, p.name, p.shape)) {
          const g = hfOrder(p.grad, s);
          const want = values.gradients[s.hf]!;
          const sg = signs(s.hf, g.length);
          let norm = 0, projection = 0;
          g.forEach((v, i) => { norm += v * v; projection += v * sg[i]!; });
          const scale = Math.max(want.norm, 1e-12);
          expect(Math.abs(Math.sqrt(norm) - want.norm) / scale, s.hf).toBeLessThan(1e-4);
          expect(Math.abs(projection - want.projection) / scale, s.hf).toBeLessThan(1e-4);
          if (tensors.has(`grad.${s.hf}`)) {
            const exact = tensors.readF32(`grad.${s.hf}`);
            if (want.norm > 0) expect(relative(g, exact), s.hf).toBeLessThan(1e-4);
            full++;
          }
          checked++;
        }
      }
      expect(checked).toBe(Object.keys(values.gradients).length);
      expect(full).toBeGreaterThanOrEqual(28); // norms, position biases and routers; the live oracle has every tensor
    });

    it.each([3, 64] as const)('capacity %i: greedy generate, with the cache and without, as transformers\' generate', async (cap) => {
      const { values } = oracle(), run = runs()[cap], want = values[`cap${cap}`];
      const prompts = values.input_ids.map((ids, b) => Int32Array.from(ids.filter((_, i) => values.attention_mask[b]![i])));
      const cached = await generateIds(run.model, prompts, { ...GREEDY, maxTokens: 12 });
      const uncached = await generateIds(run.model, prompts, { ...GREEDY, maxTokens: 12, cache: false });
      expect(cached).toEqual(want.generate.map((ids) => ids.slice(1)));
      expect(uncached).toEqual(want.generate_no_cache.map((ids) => ids.slice(1)));
      const [ids] = await generateIds(run.model, [await run.tokenizer.encode(values.prompt)], { ...GREEDY, maxTokens: 10 });
      expect(ids).toEqual(want.generate_prompt.slice(1));
      expect(await run.tokenizer.decode(ids!)).toBe(want.generate_prompt_text);
    });

    it('the mean cross-entropy over every target token of a pairs file', async () => {
      const { values } = oracle();
      const r = await pairsLoss(runs()[3].model, runs()[3].tokenizer, values.pairs.map(([input, target]) => ({ input, target })), 2);
      expect(Math.abs(r.loss - values.pairs_loss) / values.pairs_loss).toBeLessThan(1e-5);
    });
  });
}

/** A parameter's gradient in the Hugging Face tensor's [out × in] order. */
function hfOrder(grad: Float32Array, s: { shape: number[]; transpose: boolean; at: number }): Float64Array {
  const n = s.shape.reduce((a, b) => a * b, 1), g = new Float64Array(n);
  if (!s.transpose) { for (let i = 0; i < n; i++) g[i] = grad[s.at + i]!; return g; }
  const [rows, cols] = s.shape as [number, number];
  for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) g[r * cols + c] = grad[s.at + c * rows + r]!;
  return g;
}

const committed = readExpected();
const committedRuns: Partial<Record<3 | 64, Seq2SeqRun>> = {};

describe('Switch Transformers, against the committed oracle outputs (no Python needed)', () => {
  it('imports the oracle\'s model from a Hugging Face folder (float32 and bfloat16), capacity 3 and 64', async () => {
    const { values } = committed;
    expect(values.transformers).toBe('5.18.0');
    committedRuns[3] = await importRun(writeHfFolder(scratch(), values.hf_config, 'BF16'));
    committedRuns[64] = await importRun(writeHfFolder(scratch(), { ...values.hf_config, expert_capacity: 64 }, 'F32'));
  });

  it('relative position buckets equal transformers\' for every distance in ±300', () => {
    for (const [key, buckets] of Object.entries(committed.values.buckets)) {
      const [n, d, bidirectional] = key.split(',').map(Number);
      expect(buckets.map((_, i) => relativeBucket(i - 300, bidirectional === 1, n!, d!)), key).toEqual(buckets);
    }
  });

  it('the tokenizer gives Python\'s ids and decodes for 400 strings', async () => {
    const tokenizer = loadTokenizer(FIXTURES, { vocabSize: 304, padId: 0, eosId: 1 });
    for (const c of committed.values.tokenizer) {
      expect(Array.from(await tokenizer.encode(c.text)), JSON.stringify(c.text)).toEqual(c.ids);
      expect(await tokenizer.decode(c.ids)).toBe(c.decoded);
      expect(await tokenizer.decode(c.ids, true)).toBe(c.decoded_skip);
    }
  });
});
checkAgainstOracle('Switch Transformers, committed oracle', () => committedRuns as { 3: Seq2SeqRun; 64: Seq2SeqRun }, () => committed);

describe('safetensors of any size', () => {
  it('writes in parts the same bytes as the in-memory encoder', async () => {
    const { writeSafetensors } = await import('../app/safetensors.js');
    const tensors = { a: { dtype: 'F32' as const, shape: [2, 3], data: Float32Array.from([1, 2, 3, 4, 5, 6]) }, b: { dtype: 'BF16' as const, shape: [2], data: Float32Array.from([0.5, -2]) } };
    const file = join(scratch(), 'x.safetensors');
    writeSafetensors(file, Object.fromEntries(Object.entries(tensors).map(([k, t]) => [k, { ...t, data: () => t.data }])), { step: '3' });
    expect(Buffer.from(readFileSync(file)).equals(Buffer.from(encodeSafetensors(tensors, { step: '3' })))).toBe(true);
  });

  it('reads a tensor that lies beyond 2 GiB by position', async () => {
    const { SafetensorsReader } = await import('../app/safetensors.js');
    const { openSync, closeSync, ftruncateSync, writeSync } = await import('node:fs');
    const big = 2 ** 31 + 8, header = JSON.stringify({ zeros: { dtype: 'F32', shape: [big / 4], data_offsets: [0, big] }, last: { dtype: 'F32', shape: [2], data_offsets: [big, big + 8] } });
    const padded = header.padEnd(Math.ceil(header.length / 8) * 8, ' ');
    const file = join(scratch(), 'big.safetensors');
    const fd = openSync(file, 'w');
    const length = Buffer.alloc(8);
    length.writeBigUInt64LE(BigInt(padded.length));
    writeSync(fd, length, 0, 8, 0);
    writeSync(fd, Buffer.from(padded), 0, padded.length, 8);
    ftruncateSync(fd, 8 + padded.length + big + 8); // sparse: no disk for the zeros
    writeSync(fd, Buffer.from(Float32Array.from([1.5, -7]).buffer), 0, 8, 8 + padded.length + big);
    closeSync(fd);
    const reader = new SafetensorsReader(file);
    expect(Array.from(reader.readF32('last'))).toEqual([1.5, -7]);
    reader.close();
    rmSync(file);
  });
});

describe('bad input is refused before any work, naming what is wrong', () => {
  const hf = () => ({ ...committed.values.hf_config });
  const fixture = (config: Record<string, unknown> = hf(), dtype: 'F32' | 'BF16' = 'F32') => writeHfFolder(scratch(), config, dtype);

  it('a folder that is not a Switch Transformers checkpoint', async () => {
    const dir = fixture();
    writeFileSync(join(dir, 'config.json'), JSON.stringify({ ...hf(), model_type: 't5' }));
    await expect(importSwitchTransformers(dir, scratch(), kernels)).rejects.toThrow(/not a Switch Transformers checkpoint \(config.json's model_type is "t5"\)/);
    await expect(importSwitchTransformers(scratch(), scratch(), kernels)).rejects.toThrow(/no config.json/);
  });

  it('a missing tensor and a mismatched one, by name', async () => {
    const dir = fixture();
    const path = join(dir, 'model.safetensors');
    const file = decodeSafetensors(readFileSync(path), path);
    delete file.tensors['decoder.block.1.layer.2.mlp.experts.expert_3.wo.weight'];
    file.tensors['encoder.block.2.layer.0.SelfAttention.k.weight'] = { dtype: 'F32', shape: [32, 32], data: new Float32Array(32 * 32) };
    writeFileSync(path, encodeSafetensors(file.tensors, file.metadata));
    await expect(importSwitchTransformers(dir, scratch(), kernels)).rejects.toThrow(
      /does not match its config.json: tensor encoder.block.2.layer.0.SelfAttention.k.weight has shape \[32×32\], expected \[24×32\]; missing tensor decoder.block.1.layer.2.mlp.experts.expert_3.wo.weight/);
  });

  it('gated-GELU experts (switch-xxl-128), decoder_sparse_step 0 (switch-c-2048), a router bias', () => {
    expect(() => configFromHf({ ...hf(), dense_act_fn: 'gated-gelu' }, 'xxl')).toThrow(/dense_act_fn is "gated-gelu": only relu FFNs .*switch-xxl-128/);
    expect(() => configFromHf({ ...hf(), decoder_sparse_step: 0 }, 'c')).toThrow(/decoder_sparse_step is 0 while num_sparse_decoder_layers is 2 \(as switch-c-2048/);
    expect(() => configFromHf({ ...hf(), router_bias: true, router_dtype: 'bfloat16' }, 'r')).toThrow(/router_bias is true.*; router_dtype is "bfloat16"/);
  });

  it('a tokenizer that does not fit the embedding', async () => {
    const dir = fixture({ ...hf(), vocab_size: 200 });
    await expect(importSwitchTransformers(dir, scratch(), kernels)).rejects.toThrow(/the tokenizer has 300 ids but the model's embedding has 200 rows/);
    expect(() => loadTokenizer(FIXTURES, { vocabSize: 304, padId: 0, eosId: 2 })).toThrow(/<\/s> is id 1 here but 2 in config.json \(eos_token_id\)/);
  });

  it('pytorch_model.bin only: says how to convert it', async () => {
    const dir = fixture();
    rmSync(join(dir, 'model.safetensors'));
    writeFileSync(join(dir, 'pytorch_model.bin'), 'PK');
    await expect(importSwitchTransformers(dir, scratch(), kernels)).rejects.toThrow(/pytorch_model.bin .* Convert it once .*save_pretrained\(sys.argv\[1\], safe_serialization=True\)/s);
  });

  it('what does not fit the 4 GiB memory: switch-base-8 fine-tuning, switch-base-16 at all', () => {
    const base = { ...hf(), vocab_size: 32128, d_model: 768, d_kv: 64, d_ff: 3072, num_layers: 12, num_decoder_layers: 12, num_heads: 12,
      num_sparse_encoder_layers: 6, num_sparse_decoder_layers: 6, relative_attention_num_buckets: 32, relative_attention_max_distance: 128,
      encoder_sparse_step: 2, decoder_sparse_step: 2, expert_capacity: 64 };
    const base8 = configFromHf({ ...base, num_experts: 8 }, 'switch-base-8');
    expect(() => checkMemory(base8, 'inference')).not.toThrow();
    expect(() => checkMemory(base8, 'fine-tuning')).toThrow(/619,339,008 parameters need 9.91 GB for fine-tuning .*switch-base-8, 619M, runs inference but cannot be fine-tuned/);
    expect(() => checkMemory(configFromHf({ ...base, num_experts: 16 }, 'switch-base-16'), 'inference')).toThrow(/parameters need .* GB for inference/);
  });
});

const python = oraclePython();
const live: { dir?: string; runs: Partial<Record<3 | 64, Seq2SeqRun>>; oracle?: ReturnType<typeof readExpected> } = { runs: {} };
describe.skipIf(!python)(`Switch Transformers, against transformers run live now (${python ? `Python: ${python}` : 'skipped: no Python with torch and transformers 5.18; set SWITCHYARD_ORACLE_PYTHON or link .venv-oracle'})`, () => {
  it('the oracle saves its models with save_pretrained (float32; bfloat16 in shards) and we import both', async () => {
    live.dir = scratch();
    const r = spawnSync(python!, [new URL('./oracle/switch_transformers.py', import.meta.url).pathname, 'live', live.dir], { encoding: 'utf8', timeout: 600_000 });
    expect(r.stderr.split('\n').filter((l) => /Error|Traceback/.test(l))).toEqual([]);
    expect(r.stdout).toMatch(/transformers 5\.18\.0, torch .*: done/);
    expect(existsSync(join(live.dir, 'bf16-sharded', 'model.safetensors.index.json'))).toBe(true);
    live.oracle = readExpected(live.dir);
    live.runs[3] = await importRun(join(live.dir, 'bf16-sharded'));
    const f32 = join(live.dir, 'f32');
    const config = JSON.parse(readFileSync(join(f32, 'config.json'), 'utf8'));
    writeFileSync(join(f32, 'config.json'), JSON.stringify({ ...config, expert_capacity: 64 }));
    live.runs[64] = await importRun(f32);
  }, 600_000);
});
if (python) checkAgainstOracle('Switch Transformers, live oracle (full gradients)', () => live.runs as { 3: Seq2SeqRun; 64: Seq2SeqRun }, () => live.oracle!);

describe('the commands on an imported run, and fine-tuning', () => {
  const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 120_000 });
  const { values } = committed;
  const pairsFile = (count: number) => {
    const file = join(scratch(), 'pairs.jsonl');
    const lines = Array.from({ length: count }, (_, i) => values.pairs[i % values.pairs.length]!)
      .map(([input, target], i) => JSON.stringify({ input: `${input} ${i}`, target }));
    writeFileSync(file, lines.join('\n') + '\n');
    return file;
  };
  let imported = '';

  it('import (the format read from config.json), generate --json and eval --data --json give transformers\' ids and loss', () => {
    imported = join(scratch(), 'run');
    const i = run('import', '--from', writeHfFolder(scratch(), values.hf_config), '--out', imported);
    expect(i.stderr).toBe('');
    expect(i.stdout).toMatch(/wrote .*checkpoint\.safetensors \(129,792 parameters, step 0\)/);
    const g = JSON.parse(run('generate', '--run', imported, '--prompt', values.prompt, '--tokens', '10', '--json').stdout);
    expect(g).toEqual({ ids: values.cap3.generate_prompt.slice(1), text: values.cap3.generate_prompt_text });
    const file = join(scratch(), 'pairs.jsonl');
    writeFileSync(file, values.pairs.map(([input, target]) => JSON.stringify({ input, target })).join('\n'));
    const e = JSON.parse(run('eval', '--run', imported, '--data', file, '--json').stdout);
    expect(Math.abs(e.loss - values.pairs_loss) / values.pairs_loss).toBeLessThan(1e-5);
    expect(e).toMatchObject({ tokens: 34, pairs: 3, step: 0 });
    expect(run('eval', '--run', imported).stderr).toMatch(/needs --data: a JSONL file of \{"input", "target"\} pairs/);
    expect(run('generate', '--run', imported).stderr).toMatch(/needs a --prompt/);
    writeFileSync(file, '{"input": "a"}\n');
    expect(() => readPairs(file)).toThrow(/pairs.jsonl:1: expected \{"input": string, "target": string\}/);
  }, 60_000);

  it('fine-tunes with the experts on 2 workers exactly as in one thread, and a resumed run logs the same losses', async () => {
    const { finetune } = await import('../app/finetune.js');
    const data = pairsFile(20), train = { steps: 4, evalEvery: 2, batch: 3, learningRate: 1e-3, minLearningRate: 1e-3, warmupSteps: 0 };
    const log = (dir: string) => readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => {
      const { step, loss, grad_norm, val_loss } = JSON.parse(l) as { step: number; loss: number; grad_norm: number; val_loss?: number };
      return { step, loss, grad_norm, val_loss }; // not the times
    });
    const one = join(scratch(), 'one'), two = join(scratch(), 'two'), cut = join(scratch(), 'cut');
    await finetune({ from: imported, data, out: one, workers: 0, train });
    await finetune({ from: imported, data, out: two, workers: 2, train });
    expect(log(two)).toEqual(log(one));
    expect(log(one).map((l) => l.loss)).toHaveLength(4);
    expect(log(one)[3]!.loss).toBeLessThan(log(one)[0]!.loss);
    expect(log(one)[1]!.val_loss).toBeGreaterThan(0);
    const stop = new AbortController();
    const r = await finetune({ from: imported, data, out: cut, workers: 0, train, signal: stop.signal, onStep: (s) => { if (s.step === 3) stop.abort(); } });
    expect(r).toMatchObject({ stopped: true, stepsDone: 3 });
    await finetune({ out: cut, resume: true, workers: 0 });
    expect(log(cut)).toEqual(log(one));
    const g = run('generate', '--run', cut, '--prompt', values.prompt, '--tokens', '4', '--json');
    expect(JSON.parse(g.stdout).ids).toHaveLength(4);
  }, 120_000);

  it('refuses to fine-tune without pairs, over an existing run, or a model too large', async () => {
    const { finetune } = await import('../app/finetune.js');
    await expect(finetune({ from: imported, out: scratch() })).rejects.toThrow(/needs --data/);
    await expect(finetune({ from: imported, data: pairsFile(3), out: imported })).rejects.toThrow(/already holds a run; pass --resume/);
    const config = JSON.parse(readFileSync(join(imported, 'config.json'), 'utf8'));
    const big = join(scratch(), 'big');
    await import('node:fs').then((fs) => fs.mkdirSync(big));
    writeFileSync(join(big, 'config.json'), JSON.stringify({ ...config, model: { ...config.model, vocabSize: 32128, dModel: 768, dKv: 64, dFF: 3072,
      heads: 12, encoderLayers: 12, decoderLayers: 12, numExperts: 8, buckets: 32 } }));
    await expect(finetune({ from: big, data: pairsFile(3), out: scratch() })).rejects.toThrow(/619,339,008 parameters need 9.91 GB for fine-tuning/);
  });
});

describe('the Switch layer\'s options for transformers\' semantics', () => {
  const layerKernels = createKernels();
  const options = { dModel: 8, dFF: 16, numExperts: 4, fixedCapacity: 2, auxLossCoef: 0, zLossCoef: 0 };

  it('groupSize routes each group as its own call would, with a fixed capacity per group', async () => {
    const { SwitchLayer } = await import('../model/switch-layer.js');
    const { Rng } = await import('../model/rng.js');
    const layer = new SwitchLayer(layerKernels, options, { seed: 3 });
    const x = new Rng('groups').fillNormal(new Float32Array(2 * 6 * 8));
    const whole = layer.forward(x, 12, { groupSize: 6 });
    const y = Float32Array.from(whole.y), kept = Array.from(whole.stats.kept);
    expect(whole.stats.capacity).toBe(2);
    expect(whole.stats.dropped).toBeGreaterThan(0);
    for (const g of [0, 1]) {
      const part = layer.forward(x.subarray(g * 48, (g + 1) * 48), 6);
      expect(Array.from(part.y)).toEqual(Array.from(y.subarray(g * 48, (g + 1) * 48)));
      expect(Array.from(part.stats.kept)).toEqual(kept.slice(g * 6, (g + 1) * 6));
    }
    expect(() => layer.forward(x, 12, { groupSize: 5 })).toThrow(/12 tokens are not a whole number of groups of 5/);
    layer.dispose();
  });

  it('auxGrad adds the gradient of Σ auxGrad · probs (finite differences on the router weight)', async () => {
    const { SwitchLayer } = await import('../model/switch-layer.js');
    const { Rng } = await import('../model/rng.js');
    const layer = new SwitchLayer(layerKernels, options, { seed: 4 });
    const T = 10, E = 4, rng = new Rng('aux');
    const x = rng.fillNormal(new Float32Array(T * 8)), dy = rng.fillNormal(new Float32Array(T * 8)), G = rng.fillNormal(new Float32Array(T * E));
    const routerGrad = (aux?: Float32Array) => { layer.forward(x, T); layer.backward(dy, aux); return Float64Array.from(layer.grads.router); };
    const withAux = routerGrad(G), without = routerGrad();
    const extra = withAux.map((v, i) => v - without[i]!);
    const w = Float32Array.from(layer.weights.router), direction = rng.fillNormal(new Float32Array(w.length)), eps = 1e-2;
    const f = (sign: number) => {
      layer.weights.router.set(w.map((v, i) => v + sign * eps * direction[i]!));
      const p = layer.forward(x, T).stats.routerProbs;
      return p.reduce((sum, v, i) => sum + v * G[i]!, 0);
    };
    const numeric = (f(1) - f(-1)) / (2 * eps);
    layer.weights.router.set(w);
    const analytic = extra.reduce((sum, v, i) => sum + v * direction[i]!, 0);
    expect(Math.abs(analytic - numeric) / Math.abs(numeric)).toBeLessThan(1e-3);
    layer.dispose();
  });
});
