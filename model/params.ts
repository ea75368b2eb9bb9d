// A model's parameters: named tensors in kernel memory, each with its gradient, in one list the
// optimizer, the gradient clipping and the checkpoints all walk in the same order.
import type { Kernels } from '../kernels/index.js';
import { Rng } from './rng.js';

export interface Param {
  /** Checkpoint key, e.g. "layers.1.attn.qkv.weight". */
  name: string;
  shape: number[];
  /** The float32 master value, which the optimizer updates. */
  data: Float32Array;
  grad: Float32Array;
  /** AdamW decays matrices, not gains and biases. */
  decay: boolean;
  /** A compute copy rounded to bfloat16 (bf16 expert weights): refreshed from data after each update. */
  compute?: Float32Array;
  /** Every backward writes the whole gradient (a Switch layer's weights), so it is not zeroed first. */
  gradOverwritten?: boolean;
}

export type Init = { kind: 'reduced'; fanIn: number } | { kind: 'ones' } | { kind: 'zeros' };

export class ParamSet {
  readonly list: Param[] = [];

  constructor(private readonly kernels: Kernels) {}

  /** A new parameter and its zeroed gradient, initialised from (seed, name). */
  add(name: string, shape: number[], init: Init, seed: number): Param {
    const size = shape.reduce((a, b) => a * b, 1);
    const p: Param = { name, shape, data: this.kernels.allocF32(size), grad: this.kernels.allocF32(size).fill(0), decay: init.kind === 'reduced' };
    initialize(p.data, init, new Rng(seed, 'init', name));
    this.list.push(p);
    return p;
  }

  /** A parameter whose storage another component owns (a Switch layer's stacked expert weights). */
  adopt(p: Param): Param {
    this.list.push(p);
    return p;
  }

  get(name: string): Param {
    const p = this.list.find((q) => q.name === name);
    if (!p) throw new Error(`no parameter named ${name}`);
    return p;
  }

  /** Zeroes the gradients that backward accumulates into. */
  zeroGrads(): void {
    for (const p of this.list) if (!p.gradOverwritten) p.grad.fill(0);
  }
}

/** The Switch paper's reduced initialization: truncated normal, std = sqrt(0.1 / fan_in). */
export function initialize(out: Float32Array, init: Init, rng: Rng): void {
  if (init.kind === 'ones') out.fill(1);
  else if (init.kind === 'zeros') out.fill(0);
  else {
    const std = Math.sqrt(0.1 / init.fanIn);
    for (let i = 0; i < out.length; i++) out[i] = rng.truncatedNormal(std);
  }
}
