// The decoder-only Switch Transformer language model, forward and backward.
//   x = wte[tokens] (+ wpe[positions])
//   for each layer: x += attn(norm₁(x));  x += ffn(norm₂(x))   (ffn: a Switch layer every sparseStep-th layer)
//   logits = norm_f(x) · wteᵀ                                   (the embedding is tied to the head)
// Loss: cross-entropy + each Switch layer's aux and z losses. Where a Switch layer computes (this
// thread, or worker threads through the engine) is the caller's choice: `switchFactory`.
// Generation: `prefill` runs a prompt once and keeps its keys and values in a KvCache; `decode`
// then computes one new token for each of several sequences, each at its own position.
import type { Kernels } from '../kernels/index.js';
import { toBF16Precision } from './precision.js';
import {
  type AttentionDecodeBuffers, type AttentionShard, type AttentionShape, type AttentionWeights, type LinearParams, type RopeTables,
  attentionShardDecode, ropeTables, storeKeysValues,
} from './attention.js';
import { type ModelConfig, type SwitchLayerOptions, checkModelConfig, isSparseLayer } from './config.js';
import { crossEntropy } from './loss.js';
import type { FfnShape, FfnWeights } from './ffn.js';
import { KvCache } from './kv-cache.js';
import { type Param, ParamSet } from './params.js';
import { Rng } from './rng.js';
import { DENSE_SHARDS, type FfnShard, type ShardRunner, inProcessShards, shardRange } from './shards.js';
import { type ForwardOptions, SwitchLayer, type SwitchLayerInit, type SwitchStats, type SwitchWeights } from './switch-layer.js';
import { Workspace } from './workspace.js';

/** What the model needs of a Switch layer: the in-process SwitchLayer, or the engine's threaded one. */
export interface SwitchBlock {
  readonly weights: SwitchWeights;
  readonly grads: SwitchWeights;
  forward(x: Float32Array, tokens: number, options: ForwardOptions): { y: Float32Array; stats: SwitchStats } | Promise<{ y: Float32Array; stats: SwitchStats }>;
  backward(dy: Float32Array): Float32Array | Promise<Float32Array>;
  dispose(): void | Promise<void>;
}

export type SwitchFactory = (options: SwitchLayerOptions, init: SwitchLayerInit) => SwitchBlock;

export interface TokenBatch { inputs: Int32Array; targets?: Int32Array; batch: number; context: number }

export interface ForwardResult {
  /** Cross-entropy + aux + z (NaN without targets). */
  loss: number;
  crossEntropy: number;
  auxLoss: number;
  zLoss: number;
  /** [B·T × V], valid until the next forward. */
  logits: Float32Array;
  /** One entry per Switch layer. */
  switchStats: SwitchStats[];
}

/** A prefill's or decode step's output, valid until the model's next call. */
export interface InferenceStep {
  /** [rows × V]: a prefill's rows are the prompt's positions, a decode step's its sequences. */
  logits: Float32Array;
  /** One entry per Switch layer, its rows as the logits'. */
  switchStats: SwitchStats[];
}

const LAYERNORM_EPS = 1e-5;
const RMSNORM_EPS = 1e-6; // Qwen2's rms_norm_eps

interface NormParams { gain: Param; bias?: Param }

interface Mlp { w: FfnWeights; g: FfnWeights; downBias?: Param }
interface Layer {
  index: number;
  norm1: NormParams;
  attn: AttentionWeights;
  norm2: NormParams;
  mlp?: Mlp;
  moe?: SwitchBlock;
}
interface NormCache { x: Float32Array; out: Float32Array; rstd: Float32Array; mean: Float32Array }
interface LayerCache {
  n1: NormCache; attention: AttentionShard[]; attnMask?: Float32Array;
  n2: NormCache; shards?: FfnShard[]; ffnMask?: Float32Array;
}

export class Transformer {
  readonly config: ModelConfig;
  readonly params: ParamSet;
  readonly layers: Layer[] = [];
  private readonly kernels: Kernels;
  private readonly seed: number;
  private readonly wte: Param;
  private readonly wpe?: Param;
  private readonly normF: NormParams;
  private readonly rope?: RopeTables;
  private readonly ws: Workspace;
  private cache?: {
    batch: TokenBatch; inputs: Int32Array; embedMask?: Float32Array; layers: LayerCache[];
    nf: NormCache; hF: Float32Array; dLogits?: Float32Array; training: boolean; step: number;
  };

  private readonly shards: ShardRunner;

  /**
   * `switchFactory` makes the Switch layers and `shardRunner` runs the dense layers' shards: by
   * default both in this thread; the trainer passes the engine's, which use the worker threads.
   */
  constructor(kernels: Kernels, config: ModelConfig,
    options: { seed?: number; switchFactory?: SwitchFactory; shardRunner?: ShardRunner } = {}) {
    this.config = checkModelConfig(config);
    this.kernels = kernels;
    this.seed = options.seed ?? 0;
    this.ws = new Workspace(kernels);
    this.params = new ParamSet(kernels);
    this.shards = options.shardRunner ?? inProcessShards(kernels);
    const c = config, d = c.dModel, f = c.dFF;
    const makeSwitch = options.switchFactory ?? ((o, init) => new SwitchLayer(kernels, o, init));
    const add = (name: string, shape: number[], fanIn?: number) =>
      this.params.add(name, shape, fanIn === undefined ? { kind: 'ones' } : { kind: 'reduced', fanIn }, this.seed);
    const zeros = (name: string, size: number) => this.params.add(name, [size], { kind: 'zeros' }, this.seed);
    const linear = (name: string, inF: number, outF: number): LinearParams => {
      const w = add(`${name}.weight`, [inF, outF], inF);
      const b = c.bias ? zeros(`${name}.bias`, outF) : undefined;
      return { w: w.data, dw: w.grad, ...(b && { b: b.data, db: b.grad }) };
    };
    const norm = (name: string): NormParams => ({
      gain: add(`${name}.weight`, [d]),
      ...(c.norm === 'layernorm' && c.bias && { bias: zeros(`${name}.bias`, d) }),
    });

    this.wte = add('embed.weight', [c.vocabSize, d], d);
    if (c.positions === 'learned') this.wpe = add('pos.weight', [c.context, d], d);
    else this.rope = ropeTables(kernels, c.context, d / c.heads);
    for (let i = 0; i < c.layers; i++) {
      const at = `layers.${i}`;
      const layer: Layer = {
        index: i, norm1: norm(`${at}.norm1`), attn: { qkv: linear(`${at}.attn.qkv`, d, 3 * d), proj: linear(`${at}.attn.proj`, d, d) },
        norm2: norm(`${at}.norm2`),
      };
      if (isSparseLayer(c, i)) {
        const moe = makeSwitch({
          dModel: d, dFF: f, numExperts: c.numExperts, topK: c.topK, capacityFactor: c.capacityFactor, activation: c.activation,
          auxLossCoef: c.auxLossCoef, zLossCoef: c.zLossCoef, normalizeTopK: c.normalizeTopK, routerJitter: c.routerJitter,
          expertDropout: c.expertDropout,
        }, { seed: this.seed, layerIndex: i });
        const E = c.numExperts;
        const shapes: Record<keyof SwitchWeights, number[]> = { router: [d, E], wIn: [E, d, f], wOut: [E, f, d], wGate: [E, d, f] };
        for (const key of ['router', 'wIn', 'wGate', 'wOut'] as const) {
          const data = moe.weights[key];
          if (!data) continue;
          const name = `${at}.moe.${{ router: 'router', wIn: 'w_in', wGate: 'w_gate', wOut: 'w_out' }[key]}`;
          const bf16 = c.expertDtype === 'bf16' && key !== 'router'; // the router stays float32 always
          this.params.adopt({
            name, shape: shapes[key], grad: moe.grads[key]!, decay: true, gradOverwritten: true,
            ...(bf16 ? { data: copyOf(kernels, data), compute: data } : { data }),
          });
        }
        layer.moe = moe;
      } else {
        const up = add(`${at}.mlp.up.weight`, [d, f], d), down = add(`${at}.mlp.down.weight`, [f, d], f);
        const gate = c.activation === 'swiglu' ? add(`${at}.mlp.gate.weight`, [d, f], d) : undefined;
        const upBias = c.bias ? zeros(`${at}.mlp.up.bias`, f) : undefined;
        const downBias = c.bias ? zeros(`${at}.mlp.down.bias`, d) : undefined;
        layer.mlp = {
          w: { wIn: up.data, wOut: down.data, ...(gate && { wGate: gate.data }), ...(upBias && { bIn: upBias.data }) },
          g: { wIn: up.grad, wOut: down.grad, ...(gate && { wGate: gate.grad }), ...(upBias && { bIn: upBias.grad }) },
          ...(downBias && { downBias }),
        };
      }
      this.layers.push(layer);
    }
    this.normF = norm('norm');
    this.syncComputeCopies();
  }

  /** After the optimizer updates the float32 masters: refresh the bfloat16 compute copies. */
  syncComputeCopies(): void {
    for (const p of this.params.list) {
      if (!p.compute) continue;
      p.compute.set(p.data);
      toBF16Precision(p.compute);
    }
  }

  async forward(batch: TokenBatch, options: ForwardOptions = {}): Promise<ForwardResult> {
    const c = this.config, d = c.dModel, V = c.vocabSize;
    const { batch: B, context: T } = batch;
    if (T > c.context) throw new RangeError(`model: ${T} tokens exceed the context of ${c.context}`);
    const N = B * T;
    if (batch.inputs.length !== N) throw new RangeError(`model: inputs have ${batch.inputs.length} tokens, expected ${B} × ${T}`);
    for (const t of batch.inputs) if (!(t >= 0 && t < V)) throw new RangeError(`model: token ${t} is outside the vocabulary of ${V}`);
    const training = options.training ?? false, step = options.step ?? 0;
    this.ws.release();
    const ws = this.ws, kernels = this.kernels;

    const inputs = ws.i32(N);
    inputs.set(batch.inputs);
    let x = ws.scratch(N * d);
    kernels.gatherRows(this.wte.data, inputs, N, d, x);
    if (this.wpe) kernels.addBias(x, this.wpe.data, N / T, T * d, T * d); // the same T positions for each sequence
    const embedMask = this.dropout(x, training, step, -1, 'embed');

    const layerCaches: LayerCache[] = [];
    const switchStats: SwitchStats[] = [];
    let auxLoss = 0, zLoss = 0;
    const shape = { batch: B, time: T, heads: c.heads, d };
    for (const layer of this.layers) {
      const n1 = this.norm(layer.norm1, x, N);
      const attention = this.attentionShards(shape);
      await this.shards.attentionForward(shape, layer.attn, n1.out, this.rope, attention);
      const a = this.attentionOutput(layer, attention.map((sh) => sh.buffers.y));
      const attnMask = this.dropout(a, training, step, layer.index, 'attn');
      const x1 = ws.scratch(N * d);
      kernels.add(x, a, x1);

      const n2 = this.norm(layer.norm2, x1, N);
      const { y: fOut, shards, stats } = await this.ffn(layer, n2.out, N, { training, step, ...(options.dropless && { dropless: true }) });
      if (stats) {
        switchStats.push(stats);
        auxLoss += stats.auxLoss;
        zLoss += stats.zLoss;
      }
      const ffnMask = this.dropout(fOut, training, step, layer.index, 'ffn');
      const x2 = ws.scratch(N * d);
      kernels.add(x1, fOut, x2);
      layerCaches.push({
        n1: n1.cache, attention, ...(attnMask && { attnMask }), n2: n2.cache, ...(shards && { shards }), ...(ffnMask && { ffnMask }),
      });
      x = x2;
    }
    const nf = this.norm(this.normF, x, N);
    const logits = ws.scratch(N * V);
    kernels.gemm('nt', N, V, d, nf.out, this.wte.data, logits, false);

    let ce = NaN;
    let dLogits: Float32Array | undefined;
    if (batch.targets) {
      if (batch.targets.length !== N) throw new RangeError(`model: targets have ${batch.targets.length} tokens, expected ${N}`);
      dLogits = ws.scratch(N * V);
      ce = crossEntropy(kernels, logits, batch.targets, N, V, dLogits, ws.scratch(N));
    }
    this.cache = {
      batch, inputs, ...(embedMask && { embedMask }), layers: layerCaches, nf: nf.cache, hF: nf.out,
      ...(dLogits && { dLogits }), training, step,
    };
    return { loss: ce + auxLoss + zLoss, crossEntropy: ce, auxLoss, zLoss, logits, switchStats };
  }

  /** Gradients of the last forward's loss into every parameter's grad (zeroed first). */
  async backward(): Promise<void> {
    const s = this.cache;
    if (!s?.dLogits) throw new Error('model: backward needs a forward with targets first');
    const c = this.config, d = c.dModel, V = c.vocabSize, kernels = this.kernels, ws = this.ws;
    const { batch: B, context: T } = s.batch;
    const N = B * T;
    this.params.zeroGrads();

    kernels.gemm('tn', V, d, N, s.dLogits, s.hF, this.wte.grad, true); // the head's half of the tied embedding
    const dhF = ws.scratch(N * d);
    kernels.gemm('nn', N, d, V, s.dLogits, this.wte.data, dhF, false);
    const dx = ws.f32(N * d);
    this.normBackward(this.normF, s.nf, dhF, N, dx, false);

    const shape = { batch: B, time: T, heads: c.heads, d };
    for (let i = this.layers.length - 1; i >= 0; i--) {
      const layer = this.layers[i]!, lc = s.layers[i]!;
      // x₂ = x₁ + drop(ffn(norm₂(x₁))): the residual passes dx through; the branch adds its own.
      const dF = masked(ws, kernels, dx, lc.ffnMask);
      const dH2 = layer.moe ? await layer.moe.backward(dF) : await this.mlpBackward(layer.mlp!, lc, dF, N);
      this.normBackward(layer.norm2, lc.n2, dH2, N, dx, true);
      const dA = masked(ws, kernels, dx, lc.attnMask);
      const dH1 = await this.attentionBackward(layer, lc, dA, shape);
      this.normBackward(layer.norm1, lc.n1, dH1, N, dx, true);
    }
    const dEmbed = masked(ws, kernels, dx, s.embedMask);
    kernels.scatterAddRows(dEmbed, s.inputs, N, d, this.wte.grad);
    if (this.wpe) kernels.biasGrad(dEmbed, N / T, T * d, T * d, this.wpe.grad);
  }

  /** An empty cache for one sequence's keys and values; `free()` it when the sequence ends. */
  newCache(): KvCache {
    const c = this.config;
    return new KvCache(this.kernels, c.layers, c.context, c.dModel);
  }

  /**
   * Runs one sequence's prompt through the model (a forward over its tokens) and keeps every
   * layer's keys and values in `cache`, which must be empty. The logits of every prompt position.
   */
  async prefill(cache: KvCache, tokens: Int32Array, options: ForwardOptions = {}): Promise<InferenceStep> {
    cache.requireRoom(tokens.length);
    this.requireOwnCache(cache);
    if (cache.length !== 0) throw new Error(`model: prefill needs an empty cache; this one holds ${cache.length} positions`);
    const { logits, switchStats } = await this.forward({ inputs: tokens, batch: 1, context: tokens.length }, { ...options, training: false });
    const { heads, dModel: d } = this.config;
    this.cache!.layers.forEach((lc, i) => {
      for (const sh of lc.attention) storeKeysValues({ heads, d }, sh.h0, sh.h1, sh.buffers.qkv, tokens.length, cache.keys[i]!, cache.values[i]!, 0);
    });
    cache.length = tokens.length;
    return { logits, switchStats };
  }

  /**
   * One new token for each sequence, at the next position of its cache: the tokens' logits
   * [B × V]. Each row equals the last row of a forward over that sequence's whole window (tested).
   */
  async decode(caches: KvCache[], tokens: Int32Array, options: ForwardOptions = {}): Promise<InferenceStep> {
    const c = this.config, d = c.dModel, V = c.vocabSize, B = caches.length;
    if (B === 0 || tokens.length !== B) throw new RangeError(`model: decode needs one token per sequence, got ${tokens.length} for ${B}`);
    for (const cache of caches) { cache.requireRoom(1); this.requireOwnCache(cache); }
    if (new Set(caches).size !== B) throw new Error('model: a cache appears twice in one decode step');
    for (const t of tokens) if (!(t >= 0 && t < V)) throw new RangeError(`model: token ${t} is outside the vocabulary of ${V}`);
    this.ws.release();
    this.cache = undefined; // a decode step keeps nothing for a backward
    const ws = this.ws, kernels = this.kernels;

    const inputs = ws.i32(B);
    inputs.set(tokens);
    let x = ws.scratch(B * d);
    kernels.gatherRows(this.wte.data, inputs, B, d, x);
    const wpe = this.wpe;
    if (wpe) caches.forEach((cache, n) => kernels.addBias(x.subarray(n * d), wpe.data.subarray(cache.length * d), 1, d, d));
    const switchStats: SwitchStats[] = [];
    const count = Math.min(DENSE_SHARDS, c.heads), hd = d / c.heads;
    for (const layer of this.layers) {
      const n1 = this.norm(layer.norm1, x, B);
      const sequences = caches.map((cache) => ({ keys: cache.keys[layer.index]!, values: cache.values[layer.index]!, position: cache.length }));
      const partials = Array.from({ length: count }, (_, s) => {
        const [h0, h1] = shardRange(c.heads, count, s), w = (h1 - h0) * hd;
        const b: AttentionDecodeBuffers = { qkv: ws.scratch(B * 3 * w), scores: ws.scratch(c.context), o: ws.scratch(B * w), y: ws.scratch(B * d) };
        attentionShardDecode(kernels, { heads: c.heads, d }, layer.attn, n1.out, this.rope, sequences, h0, h1, b);
        return b.y;
      });
      const x1 = ws.scratch(B * d);
      kernels.add(x, this.attentionOutput(layer, partials), x1);
      const n2 = this.norm(layer.norm2, x1, B);
      const { y, stats } = await this.ffn(layer, n2.out, B, options.dropless ? { dropless: true } : {});
      if (stats) switchStats.push(stats);
      x = ws.scratch(B * d);
      kernels.add(x1, y, x);
    }
    for (const cache of caches) cache.length++;
    const nf = this.norm(this.normF, x, B);
    const logits = ws.scratch(B * V);
    kernels.gemm('nt', B, V, d, nf.out, this.wte.data, logits, false);
    return { logits, switchStats };
  }

  async dispose(): Promise<void> {
    this.ws.release();
    for (const layer of this.layers) await layer.moe?.dispose();
  }

  private requireOwnCache(cache: KvCache): void {
    const c = this.config;
    if (cache.keys.length !== c.layers || cache.context !== c.context || cache.d !== c.dModel) {
      throw new Error(`model: the cache (${cache.keys.length} layers, context ${cache.context}, width ${cache.d}) was not made by this model's newCache()`);
    }
  }

  /** The attention's output: its shards' partial outputs summed in shard order, plus the projection's bias. */
  private attentionOutput(layer: Layer, partials: Float32Array[]): Float32Array {
    const d = this.config.dModel, a = sumShards(this.ws, this.kernels, partials), n = a.length / d;
    const bias = layer.attn.proj.b;
    if (bias) this.kernels.addBias(a, bias, n, d, d);
    return a;
  }

  /** A layer's FFN on h [n×d]: its Switch layer (with its statistics), or its dense shards summed in shard order. */
  private async ffn(layer: Layer, h: Float32Array, n: number, options: ForwardOptions): Promise<{ y: Float32Array; shards?: FfnShard[]; stats?: SwitchStats }> {
    if (layer.moe) return layer.moe.forward(h, n, options);
    const d = this.config.dModel, shards = this.mlpShards(n);
    await this.shards.ffnForward(this.ffnShape, layer.mlp!.w, h, shards);
    const y = sumShards(this.ws, this.kernels, shards.map((sh) => sh.buffers.y));
    const bias = layer.mlp!.downBias?.data;
    if (bias) this.kernels.addBias(y, bias, n, d, d);
    return { y, shards };
  }

  /** Head shards of one attention layer, with this step's buffers. */
  private attentionShards(s: AttentionShape): AttentionShard[] {
    const { batch: B, time: T, heads: H, d } = s;
    const n = B * T, count = Math.min(DENSE_SHARDS, H);
    return Array.from({ length: count }, (_, c) => {
      const [h0, h1] = shardRange(H, count, c);
      const w = ((h1 - h0) * d) / H, f = (length: number) => this.ws.scratch(length);
      return {
        h0, h1,
        buffers: {
          qkv: f(n * 3 * w), p: f(B * (h1 - h0) * T * T), o: f(n * w), y: f(n * d),
          dO: f(n * w), dQkv: f(n * 3 * w), dS: f(T * T), dx: f(n * d),
        },
      };
    });
  }

  /** The shards' partial input gradients summed in shard order, and the output bias's gradient. */
  private async attentionBackward(layer: Layer, lc: LayerCache, dy: Float32Array, shape: AttentionShape): Promise<Float32Array> {
    const d = this.config.dModel, n = dy.length / d;
    await this.shards.attentionBackward(shape, layer.attn, lc.n1.out, this.rope, dy, lc.attention);
    const db = layer.attn.proj.db;
    if (db) this.kernels.biasGrad(dy, n, d, d, db);
    return sumShards(this.ws, this.kernels, lc.attention.map((sh) => sh.buffers.dx));
  }

  private get ffnShape(): FfnShape {
    return { d: this.config.dModel, f: this.config.dFF, activation: this.config.activation };
  }

  private mlpShards(n: number): FfnShard[] {
    const { dModel: d, dFF: f, activation } = this.config;
    return Array.from({ length: DENSE_SHARDS }, (_, c) => {
      const [f0, f1] = shardRange(f, DENSE_SHARDS, c);
      const cols = n * (f1 - f0);
      const swiglu = activation === 'swiglu';
      const a = () => this.ws.scratch(cols);
      return {
        cols: [f0, f1],
        buffers: { a: a(), h: a(), y: this.ws.scratch(n * d), dh: a(), dx: this.ws.scratch(n * d), ...(swiglu && { g: a(), dg: a() }) },
      };
    });
  }

  /** The shards' partial input gradients summed in shard order, and the output bias's gradient. */
  private async mlpBackward(mlp: Mlp, lc: LayerCache, dy: Float32Array, n: number): Promise<Float32Array> {
    const d = this.config.dModel, shards = lc.shards!;
    await this.shards.ffnBackward(this.ffnShape, mlp.w, mlp.g, lc.n2.out, dy, shards);
    const dx = sumShards(this.ws, this.kernels, shards.map((sh) => sh.buffers.dx));
    const db = mlp.downBias?.grad;
    if (db) this.kernels.biasGrad(dy, n, d, d, db);
    return dx;
  }

  private norm(p: NormParams, x: Float32Array, n: number): { out: Float32Array; cache: NormCache } {
    const d = this.config.dModel;
    const out = this.ws.scratch(n * d), rstd = this.ws.scratch(n), mean = this.ws.scratch(n);
    if (this.config.norm === 'layernorm') this.kernels.layerNorm(x, p.gain.data, p.bias?.data, out, rstd, mean, n, d, LAYERNORM_EPS);
    else this.kernels.rmsNorm(x, p.gain.data, out, rstd, n, d, RMSNORM_EPS);
    return { out, cache: { x, out, rstd, mean } };
  }

  /** Backward of a norm whose output gradient is dy: writes (or adds, `accumulate`) into dx. */
  private normBackward(p: NormParams, c: NormCache, dy: Float32Array, n: number, dx: Float32Array, accumulate: boolean): void {
    const d = this.config.dModel;
    const out = accumulate ? this.ws.scratch(n * d) : dx;
    if (this.config.norm === 'layernorm') this.kernels.layerNormBackward(c.x, p.gain.data, c.rstd, c.mean, dy, out, p.gain.grad, p.bias?.grad, n, d);
    else this.kernels.rmsNormBackward(c.x, p.gain.data, c.rstd, dy, out, p.gain.grad, n, d);
    if (accumulate) this.kernels.add(dx, out, dx);
  }

  /** Inverted dropout in place; returns the mask (0 or 1/(1−rate)) for backward, or nothing when off. */
  private dropout(x: Float32Array, training: boolean, step: number, layer: number, purpose: string): Float32Array | undefined {
    const rate = this.config.dropout;
    if (!training || rate === 0) return undefined;
    const rng = new Rng(this.seed, step, layer, purpose);
    const mask = this.ws.scratch(x.length), keep = 1 / (1 - rate);
    for (let i = 0; i < x.length; i++) { mask[i] = rng.uniform() < rate ? 0 : keep; x[i]! *= mask[i]!; }
    return mask;
  }
}

function copyOf(kernels: Kernels, a: Float32Array): Float32Array {
  const copy = kernels.allocF32(a.length);
  copy.set(a);
  return copy;
}

function masked(ws: Workspace, kernels: Kernels, g: Float32Array, mask: Float32Array | undefined): Float32Array {
  if (!mask) return g;
  const out = ws.scratch(g.length);
  kernels.multiply(g, mask, out);
  return out;
}

/** Σ of the shards' partial sums, in shard order (a single shard's output is the sum itself). */
function sumShards(ws: Workspace, kernels: Kernels, parts: Float32Array[]): Float32Array {
  const [first, second, ...rest] = parts;
  if (!second) return first!;
  const sum = ws.scratch(first!.length);
  kernels.add(first!, second, sum);
  for (const part of rest) kernels.add(sum, part, sum);
  return sum;
}
