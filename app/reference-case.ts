// Reference cases (test/reference/FORMAT.md): float64-autograd results of docs/SPEC.md for given inputs.
// Loading validates every field's shape and names the first thing wrong; checking runs the case
// forward and backward through a SwitchLayer and compares as FORMAT.md prescribes.
import { readFileSync } from 'node:fs';
import type { Kernels } from '../kernels/index.js';
import type { SwitchLayerOptions } from '../model/config.js';
import { SwitchLayer, type SwitchStats, type SwitchWeights } from '../model/switch-layer.js';

export const TOLERANCE = 1e-4;

export interface ReferenceCase {
  name: string;
  source: string;
  options: SwitchLayerOptions;
  tokens: number;
  inputs: { x: Float32Array; router: Float32Array; wIn: Float32Array; wOut: Float32Array; wGate?: Float32Array; gradY: Float32Array };
  outputs: {
    y: Float64Array; routerProbs: Float64Array; auxLoss: number; zLoss: number; loss: number;
    expertIndex: Int32Array; kept: Uint8Array; tokensPerExpert: Int32Array; keptPerExpert: Int32Array;
    capacity: number; dropped: number;
  };
  grads: { x: Float64Array; router: Float64Array; wIn: Float64Array; wOut: Float64Array; wGate?: Float64Array };
}

export interface Comparison {
  field: string;
  /** Relative error for floats; 0 or 1 (equal or not) for discrete outputs. */
  error: number;
  pass: boolean;
  exact: boolean;
}

export interface CaseResult { name: string; source: string; pass: boolean; comparisons: Comparison[] }

/** ‖got − want‖₂ / ‖want‖₂ (‖got‖₂ when want is all zeros). NaN anywhere gives NaN, which never passes. */
export function relativeError(got: ArrayLike<number>, want: ArrayLike<number>): number {
  if (got.length !== want.length) return Infinity;
  let diff = 0, norm = 0;
  for (let i = 0; i < got.length; i++) {
    const g = got[i]!, w = want[i]!;
    diff += (g - w) * (g - w);
    norm += w * w;
  }
  return norm > 0 ? Math.sqrt(diff / norm) : Math.sqrt(diff);
}

export function loadReferenceCase(path: string): ReferenceCase {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (cause) {
    throw new Error(`${path}: cannot read the case file (${(cause as Error).message})`, { cause });
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (cause) {
    throw new Error(`${path}: not valid JSON (${(cause as Error).message})`, { cause });
  }
  return parseReferenceCase(json, path);
}

export function parseReferenceCase(json: unknown, source: string): ReferenceCase {
  const fail = (message: string): never => { throw new Error(`${source}: ${message}`); };
  const obj = (v: unknown, path: string): Record<string, unknown> =>
    typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : fail(`${path} must be an object`);
  const int = (v: unknown, path: string): number =>
    typeof v === 'number' && Number.isInteger(v) ? v : fail(`${path} must be an integer, got ${JSON.stringify(v)}`);
  const num = (v: unknown, path: string): number =>
    typeof v === 'number' && Number.isFinite(v) ? v : fail(`${path} must be a finite number, got ${JSON.stringify(v)}`);

  const root = obj(json, 'the case');
  const config = obj(root.config, 'config');
  const inputs = obj(root.inputs, 'inputs');
  const outputs = obj(root.outputs, 'outputs');
  const grads = obj(root.grads, 'grads');
  const [E, k, d, f, T] = ['num_experts', 'top_k', 'd_model', 'd_ff', 'tokens'].map((key) => int(config[key], `config.${key}`)) as
    [number, number, number, number, number];
  if (T <= 0) fail(`config.tokens must be positive, got ${T}`);
  const cf = config.capacity_factor;
  const activation = config.activation;
  if (typeof activation !== 'string') fail('config.activation must be a string');
  const swiglu = activation === 'swiglu';
  const options: SwitchLayerOptions = {
    dModel: d, dFF: f, numExperts: E, topK: k,
    capacityFactor: cf === null ? null : num(cf, 'config.capacity_factor'),
    activation: activation as SwitchLayerOptions['activation'] & string,
    auxLossCoef: num(config.aux_loss_coef, 'config.aux_loss_coef'),
    zLossCoef: num(config.z_loss_coef, 'config.z_loss_coef'),
    normalizeTopK: config.normalize_top_k === undefined ? true : config.normalize_top_k === true,
  };

  /** Flattens a nested array of the given shape, naming the field and the shape on a mismatch. */
  const tensor = (v: unknown, path: string, shape: number[]): number[] => {
    const out: number[] = [];
    const walk = (node: unknown, depth: number, at: string) => {
      if (depth === shape.length) {
        if (typeof node === 'boolean') out.push(node ? 1 : 0);
        else if (typeof node === 'number') out.push(node);
        else fail(`${at} must be a number, got ${JSON.stringify(node)}`);
        return;
      }
      if (!Array.isArray(node) || node.length !== shape[depth]) {
        fail(`${path} must have shape [${shape.join('×')}]: ${at} has ${Array.isArray(node) ? node.length : 'no'} entries, expected ${shape[depth]}`);
      }
      (node as unknown[]).forEach((child, i) => walk(child, depth + 1, `${at}[${i}]`));
    };
    walk(v, 0, path);
    return out;
  };
  const f32 = (v: unknown, path: string, shape: number[]) => Float32Array.from(tensor(v, path, shape));
  const f64 = (v: unknown, path: string, shape: number[]) => Float64Array.from(tensor(v, path, shape));
  /** The layer's weights under the case's names: the inputs, and their gradients alike. */
  const layerWeights = <A>(o: Record<string, unknown>, at: string, read: (v: unknown, path: string, shape: number[]) => A) => ({
    router: read(o.router_weight, `${at}.router_weight`, [d, E]),
    wIn: read(o.expert_w_in, `${at}.expert_w_in`, [E, d, f]),
    wOut: read(o.expert_w_out, `${at}.expert_w_out`, [E, f, d]),
    ...(swiglu && { wGate: read(o.expert_w_gate, `${at}.expert_w_gate`, [E, d, f]) }),
  });

  return {
    name: typeof root.name === 'string' ? root.name : source,
    source,
    options,
    tokens: T,
    inputs: {
      x: f32(inputs.x, 'inputs.x', [T, d]),
      ...layerWeights(inputs, 'inputs', f32),
      gradY: f32(inputs.grad_y, 'inputs.grad_y', [T, d]),
    },
    outputs: {
      y: f64(outputs.y, 'outputs.y', [T, d]),
      routerProbs: f64(outputs.router_probs, 'outputs.router_probs', [T, E]),
      auxLoss: num(outputs.aux_loss, 'outputs.aux_loss'),
      zLoss: num(outputs.z_loss, 'outputs.z_loss'),
      loss: num(outputs.loss, 'outputs.loss'),
      expertIndex: Int32Array.from(tensor(outputs.expert_index, 'outputs.expert_index', [T, k])),
      kept: Uint8Array.from(tensor(outputs.kept, 'outputs.kept', [T, k])),
      tokensPerExpert: Int32Array.from(tensor(outputs.tokens_per_expert, 'outputs.tokens_per_expert', [E])),
      keptPerExpert: Int32Array.from(tensor(outputs.kept_per_expert, 'outputs.kept_per_expert', [E])),
      capacity: int(outputs.capacity, 'outputs.capacity'),
      dropped: int(outputs.dropped, 'outputs.dropped'),
    },
    grads: {
      x: f64(grads.x, 'grads.x', [T, d]),
      ...layerWeights(grads, 'grads', f64),
    },
  };
}

/** Whatever computes the Switch layer: the in-process SwitchLayer, or the threaded engine. */
export interface SwitchRunner {
  setWeights(w: { router: Float32Array; wIn: Float32Array; wOut: Float32Array; wGate?: Float32Array }): void;
  forward(x: Float32Array, tokens: number): { y: Float32Array; stats: SwitchStats } | Promise<{ y: Float32Array; stats: SwitchStats }>;
  backward(dy: Float32Array): Float32Array | Promise<Float32Array>;
  readonly grads: SwitchWeights;
  dispose(): void | Promise<void>;
}

/** An in-process layer on the given kernels. */
export const inProcess = (kernels: Kernels) => (options: SwitchLayerOptions): SwitchRunner => new SwitchLayer(kernels, options);

/** Runs a case forward and backward and compares every output and gradient. */
export async function checkReferenceCase(c: ReferenceCase, make: (options: SwitchLayerOptions) => SwitchRunner): Promise<CaseResult> {
  const layer = make(c.options);
  try {
    layer.setWeights({ router: c.inputs.router, wIn: c.inputs.wIn, wOut: c.inputs.wOut, ...(c.inputs.wGate && { wGate: c.inputs.wGate }) });
    const { y, stats } = await layer.forward(c.inputs.x, c.tokens);
    let loss = stats.auxLoss + stats.zLoss;
    for (let i = 0; i < y.length; i++) loss += y[i]! * c.inputs.gradY[i]!;
    const yCopy = Float32Array.from(y);
    const dx = Float32Array.from(await layer.backward(c.inputs.gradY));

    const comparisons: Comparison[] = [];
    const exact = (field: string, got: ArrayLike<number> | number, want: ArrayLike<number> | number) => {
      const equal = typeof got === 'number' ? got === want
        : Array.from(got).every((v, i) => v === (want as ArrayLike<number>)[i]) && got.length === (want as ArrayLike<number>).length;
      comparisons.push({ field, error: equal ? 0 : 1, pass: equal, exact: true });
    };
    const close = (field: string, got: ArrayLike<number> | number, want: ArrayLike<number> | number) => {
      const error = typeof got === 'number'
        ? Math.abs(got - (want as number)) / Math.max(Math.abs(want as number), 1e-12)
        : relativeError(got, want as ArrayLike<number>);
      comparisons.push({ field, error, pass: error < TOLERANCE, exact: false });
    };
    const o = c.outputs;
    exact('expert_index', stats.expertIndex, o.expertIndex);
    exact('kept', stats.kept, o.kept);
    exact('tokens_per_expert', stats.tokensPerExpert, o.tokensPerExpert);
    exact('kept_per_expert', stats.keptPerExpert, o.keptPerExpert);
    exact('capacity', stats.capacity, o.capacity);
    exact('dropped', stats.dropped, o.dropped);
    close('y', yCopy, o.y);
    close('router_probs', stats.routerProbs, o.routerProbs);
    close('aux_loss', stats.auxLoss, o.auxLoss);
    close('z_loss', stats.zLoss, o.zLoss);
    close('loss', loss, o.loss);
    close('grad x', dx, c.grads.x);
    close('grad router_weight', layer.grads.router, c.grads.router);
    close('grad expert_w_in', layer.grads.wIn, c.grads.wIn);
    close('grad expert_w_out', layer.grads.wOut, c.grads.wOut);
    if (c.grads.wGate) close('grad expert_w_gate', layer.grads.wGate!, c.grads.wGate);
    return { name: c.name, source: c.source, pass: comparisons.every((x) => x.pass), comparisons };
  } finally {
    await layer.dispose();
  }
}
