// One expert's feed-forward block (SPEC step 4) on the n tokens routed to it, forward and backward:
//   relu / gelu:  a = x·w_in,  h = act(a)
//   swiglu:       a = x·w_in,  g = x·w_gate,  h = silu(g) ⊙ a
//   then (training) h ⊙= dropout mask, and out = h·w_out,
// and each token's gate · out lands in its slot's row of the layer's slot buffer [T·k × d]. A slot
// (token t's j-th choice) belongs to one expert, so experts on different threads never write the
// same row: the workers combine in place. These functions only read and write the arrays they
// are given, so the same code runs in process (model/switch-layer.ts) and on an expert worker
// over shared memory (engine/).
import type { Kernels } from '../kernels/index.js';
import type { Activation } from './config.js';
import { Rng } from './rng.js';

export interface ExpertShape { d: number; f: number; activation: Activation }

export interface ExpertWeights {
  wIn: Float32Array; // [d×f]
  wOut: Float32Array; // [f×d]
  wGate?: Float32Array; // [d×f], swiglu only
}

/** One expert's buffers for one step, carved in this order from a single block. */
export interface ExpertBuffers {
  x: Float32Array; // [n×d] its tokens
  a: Float32Array; // [n×f] x·w_in
  g?: Float32Array; // [n×f] x·w_gate (swiglu)
  h: Float32Array; // [n×f] hidden, after dropout
  mask?: Float32Array; // [n×f] 0 or 1/(1−rate) (training with dropout)
  out: Float32Array; // [n×d] h·w_out
  dOut: Float32Array; // [n×d]
  dh: Float32Array; // [n×f]
  dg?: Float32Array; // [n×f] (swiglu)
  dx: Float32Array; // [n×d]
}

/** The tokens routed to one expert: rows of x, each with its gate and its slot t·k + j. */
export interface Assignment {
  tokens: Int32Array;
  gates: Float32Array;
  slots: Int32Array;
}

/** Training-time randomness of one expert in one step; absent in evaluation. */
export interface ExpertDropout { rate: number; seed: number; step: number; layerIndex: number; expert: number }

/**
 * An expert's tokens in chunks of this many rows: a worker that has run out of its own experts
 * takes chunks of another's (engine/chunk-board.ts), and each chunk draws its own dropout mask.
 * 256 is the WebAssembly GEMM's depth block (KC in kernels/wasm/assembly/gemm.ts): a weight
 * gradient over a run of chunks is summed one block per chunk, so chunks computed apart and added
 * in chunk order give the same bits as one GEMM over the run.
 */
export const CHUNK_ROWS = 256;

// Every buffer starts on a 64-byte boundary.
const pad = (floats: number) => Math.ceil(floats / 16) * 16;

/** The buffers an expert's step has, in block order, each with its floats per token row. */
function layout(s: ExpertShape, dropout: boolean): [keyof ExpertBuffers, number][] {
  const swiglu = s.activation === 'swiglu';
  const rows: [keyof ExpertBuffers, number | false][] = [
    ['x', s.d], ['a', s.f], ['g', swiglu && s.f], ['h', s.f], ['mask', dropout && s.f],
    ['out', s.d], ['dOut', s.d], ['dh', s.f], ['dg', swiglu && s.f], ['dx', s.d],
  ];
  return rows.filter((r): r is [keyof ExpertBuffers, number] => r[1] !== false);
}

export function expertBlockLength(s: ExpertShape, n: number, dropout: boolean): number {
  return layout(s, dropout).reduce((sum, [, width]) => sum + pad(n * width), 0);
}

export function expertBuffers(block: Float32Array, s: ExpertShape, n: number, dropout: boolean): ExpertBuffers {
  const b: Partial<ExpertBuffers> = {};
  let at = 0;
  for (const [name, width] of layout(s, dropout)) {
    const length = n * width;
    b[name] = block.subarray(at, at + length);
    at += pad(length);
  }
  if (at > block.length) throw new RangeError(`expert block of ${block.length} floats is smaller than the ${at} needed`);
  return b as ExpertBuffers;
}

/** Rows [r0, r1) of an expert's buffers and assignment (views): what a run of its chunks computes on. */
export function expertRows(s: ExpertShape, b: ExpertBuffers, a: Assignment, r0: number, r1: number): { buffers: ExpertBuffers; assignment: Assignment } {
  const buffers: Partial<ExpertBuffers> = {};
  for (const [name, width] of layout(s, b.mask !== undefined)) buffers[name] = b[name]!.subarray(r0 * width, r1 * width);
  return {
    buffers: buffers as ExpertBuffers,
    assignment: { tokens: a.tokens.subarray(r0, r1), gates: a.gates.subarray(r0, r1), slots: a.slots.subarray(r0, r1) },
  };
}

/** Forward for the assigned tokens of x [T×d]: gate · out into their rows of ySlots [T·k×d]. */
export function expertForward(k: Kernels, s: ExpertShape, w: ExpertWeights, b: ExpertBuffers, x: Float32Array,
  a: Assignment, ySlots: Float32Array, dropout?: ExpertDropout): void {
  expertInputs(k, s, b, x, a.tokens, dropout);
  ffnForward(k, s, w, b);
  expertOutputs(k, s, b, a, ySlots);
}

/**
 * What the FFN reads: the expert's rows of x into b.x, and this step's dropout mask into b.mask.
 * `firstRow`: b's first row within the expert (a multiple of CHUNK_ROWS), which keys the mask.
 */
export function expertInputs(k: Kernels, s: ExpertShape, b: ExpertBuffers, x: Float32Array, tokens: Int32Array,
  dropout?: ExpertDropout, firstRow = 0): void {
  k.gatherRows(x, tokens, tokens.length, s.d, b.x);
  if (dropout && dropout.rate > 0) {
    const mask = b.mask!;
    const keep = 1 / (1 - dropout.rate);
    for (let r = 0; r < tokens.length; r += CHUNK_ROWS) {
      const rng = new Rng(dropout.seed, dropout.step, dropout.layerIndex, 'expert-dropout', dropout.expert, (firstRow + r) / CHUNK_ROWS);
      const end = Math.min(tokens.length, r + CHUNK_ROWS) * s.f;
      for (let i = r * s.f; i < end; i++) mask[i] = rng.uniform() < dropout.rate ? 0 : keep;
    }
  }
}

/** The FFN on b.x: writes b.a (and b.g), b.h after the mask, and b.out. */
export function ffnForward(k: Kernels, s: ExpertShape, w: ExpertWeights, b: ExpertBuffers): void {
  const n = b.x.length / s.d;
  k.gemm('nn', n, s.f, s.d, b.x, w.wIn, b.a, false);
  if (s.activation === 'swiglu') {
    k.gemm('nn', n, s.f, s.d, b.x, w.wGate!, b.g!, false);
    k.swiglu(b.g!, b.a, b.h);
  } else if (s.activation === 'gelu') {
    k.gelu(b.a, b.h);
  } else {
    k.relu(b.a, b.h);
  }
  if (b.mask) k.multiply(b.h, b.mask, b.h);
  k.gemm('nn', n, s.d, s.f, b.h, w.wOut, b.out, false);
}

/** Each assignment's gate · out into its slot's row of ySlots. */
export function expertOutputs(k: Kernels, s: ExpertShape, b: ExpertBuffers, a: Assignment, ySlots: Float32Array): void {
  k.scatterRows(b.out, a.slots, a.slots.length, s.d, ySlots, a.gates);
}

/**
 * Backward given dy [T×d] for the whole layer output: writes the expert's weight gradients into
 * `grads` (overwriting) and d loss / d x of its tokens into their slots' rows of dxSlots [T·k×d].
 * y_t += gate · out, so dOut = gate · dy_t (and dGate = dy_t · out: gateGradients, part of the
 * router's backward).
 */
export function expertBackward(k: Kernels, s: ExpertShape, w: ExpertWeights, b: ExpertBuffers, dy: Float32Array,
  a: Assignment, dxSlots: Float32Array, grads: ExpertWeights): void {
  expertOutputGradient(k, s, b, dy, a);
  ffnBackward(k, s, w, b, grads);
  expertInputGradient(k, s, b, a, dxSlots);
}

/** The FFN's output gradient into b.dOut: each assignment's gate · dy of its token. */
export function expertOutputGradient(k: Kernels, s: ExpertShape, b: ExpertBuffers, dy: Float32Array, a: Assignment): void {
  k.gatherRows(dy, a.tokens, a.tokens.length, s.d, b.dOut, a.gates);
}

/** d loss / d gate of each assignment, dy_t · out, into dGates at its slot (out from the forward, in b.out). */
export function gateGradients(s: ExpertShape, b: ExpertBuffers, dy: Float32Array, a: Assignment, dGates: Float32Array): void {
  const { tokens, slots } = a;
  const n = tokens.length, d = s.d;
  for (let i = 0; i < n; i++) {
    const row = tokens[i]! * d;
    let dot = 0;
    for (let j = 0; j < d; j++) dot += dy[row + j]! * b.out[i * d + j]!;
    dGates[slots[i]!] = dot;
  }
}

/** The FFN's input gradient b.dx into the assignments' slot rows of dxSlots. */
export function expertInputGradient(k: Kernels, s: ExpertShape, b: ExpertBuffers, a: Assignment, dxSlots: Float32Array): void {
  k.scatterRows(b.dx, a.slots, a.slots.length, s.d, dxSlots);
}

/**
 * The FFN's backward from b.dOut: the weight gradients into `grads` (overwriting, or adding to
 * them with `accumulate`: a run of chunks that continues an earlier run) and b.dx.
 */
export function ffnBackward(k: Kernels, s: ExpertShape, w: ExpertWeights, b: ExpertBuffers, grads: ExpertWeights, accumulate = false): void {
  const d = s.d, f = s.f, n = b.x.length / d;
  k.gemm('tn', f, d, n, b.h, b.dOut, grads.wOut, accumulate); // dW_out = hᵀ·dOut
  k.gemm('nt', n, f, d, b.dOut, w.wOut, b.dh, false); // dh = dOut·W_outᵀ
  if (b.mask) k.multiply(b.dh, b.mask, b.dh);
  if (s.activation === 'swiglu') {
    k.swigluBackward(b.g!, b.a, b.dh, b.dg!, b.dh); // dh becomes da
    k.gemm('tn', d, f, n, b.x, b.dg!, grads.wGate!, accumulate);
    k.gemm('nt', n, d, f, b.dg!, w.wGate!, b.dx, false);
  } else if (s.activation === 'gelu') {
    k.geluBackward(b.a, b.dh, b.dh);
  } else {
    k.reluBackward(b.a, b.dh, b.dh);
  }
  k.gemm('tn', d, f, n, b.x, b.dh, grads.wIn, accumulate); // dW_in = xᵀ·da
  k.gemm('nt', n, d, f, b.dh, w.wIn, b.dx, s.activation === 'swiglu'); // dx = da·W_inᵀ (+ dg·W_gateᵀ)
}
