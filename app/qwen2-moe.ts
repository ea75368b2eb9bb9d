// Hugging Face's Qwen2-MoE checkpoint format: our model's weights under transformers' key names
// in [out, in] orientation, its config.json, and a tokenizer.json for our vocabularies. The
// architectures compute the same function when ours uses the qwen2-moe layout (RMSNorm, rotary
// positions in the half-split form, SwiGLU, no biases) and no token overflows an expert's capacity
// (transformers' Qwen2-MoE is dropless). Its always-present shared expert is written as zeros.
import type { Tensor } from './safetensors.js';
import { ARCHITECTURES, type ModelConfig, isSparseLayer } from '../model/config.js';
import type { Param } from '../model/params.js';
import type { TokenizerSpec } from './tokenizer.js';

type Named = Pick<Param, 'name' | 'shape' | 'data'>;

/** Every way the model differs from the Qwen2-MoE layout; empty when it exports. */
export function qwen2MoeMismatches(c: ModelConfig): string[] {
  const want = ARCHITECTURES['qwen2-moe'];
  const out: string[] = [];
  if (c.norm !== want.norm) out.push(`normalization is ${c.norm}; Qwen2-MoE uses RMSNorm`);
  if (c.positions !== want.positions) out.push(`positions are ${c.positions}; Qwen2-MoE uses rotary positions`);
  if (c.activation !== want.activation) out.push(`the FFN activation is ${c.activation}; Qwen2-MoE uses SwiGLU`);
  if (c.bias) out.push('the projections have biases; Qwen2-MoE has none');
  return out;
}

/** [rows × cols] row-major → its transpose, optionally of a column block [c0, c1). */
function transpose(a: Float32Array, rows: number, cols: number, c0 = 0, c1 = cols): Float32Array {
  const w = c1 - c0, out = new Float32Array(w * rows);
  for (let r = 0; r < rows; r++) for (let c = c0; c < c1; c++) out[(c - c0) * rows + r] = a[r * cols + c]!;
  return out;
}

const f32 = (shape: number[], data: Float32Array): Tensor => ({ dtype: 'F32', shape, data });

export function exportQwen2Moe(c: ModelConfig, params: Named[], tokenizer: TokenizerSpec) {
  const problems = qwen2MoeMismatches(c);
  if (problems.length > 0) {
    throw new Error(`this model cannot be expressed as Qwen2-MoE: ${problems.join('; ')}. `
      + 'Train with --arch qwen2-moe (norm rmsnorm, positions rope, activation swiglu, bias off) to get an exportable model.');
  }
  const p = new Map(params.map((q) => [q.name, q]));
  const get = (name: string) => {
    const q = p.get(name);
    if (!q) throw new Error(`export: the model has no parameter ${name}`);
    return q.data;
  };
  const d = c.dModel, f = c.dFF, E = c.numExperts;
  const t: Record<string, Tensor> = {};
  t['model.embed_tokens.weight'] = f32([c.vocabSize, d], Float32Array.from(get('embed.weight')));
  const dense: number[] = [];
  for (let i = 0; i < c.layers; i++) {
    const L = `model.layers.${i}`, at = `layers.${i}`;
    t[`${L}.input_layernorm.weight`] = f32([d], Float32Array.from(get(`${at}.norm1.weight`)));
    t[`${L}.post_attention_layernorm.weight`] = f32([d], Float32Array.from(get(`${at}.norm2.weight`)));
    const qkv = get(`${at}.attn.qkv.weight`);
    ['q', 'k', 'v'].forEach((name, j) => { t[`${L}.self_attn.${name}_proj.weight`] = f32([d, d], transpose(qkv, d, 3 * d, j * d, (j + 1) * d)); });
    t[`${L}.self_attn.o_proj.weight`] = f32([d, d], transpose(get(`${at}.attn.proj.weight`), d, d));
    if (isSparseLayer(c, i)) {
      t[`${L}.mlp.gate.weight`] = f32([E, d], transpose(get(`${at}.moe.router`), d, E));
      const wIn = get(`${at}.moe.w_in`), wGate = get(`${at}.moe.w_gate`), wOut = get(`${at}.moe.w_out`);
      for (let e = 0; e < E; e++) {
        const slice = (a: Float32Array) => a.subarray(e * d * f, (e + 1) * d * f);
        t[`${L}.mlp.experts.${e}.gate_proj.weight`] = f32([f, d], transpose(slice(wGate), d, f));
        t[`${L}.mlp.experts.${e}.up_proj.weight`] = f32([f, d], transpose(slice(wIn), d, f));
        t[`${L}.mlp.experts.${e}.down_proj.weight`] = f32([d, f], transpose(slice(wOut), f, d));
      }
      // Qwen2-MoE always adds a gated shared expert; all zeros, it adds exactly nothing.
      t[`${L}.mlp.shared_expert.gate_proj.weight`] = f32([f, d], new Float32Array(f * d));
      t[`${L}.mlp.shared_expert.up_proj.weight`] = f32([f, d], new Float32Array(f * d));
      t[`${L}.mlp.shared_expert.down_proj.weight`] = f32([d, f], new Float32Array(d * f));
      t[`${L}.mlp.shared_expert_gate.weight`] = f32([1, d], new Float32Array(d));
    } else {
      dense.push(i);
      t[`${L}.mlp.gate_proj.weight`] = f32([f, d], transpose(get(`${at}.mlp.gate.weight`), d, f));
      t[`${L}.mlp.up_proj.weight`] = f32([f, d], transpose(get(`${at}.mlp.up.weight`), d, f));
      t[`${L}.mlp.down_proj.weight`] = f32([d, f], transpose(get(`${at}.mlp.down.weight`), f, d));
    }
  }
  t['model.norm.weight'] = f32([d], Float32Array.from(get('norm.weight')));
  t['lm_head.weight'] = f32([c.vocabSize, d], Float32Array.from(get('embed.weight'))); // tied, as ours
  const config = {
    architectures: ['Qwen2MoeForCausalLM'], model_type: 'qwen2_moe', torch_dtype: 'float32',
    vocab_size: c.vocabSize, hidden_size: d, intermediate_size: f, moe_intermediate_size: f,
    shared_expert_intermediate_size: f, num_hidden_layers: c.layers, num_attention_heads: c.heads,
    num_key_value_heads: c.heads, max_position_embeddings: c.context, hidden_act: 'silu',
    rms_norm_eps: 1e-6, rope_theta: 10000, rope_scaling: null, tie_word_embeddings: true,
    use_sliding_window: false, attention_dropout: 0, qkv_bias: false,
    num_experts: Math.max(1, E), num_experts_per_tok: c.topK, norm_topk_prob: c.topK > 1 && c.normalizeTopK,
    decoder_sparse_step: 1, mlp_only_layers: dense, router_aux_loss_coef: c.auxLossCoef, output_router_logits: false,
    initializer_range: 0.02, use_cache: true, bos_token_id: null, eos_token_id: null,
  };
  return { config, tensors: t, tokenizer: tokenizerJson(tokenizer) };
}

/** GPT-2's byte ↔ printable-character table, which Hugging Face's ByteLevel pre-tokenizer uses. */
export function bytesToUnicode(): string[] {
  const printable = (b: number) => (b >= 33 && b <= 126) || (b >= 161 && b <= 172) || (b >= 174 && b <= 255);
  const table: string[] = [];
  let extra = 0;
  for (let b = 0; b < 256; b++) table.push(String.fromCodePoint(printable(b) ? b : 256 + extra++));
  return table;
}

/** A tokenizers-library tokenizer.json for our char or byte vocabulary: a BPE with no merges. */
export function tokenizerJson(spec: TokenizerSpec): object {
  if (spec.kind === 'bpe') {
    throw new Error(`export: a run with the ${spec.encoding}-${spec.vocab} BPE tokenizer cannot be exported yet (its tokenizer.json needs GPT-2's merges); export runs with a char or byte tokenizer`);
  }
  const base = { version: '1.0', truncation: null, padding: null, added_tokens: [], normalizer: null, post_processor: null };
  const bpe = (vocab: Record<string, number>) => ({
    type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
    fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: [],
  });
  if (spec.kind === 'byte') {
    const byteLevel = { add_prefix_space: false, trim_offsets: false, use_regex: false };
    return {
      ...base, pre_tokenizer: { type: 'ByteLevel', ...byteLevel }, decoder: { type: 'ByteLevel', ...byteLevel },
      model: bpe(Object.fromEntries(bytesToUnicode().map((ch, b) => [ch, b]))),
    };
  }
  const chars = [...(spec.chars ?? '')];
  return { ...base, pre_tokenizer: null, decoder: { type: 'Fuse' }, model: bpe(Object.fromEntries(chars.map((ch, i) => [ch, i]))) };
}

/** Reads a Qwen2-MoE config and weights back into our config and parameter values; refuses what we cannot compute. */
export function importQwen2Moe(hf: Record<string, unknown>, tensor: (name: string) => Tensor | undefined, source: string):
  { model: Omit<ModelConfig, 'vocabSize'> & { vocabSize: number }; values: Map<string, Float32Array> } {
  const fail = (why: string): never => { throw new Error(`${source}: ${why}`); };
  const num = (key: string): number => {
    const v = hf[key];
    return typeof v === 'number' && Number.isFinite(v) ? v : fail(`config.json: ${key} must be a number, got ${JSON.stringify(v)}`);
  };
  if (hf.model_type !== 'qwen2_moe') fail(`config.json: model_type is ${JSON.stringify(hf.model_type)}, expected "qwen2_moe"`);
  const d = num('hidden_size'), f = num('intermediate_size'), layers = num('num_hidden_layers'), heads = num('num_attention_heads');
  const E = num('num_experts'), V = num('vocab_size');
  const refusals: string[] = [];
  if ((hf.num_key_value_heads ?? heads) !== heads) refusals.push(`grouped-query attention (${String(hf.num_key_value_heads)} key/value heads for ${heads})`);
  if ((hf.moe_intermediate_size ?? f) !== f) refusals.push(`experts ${String(hf.moe_intermediate_size)} wide but dense FFNs ${f} (Switchyard uses one width)`);
  if ((hf.hidden_act ?? 'silu') !== 'silu') refusals.push(`activation ${String(hf.hidden_act)} (only silu, as SwiGLU)`);
  // transformers 5 writes rope_parameters {rope_type, rope_theta}; earlier versions rope_theta and rope_scaling.
  const rope = (hf.rope_parameters ?? {}) as { rope_type?: unknown; rope_theta?: unknown };
  const theta = rope.rope_theta ?? hf.rope_theta ?? 10000, ropeType = rope.rope_type ?? 'default';
  if (theta !== 10000 || ropeType !== 'default' || hf.rope_scaling) {
    refusals.push(`rotary positions of base ${String(theta)}, type ${String(ropeType)}${hf.rope_scaling ? ', with scaling' : ''} (only base 10000, default, unscaled)`);
  }
  if (hf.use_sliding_window) refusals.push('sliding-window attention');
  const mlpOnly = new Set((hf.mlp_only_layers as number[] | undefined) ?? []);
  const step = (hf.decoder_sparse_step as number | undefined) ?? 1;
  const sparse = Array.from({ length: layers }, (_, i) => !mlpOnly.has(i) && E > 0 && (i + 1) % step === 0);
  // Our rule: every sparseStep-th layer. Find the step that gives the same set.
  const sparseStep = Array.from({ length: layers }, (_, s) => s + 1)
    .find((s) => sparse.every((isSparse, i) => isSparse === ((i + 1) % s === 0)));
  const anySparse = sparse.some(Boolean);
  if (anySparse && sparseStep === undefined) refusals.push(`Switch layers at ${sparse.flatMap((x, i) => (x ? [i] : [])).join(', ')}: not every n-th layer`);

  const weight = (name: string, shape: number[]): Float32Array => {
    const t = tensor(name) ?? fail(`missing tensor ${name}`);
    if (t.shape.join() !== shape.join()) fail(`tensor ${name} has shape [${t.shape.join('×')}], expected [${shape.join('×')}]`);
    if (t.dtype === 'I32') fail(`tensor ${name} is I32, expected floats`);
    return t.data as Float32Array;
  };
  const isZero = (name: string) => { const t = tensor(name); return !t || (t.data as Float32Array).every((v) => v === 0); };
  for (let i = 0; i < layers; i++) {
    const L = `model.layers.${i}`;
    for (const b of ['q', 'k', 'v', 'o']) if (!isZero(`${L}.self_attn.${b}_proj.bias`)) refusals.push(`layer ${i} has non-zero attention biases`);
    if (sparse[i] && ['gate_proj', 'up_proj', 'down_proj'].some((w) => !isZero(`${L}.mlp.shared_expert.${w}.weight`))) {
      refusals.push(`layer ${i}'s shared expert is not zero (Switchyard's layers have no shared expert)`);
    }
  }
  const embed = weight('model.embed_tokens.weight', [V, d]);
  const head = tensor('lm_head.weight');
  if (head && !(head.data as Float32Array).every((v, i) => v === embed[i])) refusals.push('an output head different from the embedding (Switchyard ties them)');
  if (refusals.length > 0) fail(`cannot import: ${[...new Set(refusals)].join('; ')}`);

  /** [out × in] → our [in × out]. */
  const back = (a: Float32Array, rows: number, cols: number) => transpose(a, rows, cols);
  const values = new Map<string, Float32Array>();
  values.set('embed.weight', Float32Array.from(embed));
  for (let i = 0; i < layers; i++) {
    const L = `model.layers.${i}`, at = `layers.${i}`;
    values.set(`${at}.norm1.weight`, Float32Array.from(weight(`${L}.input_layernorm.weight`, [d])));
    values.set(`${at}.norm2.weight`, Float32Array.from(weight(`${L}.post_attention_layernorm.weight`, [d])));
    const qkv = new Float32Array(d * 3 * d);
    ['q', 'k', 'v'].forEach((name, j) => {
      const w = back(weight(`${L}.self_attn.${name}_proj.weight`, [d, d]), d, d);
      for (let r = 0; r < d; r++) qkv.set(w.subarray(r * d, (r + 1) * d), r * 3 * d + j * d);
    });
    values.set(`${at}.attn.qkv.weight`, qkv);
    values.set(`${at}.attn.proj.weight`, back(weight(`${L}.self_attn.o_proj.weight`, [d, d]), d, d));
    if (sparse[i]) {
      values.set(`${at}.moe.router`, back(weight(`${L}.mlp.gate.weight`, [E, d]), E, d));
      const stack = (proj: string, rows: number, cols: number) => {
        const out = new Float32Array(E * rows * cols);
        for (let e = 0; e < E; e++) out.set(back(weight(`${L}.mlp.experts.${e}.${proj}.weight`, [rows, cols]), rows, cols), e * rows * cols);
        return out;
      };
      values.set(`${at}.moe.w_in`, stack('up_proj', f, d));
      values.set(`${at}.moe.w_gate`, stack('gate_proj', f, d));
      values.set(`${at}.moe.w_out`, stack('down_proj', d, f));
    } else {
      values.set(`${at}.mlp.up.weight`, back(weight(`${L}.mlp.up_proj.weight`, [f, d]), f, d));
      values.set(`${at}.mlp.gate.weight`, back(weight(`${L}.mlp.gate_proj.weight`, [f, d]), f, d));
      values.set(`${at}.mlp.down.weight`, back(weight(`${L}.mlp.down_proj.weight`, [d, f]), d, f));
    }
  }
  values.set('norm.weight', Float32Array.from(weight('model.norm.weight', [d])));
  const topK = num('num_experts_per_tok');
  const model = {
    vocabSize: V, context: num('max_position_embeddings'), layers, heads, dModel: d, dFF: f, ...ARCHITECTURES['qwen2-moe'],
    dropout: 0, numExperts: anySparse ? E : 0, sparseStep: sparseStep ?? 1, topK,
    // Transformers routes every token (dropless); so does the imported model, to compute the same function.
    capacityFactor: null, normalizeTopK: hf.norm_topk_prob === true, auxLossCoef: (hf.router_aux_loss_coef as number | undefined) ?? 0.01,
    zLossCoef: 0.001, routerJitter: 0, expertDropout: 0, expertDtype: 'f32' as const,
  };
  return { model, values };
}

/** Our tokenizer spec from a tokenizer.json this module wrote (a char or byte vocabulary). */
export function tokenizerFromJson(json: Record<string, unknown>, source: string): TokenizerSpec {
  const model = json.model as { type?: string; vocab?: Record<string, number>; merges?: unknown[] } | undefined;
  const pre = json.pre_tokenizer as { type?: string } | null | undefined;
  if (model?.type !== 'BPE' || !model.vocab || (model.merges ?? []).length > 0) {
    throw new Error(`${source}: only character or byte vocabularies (a BPE without merges) can be imported`);
  }
  if (pre?.type === 'ByteLevel') return { kind: 'byte' };
  const chars = Object.entries(model.vocab).sort((a, b) => a[1] - b[1]);
  if (chars.some(([ch, id], i) => id !== i || [...ch].length !== 1)) throw new Error(`${source}: the vocabulary is not one character per id 0…n−1`);
  return { kind: 'char', chars: chars.map(([ch]) => ch).join('') };
}
