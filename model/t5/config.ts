// The configuration of a Switch Transformers encoder-decoder (Google's released models, as
// Hugging Face transformers' SwitchTransformersForConditionalGeneration computes them): our
// names for the fields of its config.json, and the rules that derive the rest from them.

export interface T5Config {
  /** Embedding rows (32128 for the released models: the tokenizer's 32100, padded). */
  vocabSize: number;
  dModel: number;
  /** Width of one attention head (d_kv); heads · dKv need not equal dModel. */
  dKv: number;
  heads: number;
  /** Hidden width of the dense FFNs and of every expert. */
  dFF: number;
  encoderLayers: number;
  decoderLayers: number;
  /** transformers' encoder_sparse_step / decoder_sparse_step: which blocks are sparse (isSparseBlock). */
  encoderSparseStep: number;
  decoderSparseStep: number;
  numExperts: number;
  /** Slots per expert per sequence (expert_capacity); tokens beyond it in position order are dropped. */
  expertCapacity: number;
  /** relative_attention_num_buckets and relative_attention_max_distance. */
  buckets: number;
  maxDistance: number;
  /** layer_norm_epsilon of the RMS norms. */
  eps: number;
  /** router_aux_loss_coef and router_z_loss_coef. */
  auxLossCoef: number;
  zLossCoef: number;
  /** router_jitter_noise: the router's input is x ⊙ U(1−ε, 1+ε) in training only. */
  routerJitter: number;
  padId: number;
  eosId: number;
  decoderStartId: number;
}

/**
 * transformers' rule: block i of a stack is sparse when step > 0 and (i % step == 1 or step == 1),
 * step being num_layers // num_sparse_layers unless config.json gives it.
 */
export function isSparseBlock(step: number, i: number): boolean {
  return step > 0 && (i % step === 1 || step === 1);
}

export function sparseBlocks(layers: number, step: number): number[] {
  return Array.from({ length: layers }, (_, i) => i).filter((i) => isSparseBlock(step, i));
}

/**
 * transformers adds a stack's router z-loss and load-balancing loss only when its sparse step is
 * greater than 1 (so a stack whose every block is sparse adds none); we follow it.
 */
export function hasRouterLosses(step: number): boolean {
  return step > 1;
}

/** Validates a config; every error names the field. */
export function checkT5Config(c: T5Config): T5Config {
  const bad = (field: string, why: string): never => { throw new RangeError(`switch-transformers config: ${field} ${why}`); };
  for (const f of ['vocabSize', 'dModel', 'dKv', 'heads', 'dFF', 'encoderLayers', 'decoderLayers', 'numExperts', 'expertCapacity', 'buckets', 'maxDistance'] as const) {
    if (!Number.isInteger(c[f]) || c[f] <= 0) bad(f, `must be a positive integer, got ${c[f]}`);
  }
  for (const f of ['encoderSparseStep', 'decoderSparseStep', 'padId', 'eosId', 'decoderStartId'] as const) {
    if (!Number.isInteger(c[f]) || c[f] < 0) bad(f, `must be a whole number ≥ 0, got ${c[f]}`);
  }
  if (c.dModel % 4 !== 0) bad('dModel', `(${c.dModel}) must be a multiple of 4 (the vectorised norms)`);
  if (c.buckets < 4) bad('buckets', `(${c.buckets}) must be at least 4: the encoder splits them by direction, then into exact and logarithmic halves`);
  for (const f of ['eps', 'auxLossCoef', 'zLossCoef'] as const) if (!(c[f] >= 0 && Number.isFinite(c[f]))) bad(f, `must be a finite number ≥ 0, got ${c[f]}`);
  if (!(c.routerJitter >= 0 && c.routerJitter < 1)) bad('routerJitter', `must be in [0, 1), got ${c.routerJitter}`);
  for (const f of ['padId', 'eosId', 'decoderStartId'] as const) if (c[f] >= c.vocabSize) bad(f, `(${c[f]}) is outside the vocabulary of ${c.vocabSize}`);
  return c;
}

/** Parameters of the whole model, for memory planning before anything is allocated. */
export function parameterCount(c: T5Config): number {
  const d = c.dModel, inner = c.heads * c.dKv, f = c.dFF, E = c.numExperts;
  const attention = 4 * d * inner;
  const ffn = (sparse: boolean) => (sparse ? E * 2 * d * f + d * E : 2 * d * f);
  const stack = (layers: number, step: number, cross: boolean) => {
    let n = c.buckets * c.heads + d; // the relative position bias and the final norm
    for (let i = 0; i < layers; i++) n += attention * (cross ? 2 : 1) + d * (cross ? 3 : 2) + ffn(isSparseBlock(step, i));
    return n;
  };
  return c.vocabSize * d + stack(c.encoderLayers, c.encoderSparseStep, false) + stack(c.decoderLayers, c.decoderSparseStep, true);
}
