// Google's released Switch Transformers in Hugging Face's format (SwitchTransformersForConditionalGeneration):
// config.json to our T5Config, refusing what we do not compute; the checkpoint's tensors (one
// safetensors file or shards listed in model.safetensors.index.json, float32, bfloat16 or float16)
// onto our parameters. Their weights are [out × in]; ours [in × out], so every matrix is transposed.
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Param } from '../model/params.js';
import { type T5Config, checkT5Config, parameterCount } from '../model/t5/config.js';
import { SafetensorsReader } from './safetensors.js';

type Json = Record<string, unknown>;

/** The released base models ship pytorch_model.bin; this converts one folder in place, once. */
export const CONVERT_BIN = 'python -c "import sys; from transformers import SwitchTransformersForConditionalGeneration as M; '
  + 'M.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1], safe_serialization=True)" DIR';

/** The 32-bit WebAssembly memory, less what a forward needs beside the weights (activations, GEMM scratch). */
export const MEMORY_BYTES = 4 * 1024 ** 3;
const WORKING_BYTES = 256 * 1024 ** 2;

export function readJson(file: string): Json {
  let v: unknown;
  try {
    v = JSON.parse(readFileSync(file, 'utf8'));
  } catch (cause) {
    throw new Error(`${file}: ${existsSync(file) ? `not valid JSON (${(cause as Error).message})` : 'missing'}`, { cause });
  }
  if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error(`${file}: expected a JSON object`);
  return v as Json;
}

/** Whether a folder's config.json says it is a Switch Transformers checkpoint. */
export function isSwitchTransformersFolder(dir: string): boolean {
  const file = join(dir, 'config.json');
  return existsSync(file) && readJson(file).model_type === 'switch_transformers';
}

/**
 * Our config from transformers' config.json (and generation_config.json's start token, where
 * config.json has none). Everything we would compute differently is refused, naming the field.
 */
export function configFromHf(hf: Json, source: string, generation: Json = {}): T5Config {
  const fail = (why: string): never => { throw new Error(`${source}: ${why}`); };
  if (hf.model_type !== 'switch_transformers') {
    fail(`not a Switch Transformers checkpoint: config.json's model_type is ${JSON.stringify(hf.model_type)}, expected "switch_transformers"`);
  }
  const num = (key: string, fallback?: number): number => {
    const v = hf[key] ?? fallback;
    return typeof v === 'number' && Number.isFinite(v) ? v : fail(`config.json: ${key} must be a number, got ${JSON.stringify(hf[key])}`);
  };
  const refusals: string[] = [];
  const act = hf.dense_act_fn ?? 'relu';
  if (act !== 'relu') {
    refusals.push(`dense_act_fn is ${JSON.stringify(act)}: only relu FFNs (wo·relu(wi·x)) are computed; the gated-GELU experts of switch-xxl-128 `
      + '(wo·(gelu(wi_0·x) ⊙ wi_1·x)) are not');
  }
  if (hf.router_bias === true) refusals.push('router_bias is true: the router has no bias here');
  if ((hf.router_dtype ?? 'float32') !== 'float32') refusals.push(`router_dtype is ${JSON.stringify(hf.router_dtype)}: the router computes in float32 only`);
  if (hf.tie_word_embeddings === false) refusals.push('tie_word_embeddings is false: the output head is tied to the shared embedding here');
  if (hf.is_encoder_decoder === false) refusals.push('is_encoder_decoder is false: only the encoder-decoder model is imported');
  const eos = Array.isArray(hf.eos_token_id) ? fail(`config.json: eos_token_id ${JSON.stringify(hf.eos_token_id)}: one end token expected`) : num('eos_token_id', 1);
  const layers = num('num_layers', 12), decoderLayers = num('num_decoder_layers', layers);
  // transformers' rule: num_layers // num_sparse_layers, unless config.json gives the step (0 for none: then a "hack" step).
  const step = (key: string, stackLayers: number, sparseKey: string): number => {
    if (hf[key] !== undefined && hf[key] !== null) return num(key);
    const sparse = num(sparseKey, 3);
    return sparse > 0 ? Math.floor(stackLayers / sparse) : stackLayers;
  };
  const encoderSparseStep = step('encoder_sparse_step', layers, 'num_sparse_encoder_layers');
  const decoderSparseStep = step('decoder_sparse_step', decoderLayers, 'num_sparse_decoder_layers');
  for (const [key, value, sparseKey] of [['encoder_sparse_step', encoderSparseStep, 'num_sparse_encoder_layers'],
    ['decoder_sparse_step', decoderSparseStep, 'num_sparse_decoder_layers']] as const) {
    if (value === 0 && num(sparseKey, 3) > 0) {
      refusals.push(`${key} is 0 while ${sparseKey} is ${num(sparseKey, 3)} (as switch-c-2048's config.json has it): transformers then builds that `
        + 'stack without Switch layers and drops the checkpoint\'s experts; refused rather than guess which was meant');
    }
  }
  if (refusals.length > 0) fail(`cannot import: ${refusals.join('; ')}`);
  const pad = num('pad_token_id', 0);
  const start = hf.decoder_start_token_id ?? generation.decoder_start_token_id ?? pad;
  return checkT5Config({
    vocabSize: num('vocab_size'), dModel: num('d_model'), dKv: num('d_kv'), heads: num('num_heads'), dFF: num('d_ff'),
    encoderLayers: layers, decoderLayers, encoderSparseStep, decoderSparseStep,
    numExperts: num('num_experts'), expertCapacity: num('expert_capacity'),
    buckets: num('relative_attention_num_buckets', 32), maxDistance: num('relative_attention_max_distance', 128),
    eps: num('layer_norm_epsilon', 1e-6), auxLossCoef: num('router_aux_loss_coef', 0.001), zLossCoef: num('router_z_loss_coef', 0.001),
    routerJitter: num('router_jitter_noise', 0.01), padId: pad, eosId: eos,
    decoderStartId: typeof start === 'number' ? start : fail(`config.json: decoder_start_token_id must be a number, got ${JSON.stringify(start)}`),
  });
}

const gb = (bytes: number) => `${(bytes / 1e9).toFixed(2)} GB`;

/**
 * Refuses, before anything is allocated, a model whose float32 weights (and for fine-tuning their
 * gradients and AdamW's two moments: 16 bytes a parameter) do not fit the 4 GiB memory.
 */
export function checkMemory(c: T5Config, purpose: 'inference' | 'fine-tuning'): void {
  const params = parameterCount(c), perParam = purpose === 'inference' ? 4 : 16;
  const need = params * perParam, room = MEMORY_BYTES - WORKING_BYTES;
  if (need <= room) return;
  const what = purpose === 'inference' ? 'float32 weights' : 'weights, gradients and two AdamW moments in float32';
  const fits = Math.floor(room / perParam / 1e6);
  throw new Error(`${params.toLocaleString('en-US')} parameters need ${gb(need)} for ${purpose} (${what}); the 32-bit WebAssembly memory `
    + `holds 4 GiB and keeps ${gb(WORKING_BYTES)} for activations: ${purpose} fits models up to about ${fits}M parameters`
    + (purpose === 'fine-tuning' ? ' (switch-base-8, 619M, runs inference but cannot be fine-tuned here)' : ''));
}

/** One Hugging Face tensor feeding one of our parameters: its name and [out × in] shape, where it lands, and whether it is transposed. */
interface Source { hf: string; shape: number[]; transpose: boolean; at: number }

/** Tensor names that all mean shared.weight in a tied checkpoint (transformers loads any of them). */
const SHARED_ALIASES = ['shared.weight', 'encoder.embed_tokens.weight', 'decoder.embed_tokens.weight', 'lm_head.weight'];

/** Where each of our parameters comes from. */
export function hfSources(c: T5Config, name: string, shape: number[]): Source[] {
  const d = c.dModel, I = c.heads * c.dKv, f = c.dFF, E = c.numExperts;
  if (name === 'shared') return [{ hf: 'shared.weight', shape, transpose: false, at: 0 }];
  const m = /^(encoder|decoder)\.(?:(relative_attention_bias|final_norm)|blocks\.(\d+)\.(.+))$/.exec(name);
  if (!m) throw new Error(`switch-transformers: no Hugging Face name for parameter ${name}`);
  const [, stack, whole, index, part] = m;
  const one = (hf: string, hfShape: number[], transpose: boolean): Source[] => [{ hf, shape: hfShape, transpose, at: 0 }];
  if (whole === 'relative_attention_bias') return one(`${stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight`, shape, false);
  if (whole === 'final_norm') return one(`${stack}.final_layer_norm.weight`, shape, false);
  const block = `${stack}.block.${index}`, ff = `${block}.layer.${stack === 'encoder' ? 1 : 2}`;
  const attention = (layer: string, kind: string, which: string) =>
    one(`${block}.layer.${layer}.${kind}.${which}.weight`, which === 'o' ? [d, I] : [I, d], true);
  const p = /^(self_attn|cross_attn)(?:\.([qkvo])|_norm)$/.exec(part!);
  if (p) {
    const [layer, kind] = p[1] === 'self_attn' ? ['0', 'SelfAttention'] : ['1', 'EncDecAttention'];
    return p[2] ? attention(layer, kind, p[2]) : one(`${block}.layer.${layer}.layer_norm.weight`, [d], false);
  }
  switch (part) {
    case 'ff_norm': return one(`${ff}.layer_norm.weight`, [d], false);
    case 'ff.wi': return one(`${ff}.mlp.wi.weight`, [f, d], true);
    case 'ff.wo': return one(`${ff}.mlp.wo.weight`, [d, f], true);
    case 'moe.router': return one(`${ff}.mlp.router.classifier.weight`, [E, d], true);
    case 'moe.w_in': return Array.from({ length: E }, (_, e) => ({ hf: `${ff}.mlp.experts.expert_${e}.wi.weight`, shape: [f, d], transpose: true, at: e * d * f }));
    case 'moe.w_out': return Array.from({ length: E }, (_, e) => ({ hf: `${ff}.mlp.experts.expert_${e}.wo.weight`, shape: [d, f], transpose: true, at: e * f * d }));
    default: throw new Error(`switch-transformers: no Hugging Face name for parameter ${name}`);
  }
}

/** A Hugging Face checkpoint folder's tensors, by name, read when asked. */
export class HfCheckpoint {
  private readonly readers: SafetensorsReader[] = [];
  private readonly where = new Map<string, SafetensorsReader>();

  constructor(readonly dir: string) {
    const index = join(dir, 'model.safetensors.index.json');
    let files: string[];
    if (existsSync(index)) {
      const map = readJson(index).weight_map;
      if (typeof map !== 'object' || map === null) throw new Error(`${index}: no weight_map`);
      files = [...new Set(Object.values(map as Record<string, string>))];
    } else if (existsSync(join(dir, 'model.safetensors'))) {
      files = ['model.safetensors'];
    } else if (existsSync(join(dir, 'pytorch_model.bin')) || existsSync(join(dir, 'pytorch_model.bin.index.json'))) {
      throw new Error(`${dir}: has pytorch_model.bin (pickled PyTorch, which Switchyard does not read: unpickling can run code) and no `
        + `model.safetensors. Convert it once with Python's transformers:\n  ${CONVERT_BIN.replace('DIR', dir)}`);
    } else {
      throw new Error(`${dir}: no model.safetensors or model.safetensors.index.json`);
    }
    try {
      for (const file of files) {
        const reader = new SafetensorsReader(join(dir, file));
        this.readers.push(reader);
        for (const name of Object.keys(reader.tensors)) this.where.set(name, reader);
      }
    } catch (error) {
      this.close();
      throw error;
    }
  }

  get names(): string[] {
    return [...this.where.keys()];
  }

  has(name: string): boolean {
    return this.where.has(name);
  }

  shape(name: string): number[] {
    const reader = this.where.get(name);
    if (!reader) throw new Error(`${this.dir}: missing tensor ${name}`);
    return reader.tensors[name]!.shape;
  }

  /** A tensor as float32, into `into` when given. */
  read(name: string, into?: Float32Array): Float32Array {
    const reader = this.where.get(name);
    if (!reader) throw new Error(`${this.dir}: missing tensor ${name}`);
    return reader.readF32(name, into);
  }

  close(): void {
    for (const r of this.readers) r.close();
  }
}

/**
 * Copies a checkpoint into our parameters. Every missing tensor and every shape that does not fit
 * is named before anything is read; tensors the model does not use are returned (a warning, as
 * transformers gives one).
 */
export function loadHfWeights(c: T5Config, params: Param[], ckpt: HfCheckpoint): { unused: string[] } {
  const shared = SHARED_ALIASES.find((n) => ckpt.has(n));
  const plan = params.map((p) => ({ p, sources: hfSources(c, p.name, p.shape).map((s) => (s.hf === 'shared.weight' && shared ? { ...s, hf: shared } : s)) }));
  const problems: string[] = [];
  for (const { sources } of plan) {
    for (const s of sources) {
      if (!ckpt.has(s.hf)) problems.push(`missing tensor ${s.hf}`);
      else if (ckpt.shape(s.hf).join() !== s.shape.join()) problems.push(`tensor ${s.hf} has shape [${ckpt.shape(s.hf).join('×')}], expected [${s.shape.join('×')}]`);
    }
  }
  if (problems.length > 0) {
    const shown = problems.slice(0, 12).join('; ') + (problems.length > 12 ? `; and ${problems.length - 12} more` : '');
    throw new Error(`${ckpt.dir}: the checkpoint does not match its config.json: ${shown}`);
  }
  const used = new Set(plan.flatMap(({ sources }) => sources.map((s) => s.hf)));
  // Two reusable buffers for the transposed tensors: fresh ones per tensor cost page faults by the gigabyte.
  const largest = Math.max(...plan.flatMap(({ sources }) => sources.map((s) => s.shape.reduce((a, b) => a * b, 1))));
  const read = new Float32Array(largest), turned = new Float32Array(largest);
  for (const { p, sources } of plan) {
    for (const s of sources) {
      const n = s.shape.reduce((a, b) => a * b, 1);
      if (!s.transpose) { ckpt.read(s.hf, p.data.subarray(s.at, s.at + n)); continue; }
      ckpt.read(s.hf, read.subarray(0, n));
      transpose(read, s.shape[0]!, s.shape[1]!, turned);
      p.data.set(turned.subarray(0, n), s.at);
    }
  }
  // Tied aliases of shared.weight and the cross-attention position bias old T5 checkpoints carry are expected extras.
  const expected = (n: string) => SHARED_ALIASES.includes(n) || /^decoder\.block\.0\.layer\.1\.EncDecAttention\.relative_attention_bias\.weight$/.test(n);
  return { unused: ckpt.names.filter((n) => !used.has(n) && !expected(n)) };
}

/** [rows × cols] → [cols × rows] into `out`, in 64 × 64 tiles so that both sides stay in cache. */
function transpose(a: Float32Array, rows: number, cols: number, out: Float32Array): void {
  const tile = 64;
  for (let r0 = 0; r0 < rows; r0 += tile) {
    for (let c0 = 0; c0 < cols; c0 += tile) {
      const r1 = Math.min(rows, r0 + tile), c1 = Math.min(cols, c0 + tile);
      for (let r = r0; r < r1; r++) for (let c = c0; c < c1; c++) out[c * rows + r] = a[r * cols + c]!;
    }
  }
}
