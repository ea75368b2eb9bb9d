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
  return c;
}

/** C = max(1, ceil(cf · k · T / E)); dropless: k · T. Evaluated in this order, as SPEC writes it. */
export function expertCapacity(c: SwitchLayerConfig, tokens: number): number {
  if (c.capacityFactor === null) return c.topK * tokens;
  return Math.max(1, Math.ceil((c.capacityFactor * c.topK * tokens) / c.numExperts));
}
