// The feed-forward block, one implementation for its two uses: a Switch layer's expert (every
// hidden unit, on the tokens routed to it) and a dense layer's shard (hidden units f0…f1 of every
// token, Megatron's tensor parallelism):
//   relu / gelu:  a = x·W_in (+ b_in),  h = act(a)
//   swiglu:       a = x·W_in,  g = x·W_gate,  h = silu(g) ⊙ a
//   then (an expert in training) h ⊙= dropout mask, and y = h·W_out.
// A shard owns columns f0…f1 of W_in and W_gate and rows f0…f1 of W_out, addressed in place with
// row strides, so its weight gradients are its own and only y and dx are summed over shards.
import type { Kernels } from '../kernels/index.js';
import type { Activation } from './config.js';

export interface FfnShape { d: number; f: number; activation: Activation }

export interface FfnWeights {
  wIn: Float32Array; // [d×f]
  wOut: Float32Array; // [f×d]
  wGate?: Float32Array; // [d×f], swiglu only
  bIn?: Float32Array; // [f], dense layers with biases only
}

/** A step's buffers over n tokens and c = f1 − f0 hidden units: a, g, h, mask, dh, dg are [n×c]; y and dx [n×d]. */
export interface FfnBuffers {
  a: Float32Array;
  g?: Float32Array; // swiglu
  h: Float32Array; // after the mask
  mask?: Float32Array; // 0 or 1/(1−rate); an expert in training with dropout
  y: Float32Array;
  dh: Float32Array;
  dg?: Float32Array; // swiglu
  dx: Float32Array;
}

/** Hidden units [f0, f1); the whole block is [0, f). */
export type Columns = readonly [number, number];

/** y = FFN(x) for x [n×d] over columns `cols`: writes a (and g), h and y. */
export function ffnForward(kernels: Kernels, s: FfnShape, w: FfnWeights, x: Float32Array, b: FfnBuffers, cols: Columns = [0, s.f]): void {
  const { d, f } = s, [f0, f1] = cols, c = f1 - f0, n = x.length / d;
  kernels.gemm('nn', n, c, d, x, w.wIn.subarray(f0), b.a, false, { ldb: f });
  if (w.bIn) kernels.addBias(b.a, w.bIn.subarray(f0), n, c, c);
  if (s.activation === 'swiglu') {
    kernels.gemm('nn', n, c, d, x, w.wGate!.subarray(f0), b.g!, false, { ldb: f });
    kernels.swiglu(b.g!, b.a, b.h);
  } else if (s.activation === 'gelu') {
    kernels.gelu(b.a, b.h);
  } else {
    kernels.relu(b.a, b.h);
  }
  if (b.mask) kernels.multiply(b.h, b.mask, b.h);
  kernels.gemm('nn', n, d, c, b.h, w.wOut.subarray(f0 * d), b.y, false);
}

/**
 * Given dy = d loss / d y [n×d]: the weight gradients of columns `cols` into g (overwriting them,
 * or adding with `accumulate`), and this block's d loss / d x into b.dx.
 */
export function ffnBackward(kernels: Kernels, s: FfnShape, w: FfnWeights, g: FfnWeights, x: Float32Array, dy: Float32Array,
  b: FfnBuffers, cols: Columns = [0, s.f], accumulate = false): void {
  const { d, f } = s, [f0, f1] = cols, c = f1 - f0, n = x.length / d;
  kernels.gemm('tn', c, d, n, b.h, dy, g.wOut.subarray(f0 * d), accumulate); // dW_out = hᵀ·dy
  kernels.gemm('nt', n, c, d, dy, w.wOut.subarray(f0 * d), b.dh, false); // dh = dy·W_outᵀ
  if (b.mask) kernels.multiply(b.dh, b.mask, b.dh);
  if (s.activation === 'swiglu') {
    kernels.swigluBackward(b.g!, b.a, b.dh, b.dg!, b.dh); // dh becomes da
    kernels.gemm('tn', d, c, n, x, b.dg!, g.wGate!.subarray(f0), accumulate, { ldc: f }); // dW_gate = xᵀ·dg
    kernels.gemm('nt', n, d, c, b.dg!, w.wGate!.subarray(f0), b.dx, false, { ldb: f }); // dx = dg·W_gateᵀ
  } else if (s.activation === 'gelu') {
    kernels.geluBackward(b.a, b.dh, b.dh);
  } else {
    kernels.reluBackward(b.a, b.dh, b.dh);
  }
  kernels.gemm('tn', d, c, n, x, b.dh, g.wIn.subarray(f0), accumulate, { ldc: f }); // dW_in = xᵀ·da
  if (g.bIn) kernels.biasGrad(b.dh, n, c, c, g.bIn.subarray(f0));
  kernels.gemm('nt', n, d, c, b.dh, w.wIn.subarray(f0), b.dx, s.activation === 'swiglu', { ldb: f }); // dx (+)= da·W_inᵀ
}
