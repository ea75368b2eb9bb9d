// Google's Switch Transformers: a T5 encoder-decoder whose FFNs are Switch layers in every
// sparse step-th block, computed as transformers' SwitchTransformersForConditionalGeneration does.
//   encoder: x = shared[inputs]                       (no scaling, no position embedding)
//            per block: x += SelfAttn(LN(x)) (bidirectional, relative position bias, padding masked)
//                       x += FF(LN(x))       (dense wo·relu(wi·x), or a Switch layer per sequence)
//            enc = LN_f(x)
//   decoder: y = shared[decoder inputs]              (the labels shifted right behind decoderStartId)
//            per block: y += SelfAttn(LN(y)) (causal, relative position bias)
//                       y += CrossAttn(LN(y), enc) (no position bias, encoder padding masked)
//                       y += FF(LN(y))
//            logits = (LN_f(y) · d_model^−½) · sharedᵀ  (the head is tied to the embedding)
// LN is T5's RMS norm w · x / √(mean(x²) + ε). A Switch layer routes each sequence's tokens
// apart: top-1 of softmax(x·W_r) in float32, at most expertCapacity tokens per expert in position
// order, output p_max · expert(x), dropped tokens 0 (the residual carries them). Losses:
// cross-entropy over labels ≠ −100, plus per stack (transformers' definitions, see routerLosses)
// β · mean(logsumexp(router logits)²) and α · E · mean over sequences of Σ_e f_e · P_e.
import type { Kernels } from '../../kernels/index.js';
import { type FfnShape, type FfnWeights } from '../ffn.js';
import { crossEntropy } from '../loss.js';
import type { Param } from '../params.js';
import { DENSE_SHARDS, type FfnShard, type ShardRunner, inProcessShards, shardRange } from '../shards.js';
import { type ForwardOptions, SwitchLayer, type SwitchLayerInit, type SwitchStats, type SwitchWeights } from '../switch-layer.js';
import type { SwitchLayerOptions } from '../config.js';
import { Workspace } from '../workspace.js';
import { type AttentionCache, type AttentionShape, type AttentionWeights, type KvCache, attentionBackward, attentionForward, attentionStep, projectKeys } from './attention.js';
import { type T5Config, checkT5Config, hasRouterLosses, isSparseBlock, sparseBlocks } from './config.js';
import { biasFromTable, biasTableBackward, bucketTable } from './relative-position.js';

/** A Switch layer as this model uses it: in this thread (SwitchLayer) or on the engine's workers (SwitchEngine). */
export interface T5SwitchBlock {
  readonly weights: SwitchWeights;
  readonly grads: SwitchWeights;
  forward(x: Float32Array, tokens: number, options: ForwardOptions): { y: Float32Array; stats: SwitchStats } | Promise<{ y: Float32Array; stats: SwitchStats }>;
  /** `auxGrad` [T×E]: the stack's pooled load-balancing loss's d loss / d probs (router.ts). */
  backward(dy: Float32Array, auxGrad?: Float32Array): Float32Array | Promise<Float32Array>;
  dispose(): void | Promise<void>;
}

export type T5SwitchFactory = (options: SwitchLayerOptions, init: SwitchLayerInit) => T5SwitchBlock;

/** A batch of input → target pairs, padded. */
export interface Seq2SeqBatch {
  batch: number;
  /** [batch × inputLength] encoder tokens; inputMask [batch × inputLength] is 0 at padding. */
  inputs: Int32Array;
  inputMask: Uint8Array;
  inputLength: number;
  /** [batch × targetLength] decoder tokens: the labels shifted right (shiftRight). */
  decoderInputs: Int32Array;
  targetLength: number;
  /** [batch × targetLength] the tokens to predict, −100 where ignored (padding). */
  labels?: Int32Array;
}

/** The router losses of one stack, scaled by their coefficients (0 where transformers adds none). */
export interface StackLosses { zLoss: number; auxLoss: number }

export interface Seq2SeqResult {
  /** crossEntropy + zLoss + auxLoss (NaN without labels). */
  loss: number;
  /** Mean over the labels ≠ −100. */
  crossEntropy: number;
  zLoss: number;
  auxLoss: number;
  encoder: StackLosses;
  decoder: StackLosses;
  /** [batch · targetLength × vocab], valid until the next forward. */
  logits: Float32Array;
  /** One entry per sparse block, per stack, in block order. */
  encoderStats: SwitchStats[];
  decoderStats: SwitchStats[];
}

export const IGNORE = -100;

/** transformers' _shift_right: the decoder's inputs are the labels behind the start token, −100 read as padding. */
export function shiftRight(labels: Int32Array, batch: number, length: number, startId: number, padId: number): Int32Array {
  const out = new Int32Array(batch * length);
  for (let b = 0; b < batch; b++) {
    out[b * length] = startId;
    for (let t = 1; t < length; t++) {
      const v = labels[b * length + t - 1]!;
      out[b * length + t] = v === IGNORE ? padId : v;
    }
  }
  return out;
}

interface Block {
  index: number;
  selfNorm: Param;
  self: AttentionWeights;
  selfGrad: AttentionWeights;
  cross?: { norm: Param; w: AttentionWeights; g: AttentionWeights };
  ffNorm: Param;
  ffn?: { w: FfnWeights; g: FfnWeights };
  moe?: T5SwitchBlock;
}

interface Stack {
  name: 'encoder' | 'decoder';
  blocks: Block[];
  /** Block 0's relative position bias [buckets × heads], shared by every block. */
  bias: Param;
  finalNorm: Param;
  step: number;
  bidirectional: boolean;
}

interface NormCache { x: Float32Array; out: Float32Array; rstd: Float32Array }

interface BlockCache {
  n1: NormCache; self: AttentionCache;
  n2?: NormCache; cross?: AttentionCache;
  n3: NormCache; shards?: FfnShard[];
}

/** A stack's forward, kept for its backward. */
interface StackCache {
  tokens: Int32Array; batch: number; length: number;
  table: Int32Array; blocks: BlockCache[]; final: NormCache; out: Float32Array;
  stats: SwitchStats[];
  /** Per sparse block, d (pooled aux loss) / d probs, [T×E]. */
  auxGrads: Float32Array[];
}

/** Keys and values a decoding session keeps: the encoder's per block, and the decoder's own so far. */
export interface DecodingSession {
  batch: number;
  /** Positions decoded so far. */
  position: number;
  maxLength: number;
  encoderKeyMask: Uint8Array;
  encoderLength: number;
  cross: KvCache[];
  self: KvCache[];
  /** Owns the caches; `endDecoding` releases it. */
  ws: Workspace;
}

const NONE = new Float32Array(0);

export class EncoderDecoder {
  readonly config: T5Config;
  /** Every parameter; a model built without gradients has empty `grad` arrays. */
  readonly params: Param[] = [];
  readonly shared: Param;
  readonly encoder: Stack;
  readonly decoder: Stack;
  readonly gradients: boolean;
  private readonly kernels: Kernels;
  private readonly shards: ShardRunner;
  private readonly ws: Workspace;
  private cache?: { batch: Seq2SeqBatch; encoder: StackCache; decoder: StackCache; headIn: Float32Array; dLogits?: Float32Array };

  /**
   * The parameters hold nothing meaningful until the caller loads every one (a Hugging Face
   * checkpoint, or a run's): nothing is drawn at random. `switchFactory` makes the Switch layers and
   * `shardRunner` runs the dense FFNs' shards (default: both in this thread; the fine-tuner passes
   * the engine's). `gradients: false` allocates no gradient arrays (inference).
   */
  constructor(kernels: Kernels, config: T5Config,
    options: { switchFactory?: T5SwitchFactory; shardRunner?: ShardRunner; gradients?: boolean; seed?: number } = {}) {
    this.config = checkT5Config(config);
    this.kernels = kernels;
    this.gradients = options.gradients ?? true;
    this.shards = options.shardRunner ?? inProcessShards(kernels);
    this.ws = new Workspace(kernels);
    const makeSwitch = options.switchFactory ?? ((o, init) => new SwitchLayer(kernels, o, init));
    this.shared = this.param('shared', [config.vocabSize, config.dModel], true);
    const stack = (name: 'encoder' | 'decoder', layers: number, step: number): Stack => {
      const sparse = sparseBlocks(layers, step).length;
      const blocks = Array.from({ length: layers }, (_, i) => this.block(name, i, step, sparse, makeSwitch, options.seed ?? 0));
      return {
        name, blocks, step, bidirectional: name === 'encoder',
        bias: this.param(`${name}.relative_attention_bias`, [config.buckets, config.heads], false),
        finalNorm: this.param(`${name}.final_norm`, [config.dModel], false),
      };
    };
    this.encoder = stack('encoder', config.encoderLayers, config.encoderSparseStep);
    this.decoder = stack('decoder', config.decoderLayers, config.decoderSparseStep);
  }

  /** Teacher-forced forward: the logits of every decoder position, and the losses when the batch has labels. */
  async forward(batch: Seq2SeqBatch, options: { training?: boolean; step?: number } = {}): Promise<Seq2SeqResult> {
    this.checkBatch(batch);
    const training = options.training ?? false, step = options.step ?? 0;
    this.ws.release();
    this.cache = undefined; // its arrays were in the workspace
    const keep = training && this.gradients;
    const encoder = await this.stackForward(this.encoder, batch.inputs, batch.batch, batch.inputLength, batch.inputMask, undefined, training, step, keep);
    const decoder = await this.stackForward(this.decoder, batch.decoderInputs, batch.batch, batch.targetLength, batch.inputMask,
      { out: encoder.out, length: batch.inputLength }, training, step, keep);
    const rows = batch.batch * batch.targetLength;
    const { headIn, logits } = this.head(decoder.out, rows);

    let ce = NaN;
    let dLogits: Float32Array | undefined;
    if (batch.labels) {
      if (keep) dLogits = this.ws.f32(rows * this.config.vocabSize);
      ce = maskedCrossEntropy(this.kernels, this.ws, logits, batch.labels, rows, this.config.vocabSize, dLogits);
    }
    const losses = (s: StackCache, stack: Stack): StackLosses => ({
      zLoss: s.stats.reduce((sum, x) => sum + x.zLoss, 0),
      auxLoss: this.poolAuxLoss(stack, s, keep),
    });
    const enc = losses(encoder, this.encoder), dec = losses(decoder, this.decoder);
    if (keep) this.cache = { batch, encoder, decoder, headIn, ...(dLogits && { dLogits }) };
    const zLoss = enc.zLoss + dec.zLoss, auxLoss = enc.auxLoss + dec.auxLoss;
    return {
      loss: ce + zLoss + auxLoss, crossEntropy: ce, zLoss, auxLoss, encoder: enc, decoder: dec, logits,
      encoderStats: encoder.stats, decoderStats: decoder.stats,
    };
  }

  /** Gradients of the last training forward's loss into every parameter's grad (zeroed first). */
  async backward(): Promise<void> {
    const c = this.cache;
    if (!this.gradients) throw new Error('switch-transformers: the model was built without gradients (inference); backward is not available');
    if (!c?.dLogits) throw new Error('switch-transformers: backward needs a training forward with labels first');
    const { dModel: d, vocabSize: V } = this.config;
    const kernels = this.kernels, ws = this.ws;
    for (const p of this.params) if (!p.gradOverwritten) p.grad.fill(0);
    const rows = c.batch.batch * c.batch.targetLength;
    // logits = (y·s)·sharedᵀ: the head's half of the tied embedding's gradient, then d loss / d y.
    kernels.gemm('tn', V, d, rows, c.dLogits, c.headIn, this.shared.grad, true);
    const dy = ws.scratch(rows * d);
    kernels.gemm('nn', rows, d, V, c.dLogits, this.shared.data, dy, false);
    const scale = Math.fround(d ** -0.5);
    for (let i = 0; i < dy.length; i++) dy[i]! *= scale;
    const dEncoder = ws.f32(c.batch.batch * c.batch.inputLength * d);
    await this.stackBackward(this.decoder, c.decoder, dy, dEncoder);
    await this.stackBackward(this.encoder, c.encoder, dEncoder);
  }

  /** The encoder's output for a batch of inputs (no gradients kept), for startDecoding; valid until the next forward, encode or decodeStep. */
  async encode(inputs: Int32Array, inputMask: Uint8Array, batch: number, length: number): Promise<Float32Array> {
    this.ws.release();
    const out = await this.stackForward(this.encoder, inputs, batch, length, inputMask, undefined, false, 0, false);
    return out.out;
  }

  /** Starts decoding B sequences against the encoder's output: the cross-attention keys and values, computed once. */
  startDecoding(encoded: Float32Array, inputMask: Uint8Array, batch: number, length: number, maxLength: number): DecodingSession {
    const ws = new Workspace(this.kernels);
    const { heads, dKv, dModel: d } = this.config, I = heads * dKv;
    const shape: AttentionShape = { batch, queries: 1, keys: length, heads, dKv, d };
    return {
      batch, position: 0, maxLength, encoderKeyMask: inputMask, encoderLength: length, ws,
      cross: this.decoder.blocks.map((b) => projectKeys(this.kernels, ws, shape, b.cross!.w, encoded)),
      self: this.decoder.blocks.map(() => ({ k: ws.scratch(batch * maxLength * I), v: ws.scratch(batch * maxLength * I), capacity: maxLength, length: 0 })),
    };
  }

  /**
   * One decoder position for every sequence: `tokens` [B] are the inputs at the session's position;
   * returns the logits [B × vocab] of the next token (valid until the next step). Each Switch layer
   * routes one token per sequence, so capacity never binds here (transformers' cached generate does the same).
   */
  async decodeStep(session: DecodingSession, tokens: Int32Array): Promise<Float32Array> {
    const { dModel: d, heads, dKv } = this.config;
    const B = session.batch, t = session.position;
    if (tokens.length !== B) throw new RangeError(`switch-transformers: ${tokens.length} tokens for ${B} sequences`);
    if (t >= session.maxLength) throw new RangeError(`switch-transformers: the session was started for ${session.maxLength} positions`);
    this.checkTokens(tokens);
    this.ws.release();
    const ws = this.ws, kernels = this.kernels;
    const ids = ws.i32(B);
    ids.set(tokens);
    const y = ws.scratch(B * d);
    kernels.gatherRows(this.shared.data, ids, B, d, y);
    // The query at position t against keys 0…t: causal buckets of distances −t … 0.
    const biasRow = ws.scratch(heads * (t + 1));
    biasFromTable(this.decoder.bias.data, bucketTable(1, t + 1, t, false, this.config.buckets, this.config.maxDistance), heads, biasRow);
    const shape = { batch: B, heads, dKv, d };
    for (const block of this.decoder.blocks) {
      const n1 = this.norm(block.selfNorm, y, B);
      const a = attentionStep(kernels, ws, shape, block.self, n1.out, session.self[block.index]!, true, biasRow);
      kernels.add(y, a, y);
      const n2 = this.norm(block.cross!.norm, y, B);
      const c = attentionStep(kernels, ws, shape, block.cross!.w, n2.out, session.cross[block.index]!, false, undefined, session.encoderKeyMask);
      kernels.add(y, c, y);
      const n3 = this.norm(block.ffNorm, y, B);
      const f = await this.ffnForward(block, n3.out, B, 1, false, 0);
      kernels.add(y, f.y, y);
    }
    session.position++;
    const out = this.norm(this.decoder.finalNorm, y, B).out;
    return this.head(out, B).logits;
  }

  endDecoding(session: DecodingSession): void {
    session.ws.release();
  }

  async dispose(): Promise<void> {
    this.ws.release();
    for (const stack of [this.encoder, this.decoder]) for (const b of stack.blocks) await b.moe?.dispose();
  }

  private param(name: string, shape: number[], decay: boolean): Param {
    const size = shape.reduce((a, b) => a * b, 1);
    const p: Param = { name, shape, decay, data: this.kernels.allocF32(size), grad: this.gradients ? this.kernels.allocF32(size).fill(0) : NONE };
    this.params.push(p);
    return p;
  }

  private attention(name: string): { w: AttentionWeights; g: AttentionWeights } {
    const { dModel: d, heads, dKv } = this.config, I = heads * dKv;
    const q = this.param(`${name}.q`, [d, I], true), k = this.param(`${name}.k`, [d, I], true);
    const v = this.param(`${name}.v`, [d, I], true), o = this.param(`${name}.o`, [I, d], true);
    return { w: { q: q.data, k: k.data, v: v.data, o: o.data }, g: { q: q.grad, k: k.grad, v: v.grad, o: o.grad } };
  }

  private block(stack: 'encoder' | 'decoder', i: number, step: number, sparse: number, makeSwitch: T5SwitchFactory, seed: number): Block {
    const c = this.config, d = c.dModel, f = c.dFF, at = `${stack}.blocks.${i}`;
    const selfNorm = this.param(`${at}.self_attn_norm`, [d], false);
    const self = this.attention(`${at}.self_attn`);
    const cross = stack === 'decoder' ? { norm: this.param(`${at}.cross_attn_norm`, [d], false), ...this.attention(`${at}.cross_attn`) } : undefined;
    const ffNorm = this.param(`${at}.ff_norm`, [d], false);
    const block: Block = { index: i, selfNorm, self: self.w, selfGrad: self.g, ...(cross && { cross }), ffNorm };
    if (!isSparseBlock(step, i)) {
      const wi = this.param(`${at}.ff.wi`, [d, f], true), wo = this.param(`${at}.ff.wo`, [f, d], true);
      return { ...block, ffn: { w: { wIn: wi.data, wOut: wo.data }, g: { wIn: wi.grad, wOut: wo.grad } } };
    }
    const E = c.numExperts;
    const moe = makeSwitch({
      dModel: d, dFF: f, numExperts: E, topK: 1, activation: 'relu', fixedCapacity: c.expertCapacity,
      // transformers' z-loss is the mean over every token of every sparse block of the stack: β/L per block.
      zLossCoef: hasRouterLosses(step) ? c.zLossCoef / sparse : 0,
      auxLossCoef: 0, // pooled over the stack's blocks instead (poolAuxLoss)
      routerJitter: c.routerJitter,
    }, { seed, layerIndex: (stack === 'encoder' ? 0 : c.encoderLayers) + i, initialize: false, gradients: this.gradients });
    const shapes = { router: [d, E], wIn: [E, d, f], wOut: [E, f, d] };
    for (const key of ['router', 'wIn', 'wOut'] as const) {
      this.params.push({
        name: `${at}.moe.${{ router: 'router', wIn: 'w_in', wOut: 'w_out' }[key]}`, shape: shapes[key], data: moe.weights[key],
        grad: this.gradients ? moe.grads[key] : NONE, decay: true, gradOverwritten: true,
      });
    }
    return { ...block, moe };
  }

  private checkTokens(tokens: Int32Array): void {
    const V = this.config.vocabSize;
    for (const t of tokens) if (!(t >= 0 && t < V)) throw new RangeError(`switch-transformers: token ${t} is outside the vocabulary of ${V}`);
  }

  private checkBatch(b: Seq2SeqBatch): void {
    const need = (what: string, a: ArrayLike<number>, n: number) => {
      if (a.length !== n) throw new RangeError(`switch-transformers: ${what} has ${a.length} values, expected ${n}`);
    };
    need('inputs', b.inputs, b.batch * b.inputLength);
    need('inputMask', b.inputMask, b.batch * b.inputLength);
    need('decoderInputs', b.decoderInputs, b.batch * b.targetLength);
    if (b.labels) need('labels', b.labels, b.batch * b.targetLength);
    this.checkTokens(b.inputs);
    this.checkTokens(b.decoderInputs);
    for (const l of b.labels ?? []) {
      if (l !== IGNORE && !(l >= 0 && l < this.config.vocabSize)) throw new RangeError(`switch-transformers: label ${l} is outside the vocabulary`);
    }
  }

  private norm(p: Param, x: Float32Array, rows: number, ws: Workspace = this.ws): { out: Float32Array; cache: NormCache } {
    const d = this.config.dModel;
    const out = ws.scratch(rows * d), rstd = ws.scratch(rows);
    this.kernels.rmsNorm(x, p.data, out, rstd, rows, d, this.config.eps);
    return { out, cache: { x, out, rstd } };
  }

  /** Adds the backward of a norm whose output gradient is dy into dx. */
  private normBackward(p: Param, c: NormCache, dy: Float32Array, dx: Float32Array): void {
    const d = this.config.dModel, rows = dy.length / d;
    const out = this.ws.scratch(rows * d);
    this.kernels.rmsNormBackward(c.x, p.data, c.rstd, dy, out, p.grad, rows, d);
    this.kernels.add(dx, out, dx);
  }

  /** The tied head: logits = (y · d^−½) · sharedᵀ. */
  private head(y: Float32Array, rows: number): { headIn: Float32Array; logits: Float32Array } {
    const { dModel: d, vocabSize: V } = this.config;
    const headIn = this.ws.scratch(rows * d), scale = Math.fround(d ** -0.5);
    for (let i = 0; i < headIn.length; i++) headIn[i] = y[i]! * scale;
    const logits = this.ws.scratch(rows * V);
    this.kernels.gemm('nt', rows, V, d, headIn, this.shared.data, logits, false);
    return { headIn, logits };
  }

  private ffnShape(): FfnShape {
    return { d: this.config.dModel, f: this.config.dFF, activation: 'relu' };
  }

  /** The block's FFN: its Switch layer, routing each group of `groupSize` tokens apart, or the dense FFN in shards. */
  private async ffnForward(block: Block, x: Float32Array, rows: number, groupSize: number, training: boolean, step: number,
    ws: Workspace = this.ws): Promise<{ y: Float32Array; stats?: SwitchStats; shards?: FfnShard[] }> {
    if (block.moe) {
      const { y, stats } = await block.moe.forward(x, rows, { training, step, groupSize });
      return { y, stats };
    }
    const { dModel: d, dFF: f } = this.config;
    const shards = Array.from({ length: DENSE_SHARDS }, (_, c): FfnShard => {
      const [f0, f1] = shardRange(f, DENSE_SHARDS, c), cols = rows * (f1 - f0);
      return { cols: [f0, f1], buffers: { a: ws.scratch(cols), h: ws.scratch(cols), y: ws.scratch(rows * d), dh: ws.scratch(cols), dx: ws.scratch(rows * d) } };
    });
    await this.shards.ffnForward(this.ffnShape(), block.ffn!.w, x, shards);
    const y = shards[0]!.buffers.y;
    for (const s of shards.slice(1)) this.kernels.add(y, s.buffers.y, y); // in shard order
    return { y, shards };
  }

  /**
   * A stack over B sequences of `length` tokens. The decoder's is teacher-forced (causal) and
   * attends to `encoder`. With `keep`, every block's intermediate values stay for the backward;
   * without, each block's scratch is released as soon as the next has its input.
   */
  private async stackForward(stack: Stack, tokens: Int32Array, B: number, length: number, inputMask: Uint8Array,
    encoder: { out: Float32Array; length: number } | undefined, training: boolean, step: number, keep: boolean): Promise<StackCache> {
    const c = this.config, d = c.dModel, N = B * length, kernels = this.kernels;
    const ws = this.ws;
    const ids = ws.i32(N);
    ids.set(tokens);
    let x = ws.scratch(N * d);
    kernels.gatherRows(this.shared.data, ids, N, d, x);
    const table = bucketTable(length, length, 0, stack.bidirectional, c.buckets, c.maxDistance);
    const bias = ws.scratch(c.heads * table.length);
    biasFromTable(stack.bias.data, table, c.heads, bias);
    const selfShape: AttentionShape = { batch: B, queries: length, keys: length, heads: c.heads, dKv: c.dKv, d };
    const crossShape: AttentionShape = { ...selfShape, keys: encoder?.length ?? 0 };
    const selfMasks = stack.bidirectional ? { bias, keyMask: inputMask } : { bias, causal: true };
    const blocks: BlockCache[] = [], stats: SwitchStats[] = [];
    for (const block of stack.blocks) {
      const bws = keep ? ws : new Workspace(kernels);
      const n1 = this.norm(block.selfNorm, x, N, bws);
      const self = attentionForward(kernels, bws, selfShape, block.self, n1.out, n1.out, selfMasks);
      const x1 = bws.scratch(N * d);
      kernels.add(x, self.y, x1);
      let x2 = x1, n2: NormCache | undefined, cross: AttentionCache | undefined;
      if (block.cross) {
        const n = this.norm(block.cross.norm, x1, N, bws);
        const a = attentionForward(kernels, bws, crossShape, block.cross.w, n.out, encoder!.out, { keyMask: inputMask });
        x2 = bws.scratch(N * d);
        kernels.add(x1, a.y, x2);
        n2 = n.cache; cross = a.cache;
      }
      const n3 = this.norm(block.ffNorm, x2, N, bws);
      const f = await this.ffnForward(block, n3.out, N, length, training, step, bws);
      if (f.stats) stats.push(f.stats); // views of the layer's own memory, valid until its next forward
      const out = keep ? bws.scratch(N * d) : ws.scratch(N * d);
      kernels.add(x2, f.y, out);
      if (keep) blocks.push({ n1: n1.cache, self: self.cache, ...(n2 && { n2, cross }), n3: n3.cache, ...(f.shards && { shards: f.shards }) } as BlockCache);
      else bws.release();
      x = out;
    }
    const final = this.norm(stack.finalNorm, x, N);
    return { tokens: ids, batch: B, length, table, blocks, final: final.cache, out: final.out, stats, auxGrads: [] };
  }

  /**
   * transformers' load-balancing loss of a stack: its sparse blocks' router outputs concatenated
   * per sequence, aux = α · E / B · Σ_b Σ_e f_be · P_be, f_be the fraction of sequence b's tokens
   * (of every sparse block) whose top choice is e, P_be their mean probability of e. With `keep`
   * (a training forward), also each block's d aux / d probs (f is a constant): α · E · N_be / (B · (S·L)²),
   * N_be the count.
   */
  private poolAuxLoss(stack: Stack, s: StackCache, keep: boolean): number {
    const L = s.stats.length;
    if (L === 0 || !hasRouterLosses(stack.step)) return 0;
    const E = this.config.numExperts, B = s.batch, S = s.length, tokens = S * L;
    const count = new Float64Array(B * E), probs = new Float64Array(B * E);
    for (const st of s.stats) {
      for (let t = 0; t < B * S; t++) {
        const b = Math.floor(t / S);
        count[b * E + st.expertIndex[t]!]!++;
        for (let e = 0; e < E; e++) probs[b * E + e]! += st.routerProbs[t * E + e]!;
      }
    }
    let sum = 0;
    for (let i = 0; i < B * E; i++) sum += (count[i]! / tokens) * (probs[i]! / tokens);
    const alpha = this.config.auxLossCoef;
    if (keep && alpha > 0) {
      const grad = new Float32Array(B * S * E);
      for (let t = 0; t < B * S; t++) {
        const b = Math.floor(t / S);
        for (let e = 0; e < E; e++) grad[t * E + e] = (alpha * E * count[b * E + e]!) / (B * tokens * tokens);
      }
      s.auxGrads = s.stats.map(() => grad);
    }
    return (alpha * E * sum) / B;
  }

  /** Backward of a stack given d loss / d its output; the decoder's adds its encoder gradient into dEncoder. */
  private async stackBackward(stack: Stack, s: StackCache, dOut: Float32Array, dEncoder?: Float32Array): Promise<void> {
    const c = this.config, d = c.dModel, N = s.batch * s.length, kernels = this.kernels, ws = this.ws;
    const dx = ws.f32(N * d);
    this.normBackward(stack.finalNorm, s.final, dOut, dx);
    const dBias = ws.f32(c.heads * s.table.length);
    const selfShape: AttentionShape = { batch: s.batch, queries: s.length, keys: s.length, heads: c.heads, dKv: c.dKv, d };
    const crossShape: AttentionShape = { ...selfShape, keys: dEncoder ? dEncoder.length / d / s.batch : 0 };
    let sparse = s.stats.length;
    for (let i = stack.blocks.length - 1; i >= 0; i--) {
      const block = stack.blocks[i]!, bc = s.blocks[i]!;
      // x_out = x₂ + FF(LN(x₂)): the residual passes dx on; each branch adds its own.
      let dH: Float32Array;
      if (block.moe) {
        sparse--;
        const auxGrad = s.auxGrads[sparse];
        dH = await block.moe.backward(dx, auxGrad);
      } else {
        await this.shards.ffnBackward(this.ffnShape(), block.ffn!.w, block.ffn!.g, bc.n3.out, dx, bc.shards!);
        dH = bc.shards![0]!.buffers.dx;
        for (const sh of bc.shards!.slice(1)) kernels.add(dH, sh.buffers.dx, dH);
      }
      this.normBackward(block.ffNorm, bc.n3, dH, dx);
      if (block.cross) {
        const dN = ws.scratch(N * d);
        attentionBackward(kernels, ws, crossShape, block.cross.w, block.cross.g, bc.cross!, dx, dN, dEncoder!);
        this.normBackward(block.cross.norm, bc.n2!, dN, dx);
      }
      const dN = ws.scratch(N * d);
      attentionBackward(kernels, ws, selfShape, block.self, block.selfGrad, bc.self, dx, dN, dN, dBias);
      this.normBackward(block.selfNorm, bc.n1, dN, dx);
    }
    biasTableBackward(dBias, s.table, c.heads, stack.bias.grad);
    kernels.scatterAddRows(dx, s.tokens, N, d, this.shared.grad);
  }
}

/** Mean cross-entropy over the rows whose label is not −100; d loss / d logits into dLogits when given (zero on ignored rows). */
function maskedCrossEntropy(kernels: Kernels, ws: Workspace, logits: Float32Array, labels: Int32Array, rows: number, V: number,
  dLogits?: Float32Array): number {
  const kept = Int32Array.from({ length: rows }, (_, r) => r).filter((r) => labels[r] !== IGNORE);
  const n = kept.length;
  if (n === 0) return NaN; // transformers' mean over no labels is NaN too
  const index = ws.i32(n);
  index.set(kept);
  const picked = ws.scratch(n * V), targets = ws.i32(n);
  for (let i = 0; i < n; i++) targets[i] = labels[kept[i]!]!;
  kernels.gatherRows(logits, index, n, V, picked);
  const loss = crossEntropy(kernels, picked, targets, n, V, picked, ws.scratch(n));
  if (dLogits) kernels.scatterRows(picked, index, n, V, dLogits);
  return loss;
}
