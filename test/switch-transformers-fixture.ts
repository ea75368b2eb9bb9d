// The oracle's small Switch Transformers model without Python: the same weights (a hash of each
// Hugging Face parameter name and index, as test/oracle/switch_transformers.py makes them), written
// as a Hugging Face folder beside the committed tokenizer, and the oracle's expected outputs.
import { copyFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { type Tensor, SafetensorsReader, encodeSafetensors } from '../app/safetensors.js';
import { configFromHf, hfSources } from '../app/switch-transformers.js';
import { createKernels } from '../kernels/index.js';
import { EncoderDecoder } from '../model/t5/encoder-decoder.js';

export const FIXTURES = fileURLToPath(new URL('./fixtures/switch-transformers/', import.meta.url));

export interface Expected {
  transformers: string;
  hf_config: Record<string, unknown>;
  input_ids: number[][];
  attention_mask: number[][];
  labels: number[][];
  pairs: [string, string][];
  prompt: string;
  pairs_loss: number;
  train_loss: number;
  gradients: Record<string, { norm: number; projection: number }>;
  tokenizer: { text: string; ids: number[]; decoded: string; decoded_skip: string }[];
  buckets: Record<string, number[]>;
  cap3: Outputs;
  cap64: Outputs;
}
export interface Outputs {
  loss: number; cross_entropy: number; encoder_z_loss: number; encoder_aux_loss: number; decoder_z_loss: number; decoder_aux_loss: number;
  generate: number[][]; generate_no_cache: number[][]; generate_prompt: number[]; generate_prompt_text: string;
}

/** The committed outputs, or a live oracle run's (`dir`). */
export function readExpected(dir = FIXTURES): { values: Expected; tensors: SafetensorsReader } {
  return { values: JSON.parse(readFileSync(join(dir, 'expected.json'), 'utf8')) as Expected, tensors: new SafetensorsReader(join(dir, 'expected.safetensors')) };
}

function fnv1a(s: string): number {
  let h = 0x811c9dc5;
  for (const byte of new TextEncoder().encode(s)) h = Math.imul(h ^ byte, 0x01000193) >>> 0;
  return h;
}

function hashed(name: string, i: number): number {
  let x = (Math.imul(i, 0x9e3779b1) + fnv1a(name)) >>> 0;
  x ^= x >>> 16; x = Math.imul(x, 0x85ebca6b) >>> 0;
  x ^= x >>> 13; x = Math.imul(x, 0xc2b2ae35) >>> 0;
  return (x ^ (x >>> 16)) >>> 0;
}

/** The oracle's weight_values: bfloat16-exact values of a Hugging Face parameter. */
export function hashedWeight(name: string, n: number): Float32Array {
  const out = new Float32Array(n);
  const scale = name === 'shared.weight' ? 2 : /(?:[qkvo]|wi|relative_attention_bias)\.weight$/.test(name) ? 0.5 : name.endsWith('wo.weight') ? 0.25 : 1;
  for (let i = 0; i < n; i++) {
    const k = (hashed(name, i) >>> 24) - 128;
    out[i] = name.includes('layer_norm') ? 1 + Math.floor(k / 16) / 32 : (k / 128) * scale;
  }
  return out;
}

/** ±1 per index, as the oracle projects gradients. */
export function signs(name: string, n: number): Float64Array {
  return Float64Array.from({ length: n }, (_, i) => (hashed(`sign:${name}`, i) >>> 31 ? -1 : 1));
}

/** Every Hugging Face tensor of the model of `hf` (config.json), with its [out × in] shape. */
export function hfTensors(hf: Record<string, unknown>): { name: string; shape: number[] }[] {
  const config = configFromHf(hf, 'fixture');
  const model = new EncoderDecoder(createKernels({ backend: 'reference' }), config, { gradients: false });
  return model.params.flatMap((p) => hfSources(config, p.name, p.shape).map((s) => ({ name: s.hf, shape: s.shape })));
}

/** Writes the fixture model as transformers would: config.json, model.safetensors (F32 or BF16), the tokenizer. */
export function writeHfFolder(dir: string, hf: Record<string, unknown>, dtype: 'F32' | 'BF16' = 'F32'): string {
  mkdirSync(dir, { recursive: true });
  const tensors: Record<string, Tensor> = {};
  for (const { name, shape } of hfTensors(hf)) tensors[name] = { dtype, shape, data: hashedWeight(name, shape.reduce((a, b) => a * b, 1)) };
  writeFileSync(join(dir, 'model.safetensors'), encodeSafetensors(tensors, { format: 'pt' }));
  writeFileSync(join(dir, 'config.json'), JSON.stringify({ architectures: ['SwitchTransformersForConditionalGeneration'], ...hf }, null, 2));
  for (const file of ['tokenizer.json', 'tokenizer_config.json']) copyFileSync(join(FIXTURES, file), join(dir, file));
  return dir;
}

/** A Python with torch and transformers 5.18: SWITCHYARD_ORACLE_PYTHON, or the venv at .venv-oracle. */
export function oraclePython(): string | undefined {
  const candidates = [process.env.SWITCHYARD_ORACLE_PYTHON, fileURLToPath(new URL('../.venv-oracle/bin/python', import.meta.url))];
  return candidates.find((py) => py && existsSync(py)
    && spawnSync(py, ['-c', 'import torch, transformers, sentencepiece; assert transformers.__version__ == "5.18.0"'], { encoding: 'utf8' }).status === 0);
}
