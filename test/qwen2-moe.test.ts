// Export to and import from the Qwen2-MoE format: the key layout, refusals that name what does
// not fit, bit-identical round trips (single file and sharded), and, where Python has torch and
// transformers, transformers' own model computing our logits.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ORACLES, needing } from './oracles.js';
import { exportRun, importRun } from '../app/interchange.js';
import { train } from '../app/train.js';
import { openRun, saveCheckpoint, writeRunConfig } from '../app/run-folder.js';
import { createKernels } from '../kernels/index.js';
import { type Tensor, decodeSafetensors, encodeSafetensors } from '../app/safetensors.js';
import { type ModelConfig, PRESETS } from '../model/config.js';
import { Rng } from '../model/rng.js';
import { type Tokenizer, byteTokenizer, charTokenizer } from '../app/tokenizer.js';
import { Transformer } from '../model/transformer.js';

const kernels = createKernels();
const scratch = () => mkdtempSync(join(tmpdir(), 'switchyard-qwen-'));
const text = 'ROMEO:\nWhat light through yonder window breaks?';
const tokenizer = charTokenizer(text);
const CONFIG: ModelConfig = {
  ...PRESETS.tiny.model, vocabSize: tokenizer.vocabSize, context: 16, layers: 3, heads: 2, dModel: 16, dFF: 24,
  numExperts: 4, capacityFactor: null, routerJitter: 0,
};

/** A run folder holding a model with random weights (large enough that every path matters). */
async function makeRun(config: ModelConfig, tok: Tokenizer = tokenizer): Promise<string> {
  const dir = scratch();
  const model = new Transformer(kernels, config, { seed: 5 });
  for (const p of model.params.list) new Rng('w', p.name).fillNormal(p.data, 0.3);
  writeRunConfig(dir, { format: 'switchyard-run-1', model: config, train: PRESETS.tiny.train, tokenizer: tok.spec(), data: 'unused' });
  saveCheckpoint(dir, model, undefined, { step: 7, elapsedS: 0, bestValLoss: NaN, valLoss: NaN });
  await model.dispose();
  return dir;
}

async function logitsOf(dir: string, tokens: Int32Array, batch: number): Promise<Float32Array> {
  const run = openRun(dir, kernels);
  const { logits } = await run.model.forward({ inputs: tokens, batch, context: tokens.length / batch });
  const copy = Float32Array.from(logits);
  await run.model.dispose();
  return copy;
}

const tokens = Int32Array.from(tokenizer.encode(text).subarray(0, 24));

describe('export to Qwen2-MoE', () => {
  it('writes transformers\' keys in [out, in] orientation, a zero shared expert, and the config', async () => {
    const out = scratch();
    await exportRun(await makeRun(CONFIG), out, kernels);
    const file = decodeSafetensors(readFileSync(join(out, 'model.safetensors')), 'model.safetensors');
    expect(file.metadata.format).toBe('pt');
    const shape = (name: string) => file.tensors[name]?.shape;
    expect(shape('model.embed_tokens.weight')).toEqual([CONFIG.vocabSize, 16]);
    expect(shape('model.layers.0.self_attn.q_proj.weight')).toEqual([16, 16]);
    expect(shape('model.layers.0.mlp.up_proj.weight')).toEqual([24, 16]); // layer 0 dense
    expect(shape('model.layers.0.mlp.down_proj.weight')).toEqual([16, 24]);
    expect(shape('model.layers.1.mlp.gate.weight')).toEqual([4, 16]); // layer 1 sparse: the router
    expect(shape('model.layers.1.mlp.experts.3.gate_proj.weight')).toEqual([24, 16]);
    expect(shape('model.layers.1.mlp.experts.3.down_proj.weight')).toEqual([16, 24]);
    expect((file.tensors['model.layers.1.mlp.shared_expert.down_proj.weight']!.data as Float32Array).every((v) => v === 0)).toBe(true);
    expect(shape('lm_head.weight')).toEqual([CONFIG.vocabSize, 16]);
    expect(Object.keys(file.tensors).filter((k) => k.includes('bias'))).toEqual([]);
    const config = JSON.parse(readFileSync(join(out, 'config.json'), 'utf8'));
    expect(config).toMatchObject({
      model_type: 'qwen2_moe', num_experts: 4, num_experts_per_tok: 1, norm_topk_prob: false, decoder_sparse_step: 1,
      mlp_only_layers: [0, 2], qkv_bias: false, hidden_act: 'silu', tie_word_embeddings: true, intermediate_size: 24,
      moe_intermediate_size: 24, router_aux_loss_coef: 0.01, rope_theta: 10000, rms_norm_eps: 1e-6,
    });
    const tok = JSON.parse(readFileSync(join(out, 'tokenizer.json'), 'utf8'));
    expect(tok.model.vocab['R']).toBe(tokenizer.encode('R')[0]);
  });

  it('refuses a layout it cannot express, naming each mismatch and the fix', async () => {
    const gpt = await makeRun({ ...CONFIG, norm: 'layernorm', positions: 'learned', activation: 'gelu', bias: true });
    await expect(exportRun(gpt, scratch(), kernels)).rejects.toThrow(
      /normalization is layernorm; Qwen2-MoE uses RMSNorm; positions are learned; .*rotary.*; the FFN activation is gelu; .*SwiGLU; the projections have biases.*--arch qwen2-moe/);
  });
});

describe('import from Qwen2-MoE', () => {
  it('round trip: export then import gives bit-identical weights and logits', async () => {
    const run = await makeRun(CONFIG);
    const hf = scratch(), back = scratch();
    await exportRun(run, hf, kernels);
    await importRun(hf, back, kernels);
    const a = openRun(run, kernels), b = openRun(back, kernels);
    expect(b.step).toBe(0);
    for (const p of a.model.params.list) expect(Array.from(b.model.params.get(p.name).data), p.name).toEqual(Array.from(p.data));
    await a.model.dispose(); await b.model.dispose();
    expect(Array.from(await logitsOf(back, tokens, 2))).toEqual(Array.from(await logitsOf(run, tokens, 2)));
  });

  it('reads shards listed in model.safetensors.index.json', async () => {
    const hf = scratch();
    await exportRun(await makeRun(CONFIG), hf, kernels);
    const { tensors } = decodeSafetensors(readFileSync(join(hf, 'model.safetensors')), 'model');
    const names = Object.keys(tensors);
    const halves = [names.slice(0, names.length >> 1), names.slice(names.length >> 1)];
    const weightMap: Record<string, string> = {};
    halves.forEach((part, i) => {
      const file = `model-0000${i + 1}-of-00002.safetensors`;
      writeFileSync(join(hf, file), encodeSafetensors(Object.fromEntries(part.map((n) => [n, tensors[n]!])), { format: 'pt' }));
      for (const n of part) weightMap[n] = file;
    });
    writeFileSync(join(hf, 'model.safetensors.index.json'), JSON.stringify({ metadata: {}, weight_map: weightMap }));
    spawnSync('rm', [join(hf, 'model.safetensors')]);
    const back = scratch();
    await importRun(hf, back, kernels);
    expect(existsSync(join(back, 'checkpoint.safetensors'))).toBe(true);
    expect(Array.from(await logitsOf(back, tokens, 2)).length).toBe(24 * CONFIG.vocabSize);
  });

  it('gives a run that train --resume continues from step 0', async () => {
    const shakespeare = charTokenizer(readFileSync(new URL('../data/tinyshakespeare.txt', import.meta.url), 'utf8'));
    const hf = scratch(), back = scratch();
    await exportRun(await makeRun({ ...CONFIG, vocabSize: shakespeare.vocabSize }, shakespeare), hf, kernels);
    await importRun(hf, back, kernels);
    const result = await train({ out: back, resume: true, workers: 0, train: { steps: 2, evalEvery: 2, evalBatches: 1 } });
    expect(result).toMatchObject({ stepsDone: 2, stopped: false });
    expect(openRun(back, kernels).step).toBe(2);
  }, 60_000);

  it('refuses a non-zero shared expert and an untied head, by name', async () => {
    const hf = scratch();
    await exportRun(await makeRun(CONFIG), hf, kernels);
    const path = join(hf, 'model.safetensors');
    const { tensors, metadata } = decodeSafetensors(readFileSync(path), 'model');
    const edit = (name: string) => { const t = tensors[name] as Tensor; (t.data as Float32Array)[0] = 1; };
    edit('model.layers.1.mlp.shared_expert.up_proj.weight');
    edit('lm_head.weight');
    delete metadata.sha256;
    writeFileSync(path, encodeSafetensors(tensors, metadata));
    await expect(importRun(hf, scratch(), kernels)).rejects.toThrow(
      /cannot import: layer 1's shared expert is not zero .*; an output head different from the embedding/);
  });
});

describe('import refuses rotary positions it does not compute', () => {
  it.each([
    ['rope_parameters (transformers 5)', { rope_parameters: { rope_type: 'default', rope_theta: 1_000_000 } }, /rotary positions of base 1000000, type default/],
    ['rope_theta (transformers 4)', { rope_theta: 500_000 }, /rotary positions of base 500000, type default/],
    ['a scaled rope_type', { rope_parameters: { rope_type: 'yarn', rope_theta: 10000, factor: 4 } }, /rotary positions of base 10000, type yarn/],
  ])('%s', async (_, edit, message) => {
    const hf = scratch();
    await exportRun(await makeRun(CONFIG), hf, kernels);
    const file = join(hf, 'config.json');
    const { rope_theta: _theta, ...config } = JSON.parse(readFileSync(file, 'utf8'));
    writeFileSync(file, JSON.stringify({ ...config, ...edit }));
    await expect(importRun(hf, scratch(), kernels)).rejects.toThrow(message);
  });
});

describe('the export and import commands', () => {
  const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
  const run = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000 });

  it('export, import, then generate from the imported run', async () => {
    const hf = join(scratch(), 'hf'), back = join(scratch(), 'back');
    expect(run('export', '--run', await makeRun(CONFIG), '--format', 'qwen2-moe', '--out', hf).stdout).toMatch(/wrote .*model\.safetensors/);
    expect(run('import', '--from', hf, '--out', back).stdout).toMatch(/checkpoint\.safetensors \(step 0\)/);
    const g = run('generate', '--run', back, '--prompt', 'ROMEO', '--tokens', '5');
    expect(g.status).toBe(0);
    expect(g.stdout.startsWith('ROMEO')).toBe(true);
  }, 60_000);

  it('a layout that cannot be exported is an error, and so is an unknown format', async () => {
    const gpt = await makeRun({ ...CONFIG, norm: 'layernorm' });
    const r = run('export', '--run', gpt, '--out', scratch());
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/cannot be expressed as Qwen2-MoE: normalization is layernorm/);
    expect(run('export', '--run', gpt, '--format', 'gguf', '--out', scratch()).stderr).toMatch(/Allowed choices are qwen2-moe/);
  }, 60_000);
});

const python = ORACLES.transformers.path;

describe('transformers computes the exported model\'s function', () => {
  it.skipIf(!python).each([['char', tokenizer], ['byte', byteTokenizer()]] as const)(needing(ORACLES.transformers,
    'Qwen2MoeForCausalLM gives our logits within 1e-6, and the %s tokenizer our ids'), async (_kind, tok) => {
    const run = await makeRun({ ...CONFIG, vocabSize: tok.vocabSize }, tok);
    const hf = scratch();
    await exportRun(run, hf, kernels);
    const ids = tok.encode(text);
    const inputs = Int32Array.from(ids.subarray(0, 24));
    const logits = await logitsOf(run, inputs, 2);
    const check = join(scratch(), 'check.json');
    writeFileSync(check, JSON.stringify({
      tokens: [Array.from(inputs.subarray(0, 12)), Array.from(inputs.subarray(12))], logits: Array.from(logits),
      text, ids: Array.from(ids),
    }));
    const r = spawnSync(python!, [new URL('./oracle/qwen2_moe_logits.py', import.meta.url).pathname, hf, check], { encoding: 'utf8', timeout: 300_000 });
    expect(r.stderr.split('\n').filter((l) => /Error|Traceback/.test(l))).toEqual([]);
    expect(r.stdout).toMatch(/logits relative error \d\.\d+e-(0[7-9]|1\d)/);
    expect(r.status).toBe(0);
  }, 300_000);
});
