// One expert's share of a Switch layer step (SPEC step 4) on the n tokens routed to it:
//   forward:  gather its tokens' rows of x → the FFN (model/ffn.ts) → gate · y into their slots
//   backward: gather gate · dy → the FFN's backward → dx into their slots
// A slot (token t's j-th choice) belongs to one expert, so experts computed apart never write the
// same row (model/combine.ts sums each token's slots). These functions read and write only the
// arrays they are given, so the same code runs in process and on any thread over shared memory.
import type { Kernels } from '../kernels/index.js';
import { type FfnBuffers, type FfnShape, type FfnWeights, ffnBackward, ffnForward } from './ffn.js';
import { Rng } from './rng.js';

/** The expert's weights: the FFN's, without biases. */
export type ExpertWeights = Omit<FfnWeights, 'bIn'>;

/** One expert's buffers for one step: its tokens' rows x and output gradients dy, and the FFN's. */
export interface ExpertBuffers extends FfnBuffers {
  x: Float32Array; // [n×d]
  dy: Float32Array; // [n×d] gate · dy of its tokens
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
 * An expert's rows in blocks of this many: each block draws its own dropout mask, and its weight
 * gradients may be computed apart and added in block order with the same bits as one pass,
 * because 256 is the GEMM's depth block (KC): a gradient over a run of whole blocks is summed one
 * KC slice per block. Rows may therefore be split between threads on block boundaries.
 */
export const ROW_BLOCK = 256;

// Every buffer starts on a 64-byte boundary.
const pad = (floats: number) => Math.ceil(floats / 16) * 16;

/** The buffers an expert's step has, in block order, each with its floats per token row. */
function layout(s: FfnShape, dropout: boolean): [keyof ExpertBuffers, number][] {
  const swiglu = s.activation === 'swiglu';
  const rows: [keyof ExpertBuffers, number | false][] = [
    ['x', s.d], ['a', s.f], ['g', swiglu && s.f], ['h', s.f], ['mask', dropout && s.f],
    ['y', s.d], ['dy', s.d], ['dh', s.f], ['dg', swiglu && s.f], ['dx', s.d],
  ];
  return rows.filter((r): r is [keyof ExpertBuffers, number] => r[1] !== false);
}

export function expertBlockLength(s: FfnShape, n: number, dropout: boolean): number {
  return layout(s, dropout).reduce((sum, [, width]) => sum + pad(n * width), 0);
}

/** Carves an expert's buffers for n tokens out of one block: the layout every thread shares. */
export function expertBuffers(block: Float32Array, s: FfnShape, n: number, dropout: boolean): ExpertBuffers {
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

/** Rows [r0, r1) of an expert's buffers and assignment (views). */
export function expertRows(s: FfnShape, b: ExpertBuffers, a: Assignment, r0: number, r1: number): { buffers: ExpertBuffers; assignment: Assignment } {
  const buffers: Partial<ExpertBuffers> = {};
  for (const [name, width] of layout(s, b.mask !== undefined)) buffers[name] = b[name]!.subarray(r0 * width, r1 * width);
  return {
    buffers: buffers as ExpertBuffers,
    assignment: { tokens: a.tokens.subarray(r0, r1), gates: a.gates.subarray(r0, r1), slots: a.slots.subarray(r0, r1) },
  };
}

/** Expert e's slices of stacked [E×…] weights (views, not copies). */
export function expertWeights(stacked: ExpertWeights, s: FfnShape, e: number): ExpertWeights {
  const size = s.d * s.f, at = (w: Float32Array) => w.subarray(e * size, (e + 1) * size);
  return { wIn: at(stacked.wIn), wOut: at(stacked.wOut), ...(stacked.wGate && { wGate: at(stacked.wGate) }) };
}

/**
 * Forward for the assigned tokens of x [T×d]: gate · y into their rows of ySlots [T·k×d].
 * `firstRow`: the buffers' first row within the expert (a multiple of ROW_BLOCK), which keys the mask.
 */
export function expertForward(kernels: Kernels, s: FfnShape, w: ExpertWeights, b: ExpertBuffers, x: Float32Array,
  a: Assignment, ySlots: Float32Array, dropout?: ExpertDropout, firstRow = 0): void {
  expertInputs(kernels, s, b, x, a, dropout, firstRow);
  ffnForward(kernels, s, w, b.x, b);
  expertOutputs(kernels, s, b, a, ySlots);
}

/** What the FFN reads: the expert's rows of x into b.x, and this step's dropout mask into b.mask. */
export function expertInputs(kernels: Kernels, s: FfnShape, b: ExpertBuffers, x: Float32Array, a: Assignment,
  dropout?: ExpertDropout, firstRow = 0): void {
  kernels.gatherRows(x, a.tokens, a.tokens.length, s.d, b.x);
  if (dropout && dropout.rate > 0) fillDropoutMask(b.mask!, s.f, dropout, firstRow);
}

/** Each assignment's gate · y into its slot's row of ySlots. */
export function expertOutputs(kernels: Kernels, s: FfnShape, b: ExpertBuffers, a: Assignment, ySlots: Float32Array): void {
  kernels.scatterRows(b.y, a.slots, a.slots.length, s.d, ySlots, a.gates);
}

/**
 * Backward given dy [T×d] for the whole layer output: the expert's weight gradients into `grads`
 * (overwriting, or adding with `accumulate`: rows that continue earlier rows of the same expert),
 * and d loss / d x of its tokens into their rows of dxSlots [T·k×d].
 */
export function expertBackward(kernels: Kernels, s: FfnShape, w: ExpertWeights, b: ExpertBuffers, dy: Float32Array,
  a: Assignment, dxSlots: Float32Array, grads: ExpertWeights, accumulate = false): void {
  expertOutputGradient(kernels, s, b, dy, a);
  ffnBackward(kernels, s, w, grads, b.x, b.dy, b, [0, s.f], accumulate);
  expertInputGradient(kernels, s, b, a, dxSlots);
}

/**
 * The FFN's output gradient into b.dy: y_t += gate · out, so each assignment's is gate · dy_t
 * (and d gate = dy_t · out: gateGradients, part of the router's backward).
 */
export function expertOutputGradient(kernels: Kernels, s: FfnShape, b: ExpertBuffers, dy: Float32Array, a: Assignment): void {
  kernels.gatherRows(dy, a.tokens, a.tokens.length, s.d, b.dy, a.gates);
}

/** The FFN's input gradient b.dx into the assignments' slot rows of dxSlots. */
export function expertInputGradient(kernels: Kernels, s: FfnShape, b: ExpertBuffers, a: Assignment, dxSlots: Float32Array): void {
  kernels.scatterRows(b.dx, a.slots, a.slots.length, s.d, dxSlots);
}

/** d loss / d gate of each assignment, dy_t · y (the expert's forward output), into dGates at its slot. */
export function gateGradients(s: FfnShape, b: ExpertBuffers, dy: Float32Array, a: Assignment, dGates: Float32Array): void {
  const { tokens, slots } = a;
  const n = tokens.length, d = s.d;
  for (let i = 0; i < n; i++) {
    const row = tokens[i]! * d;
    let dot = 0;
    for (let j = 0; j < d; j++) dot += dy[row + j]! * b.y[i * d + j]!;
    dGates[slots[i]!] = dot;
  }
}

/** Each block of ROW_BLOCK rows draws its mask from its own key. */
function fillDropoutMask(mask: Float32Array, f: number, dropout: ExpertDropout, firstRow: number): void {
  const keep = 1 / (1 - dropout.rate), rows = mask.length / f;
  for (let r = 0; r < rows; r += ROW_BLOCK) {
    const rng = new Rng(dropout.seed, dropout.step, dropout.layerIndex, 'expert-dropout', dropout.expert, (firstRow + r) / ROW_BLOCK);
    const end = Math.min(rows, r + ROW_BLOCK) * f;
    for (let i = r * f; i < end; i++) mask[i] = rng.uniform() < dropout.rate ? 0 : keep;
  }
}
