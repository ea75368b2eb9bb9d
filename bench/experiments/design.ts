// The Switch-vs-dense experiment's design, shared by the experiment and its pilots: the model, the
// schedule, the runs, and how many FLOPs a token of training costs.
import type { ModelConfig, TrainConfig } from '../../model/config.js';

/**
 * The model: the tiny preset's width (d 128, 4 layers of 4 heads, SwiGLU FFNs 344 wide, the
 * qwen2-moe layout) with a context of 128 tokens, and a Switch layer in place of every other FFN
 * (layers 1 and 3), as the paper and the preset place them. (A Switch layer in every FFN trained
 * far slower: 4.124 against dense's 3.912 after 300 steps, where every other FFN gave 3.894;
 * docs/experiments/switch-vs-dense-mix/README.md.) Router jitter 0.01 and the paper's α = 0.01,
 * β = 0.001, as the preset.
 */
export const MODEL: Partial<ModelConfig> = { context: 128, sparseStep: 2 };
const LAYERS = 4;

/** The schedule every run shares: batch 16 × 128 tokens, cosine from the peak to a tenth of it after a linear warm-up. */
export const SCHEDULE: Partial<TrainConfig> = { batch: 16, warmupSteps: 100, evalBatches: 20, beta2: 0.99, weightDecay: 0.1, gradClip: 1 };

export interface RunSpec {
  name: string;
  /** 0: dense. */
  experts: number;
  topK: number;
  /** null: dropless; 0 for dense. */
  capacityFactor: number | null;
  /** The dense model whose FFNs are as wide as E experts together: the Switch model's parameters, E× its FFN FLOPs. */
  sameParams: boolean;
  seed: number;
  model: Partial<ModelConfig>;
}

export const SEEDS = [1337, 1338, 1339];
const DFF = 344;

export function dense(seed = SEEDS[0]!): RunSpec {
  return { name: seed === SEEDS[0] ? 'dense' : `dense-s${seed}`, experts: 0, topK: 1, capacityFactor: 0, sameParams: false, seed, model: { numExperts: 0 } };
}

/**
 * The dense model with the parameters of Switch with E experts: every FFN as wide as the Switch
 * model's FFN parameters spread evenly over the layers. Half the layers hold E experts and half one
 * FFN, so each FFN is (1 + E) / 2 × 344 wide (E = 8: 1,548), and costs (1 + E) / 2 × the FFN FLOPs.
 */
export function wideDense(E: number): RunSpec {
  const sparse = LAYERS / MODEL.sparseStep!, width = ((LAYERS - sparse) + sparse * E) / LAYERS;
  return { name: `dense-same-params-e${E}`, experts: 0, topK: 1, capacityFactor: 0, sameParams: true, seed: SEEDS[0]!, model: { numExperts: 0, dFF: Math.round(width * DFF) } };
}

/**
 * Switch with E experts. `normalizeTopK: false` (top-k > 1 only) keeps the router's probabilities
 * as the gates instead of rescaling the chosen ones to sum to 1: the gates top-1 has.
 */
export function switchRun(E: number, o: { capacityFactor?: number | null; topK?: number; seed?: number; normalizeTopK?: boolean } = {}): RunSpec {
  const capacityFactor = o.capacityFactor === undefined ? 1.25 : o.capacityFactor, topK = o.topK ?? 1, seed = o.seed ?? SEEDS[0]!;
  const normalizeTopK = o.normalizeTopK ?? true;
  const name = `${topK === 1 ? 'switch' : `top${topK}`}-e${E}${capacityFactor === null ? '-dropless' : capacityFactor === 1.25 ? '' : `-cf${capacityFactor}`}`
    + (normalizeTopK ? '' : '-raw-gates') + (seed === SEEDS[0] ? '' : `-s${seed}`);
  return { name, experts: E, topK, capacityFactor, sameParams: false, seed, model: { numExperts: E, topK, capacityFactor, normalizeTopK } };
}

/** What one token of training costs, forward and backward (≈ 3× the forward's multiply-adds × 2). */
export function trainingFlopsPerToken(m: Pick<ModelConfig, 'layers' | 'dModel' | 'dFF' | 'context' | 'vocabSize' | 'numExperts' | 'topK' | 'sparseStep' | 'activation'>): number {
  const d = m.dModel, ffnMatrices = m.activation === 'swiglu' ? 3 : 2;
  let params = 0;
  for (let layer = 0; layer < m.layers; layer++) {
    params += 4 * d * d; // q, k, v, o
    const sparse = m.numExperts > 0 && (layer + 1) % m.sparseStep === 0;
    params += sparse ? m.topK * ffnMatrices * d * m.dFF + d * m.numExperts : ffnMatrices * d * m.dFF;
  }
  // Attention scores and their weighted sum: causal, so each token sees (context + 1) / 2 keys on average.
  const attention = m.layers * 2 * 2 * d * ((m.context + 1) / 2);
  return 3 * (2 * params + attention + 2 * d * m.vocabSize);
}
