// The Switch layer's configuration: one object, its defaults, and the checks that turn bad values
// into errors that name them.

export type Activation = 'relu' | 'gelu' | 'swiglu';
export const ACTIVATIONS: readonly Activation[] = ['relu', 'gelu', 'swiglu'];

export interface SwitchLayerConfig {
  dModel: number;
  dFF: number;
  numExperts: number;
  /** Experts per token: 1 is Switch routing, 2 is GShard's top-2. */
  topK: number;
  /** Slots per expert = ceil(cf · k · T / E); null routes every token (dropless). */
  capacityFactor: number | null;
  activation: Activation;
  /** α of the load-balancing loss α · E · Σ f_i · P_i. */
  auxLossCoef: number;
  /** β of the router z-loss β · mean(logsumexp(logits)²). */
  zLossCoef: number;
  /** For k > 1: divide the k chosen probabilities by their sum. */
  normalizeTopK: boolean;
  /** ε of the multiplicative router-input noise Uniform(1−ε, 1+ε); training only. */
  routerJitter: number;
  /** Dropout rate on the experts' hidden layer; training only. */
  expertDropout: number;
  /**
   * Slots per expert per group of tokens (ForwardOptions.groupSize), fixed, in place of the
   * capacity factor: transformers' SwitchTransformers `expert_capacity`. null: from capacityFactor.
   */
  fixedCapacity: number | null;
}

export const SWITCH_LAYER_DEFAULTS = {
  topK: 1,
  capacityFactor: 1.25,
  activation: 'relu',
  auxLossCoef: 0.01,
  zLossCoef: 0.001,
  normalizeTopK: true,
  routerJitter: 0,
  expertDropout: 0,
  fixedCapacity: null,
} as const satisfies Partial<SwitchLayerConfig>;

export type SwitchLayerOptions = Pick<SwitchLayerConfig, 'dModel' | 'dFF' | 'numExperts'> & Partial<SwitchLayerConfig>;

/** Fills defaults and validates; every error names the field and what is accepted. */
export function switchLayerConfig(options: SwitchLayerOptions): SwitchLayerConfig {
  const c: SwitchLayerConfig = { ...SWITCH_LAYER_DEFAULTS, ...options };
  const positiveInteger = (name: keyof SwitchLayerConfig) => {
    const v = c[name];
    if (typeof v !== 'number' || !Number.isInteger(v) || v <= 0) {
      throw new RangeError(`switch layer: ${name} must be a positive integer, got ${String(v)}`);
    }
  };
  const inRange = (name: keyof SwitchLayerConfig, low: number, high: number, highOpen: boolean) => {
    const v = c[name];
    if (typeof v !== 'number' || !Number.isFinite(v) || v < low || (highOpen ? v >= high : v > high)) {
      throw new RangeError(`switch layer: ${name} must be in [${low}, ${high}${highOpen ? ')' : ']'}, got ${String(v)}`);
    }
  };
  positiveInteger('dModel');
  positiveInteger('dFF');
  positiveInteger('numExperts');
  positiveInteger('topK');
  if (c.topK > c.numExperts) {
    throw new RangeError(`switch layer: topK (${c.topK}) cannot exceed numExperts (${c.numExperts})`);
  }
  if (c.capacityFactor !== null && !(typeof c.capacityFactor === 'number' && Number.isFinite(c.capacityFactor) && c.capacityFactor > 0)) {
    throw new RangeError(`switch layer: capacityFactor must be a number > 0, or null for dropless routing; got ${String(c.capacityFactor)}`);
  }
  if (!ACTIVATIONS.includes(c.activation)) {
    throw new RangeError(`switch layer: activation must be one of ${ACTIVATIONS.join(', ')}; got ${String(c.activation)}`);
  }
  inRange('auxLossCoef', 0, Infinity, true);
  inRange('zLossCoef', 0, Infinity, true);
  inRange('routerJitter', 0, 1, true);
  inRange('expertDropout', 0, 1, true);
  if (typeof c.normalizeTopK !== 'boolean') throw new TypeError(`switch layer: normalizeTopK must be true or false`);
  if (c.fixedCapacity !== null && !(Number.isInteger(c.fixedCapacity) && c.fixedCapacity > 0)) {
    throw new RangeError(`switch layer: fixedCapacity must be a positive integer or null, got ${String(c.fixedCapacity)}`);
  }
  return c;
}

/**
 * Slots per expert in a group of `tokens`: C = max(1, ceil(cf · k · T / E)), evaluated in this
 * order as SPEC writes it; dropless: k · T; or the fixed capacity where one is given.
 */
export function expertCapacity(c: SwitchLayerConfig, tokens: number): number {
  if (c.fixedCapacity !== null) return c.fixedCapacity;
  if (c.capacityFactor === null) return c.topK * tokens;
  return Math.max(1, Math.ceil((c.capacityFactor * c.topK * tokens) / c.numExperts));
}

// ---------------------------------------------------------------------------------------------
// The language model: one config object and its presets.

export type Norm = 'layernorm' | 'rmsnorm';
export type Positions = 'learned' | 'rope';
export type ExpertDtype = 'f32' | 'bf16';

export interface ModelConfig {
  vocabSize: number;
  /** Tokens of context. */
  context: number;
  layers: number;
  heads: number;
  dModel: number;
  /** Hidden width of the dense FFNs and of every expert. */
  dFF: number;
  norm: Norm;
  positions: Positions;
  activation: Activation;
  /** Biases in the attention and dense FFN projections (experts and router never have one). */
  bias: boolean;
  /** Dropout on the embeddings and on each residual branch. */
  dropout: number;
  /** 0: a dense model. */
  numExperts: number;
  /** Every sparseStep-th layer (layers sparseStep−1, 2·sparseStep−1, …) is a Switch layer. */
  sparseStep: number;
  topK: number;
  capacityFactor: number | null;
  normalizeTopK: boolean;
  auxLossCoef: number;
  zLossCoef: number;
  routerJitter: number;
  expertDropout: number;
  /** How expert weights are stored for compute; the optimizer always keeps float32 masters. */
  expertDtype: ExpertDtype;
}

export interface TrainConfig {
  batch: number;
  steps: number;
  learningRate: number;
  minLearningRate: number;
  warmupSteps: number;
  beta1: number;
  beta2: number;
  weightDecay: number;
  gradClip: number;
  evalEvery: number;
  /** Held-out batches averaged for the validation loss. */
  evalBatches: number;
  seed: number;
}

/**
 * Architectures by name. `gpt` is nanoGPT's (LayerNorm, learned positions, GELU); `qwen2-moe` is
 * Hugging Face's Qwen2-MoE layout (RMSNorm, rotary positions in the half-split form, SwiGLU, no
 * biases; the router's softmax over all experts, top-1 gate not renormalised), which exports
 * to transformers and Megatron-Core unchanged.
 */
export const ARCHITECTURES = {
  gpt: { norm: 'layernorm', positions: 'learned', activation: 'gelu', bias: false },
  'qwen2-moe': { norm: 'rmsnorm', positions: 'rope', activation: 'swiglu', bias: false },
} as const satisfies Record<string, Pick<ModelConfig, 'norm' | 'positions' | 'activation' | 'bias'>>;

export type Preset = { model: Omit<ModelConfig, 'vocabSize'>; train: TrainConfig };

const SWITCH_DEFAULTS = {
  numExperts: 8, sparseStep: 2, topK: 1, capacityFactor: 1.25, normalizeTopK: true,
  auxLossCoef: 0.01, zLossCoef: 0.001, routerJitter: 0.01, expertDropout: 0, expertDtype: 'f32',
} as const;

/** nanoGPT's Shakespeare training settings. */
const NANOGPT_TRAINING = {
  learningRate: 1e-3, minLearningRate: 1e-4, warmupSteps: 100, beta1: 0.9, beta2: 0.99, weightDecay: 0.1, gradClip: 1,
  evalEvery: 250, evalBatches: 20, seed: 1337,
} as const;

export const PRESETS: Record<'tiny' | 'small', Preset> = {
  // nanoGPT's CPU Shakespeare configuration, with 8 experts on every other layer, in the
  // qwen2-moe layout: it reached validation loss 1.78 in 1000 steps where nanoGPT's own layout
  // (`--arch gpt`) reached 2.05. SwiGLU's three matrices are 344 wide (≈ 2/3 of nanoGPT's 4·128,
  // as LLaMA does), so an FFN has nanoGPT's parameters and FLOPs; 512 was 13% slower a step for
  // a final loss 0.02 lower (docs/training.md).
  tiny: {
    model: {
      context: 64, layers: 4, heads: 4, dModel: 128, dFF: 344, ...ARCHITECTURES['qwen2-moe'], dropout: 0, ...SWITCH_DEFAULTS,
    },
    train: { batch: 12, steps: 2000, ...NANOGPT_TRAINING },
  },
  small: {
    model: {
      context: 256, layers: 6, heads: 6, dModel: 384, dFF: 1024, ...ARCHITECTURES['qwen2-moe'], dropout: 0.2, ...SWITCH_DEFAULTS,
    },
    // nanoGPT's batch is 64; 64 × 256 tokens of activations exceed the 4 GiB a WebAssembly
    // memory can hold, so 16 (there is no gradient accumulation yet).
    train: { batch: 16, steps: 5000, ...NANOGPT_TRAINING },
  },
};

/** The layers that are Switch layers, as Qwen2-MoE's decoder_sparse_step counts them. */
export function isSparseLayer(c: Pick<ModelConfig, 'numExperts' | 'sparseStep'>, layer: number): boolean {
  return c.numExperts > 0 && (layer + 1) % c.sparseStep === 0;
}

/** Validates a model config; every error names the field. */
export function checkModelConfig(c: ModelConfig): ModelConfig {
  const bad = (field: string, why: string): never => { throw new RangeError(`model config: ${field} ${why}`); };
  for (const f of ['vocabSize', 'context', 'layers', 'heads', 'dModel', 'dFF', 'sparseStep'] as const) {
    if (!Number.isInteger(c[f]) || c[f] <= 0) bad(f, `must be a positive integer, got ${c[f]}`);
  }
  if (c.dModel % c.heads !== 0) bad('dModel', `(${c.dModel}) must be a multiple of heads (${c.heads})`);
  if (c.dModel % 4 !== 0) bad('dModel', `(${c.dModel}) must be a multiple of 4 (the vectorised norms)`);
  if (c.positions === 'rope' && (c.dModel / c.heads) % 2 !== 0) bad('dModel', 'per head must be even for rotary positions');
  if (!['layernorm', 'rmsnorm'].includes(c.norm)) bad('norm', `must be layernorm or rmsnorm, got ${c.norm}`);
  if (!['learned', 'rope'].includes(c.positions)) bad('positions', `must be learned or rope, got ${c.positions}`);
  if (!ACTIVATIONS.includes(c.activation)) bad('activation', `must be one of ${ACTIVATIONS.join(', ')}, got ${c.activation}`);
  if (!['f32', 'bf16'].includes(c.expertDtype)) bad('expertDtype', `must be f32 or bf16, got ${c.expertDtype}`);
  if (!(c.dropout >= 0 && c.dropout < 1)) bad('dropout', `must be in [0, 1), got ${c.dropout}`);
  if (!Number.isInteger(c.numExperts) || c.numExperts < 0) bad('numExperts', `must be 0 (dense) or a positive integer, got ${c.numExperts}`);
  if (c.numExperts > 0) {
    switchLayerConfig({ ...c, dModel: c.dModel, dFF: c.dFF, numExperts: c.numExperts });
  }
  return c;
}
