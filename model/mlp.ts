// The dense feed-forward block of the non-Switch layers: act(x·W_up (+ b)) · W_down (+ b), or
// SwiGLU's silu(x·W_gate) ⊙ (x·W_up). The experts compute the same thing without biases.
//
// Split by hidden units into shards (Megatron's tensor parallelism; model/shards.ts runs them):
// shard c owns columns f0…f1 of W_up and W_gate and rows f0…f1 of W_down, so its weight gradients
// are its own, and only the [N×d] output and input gradient are summed over shards.
import type { Kernels } from '../kernels/index.js';
import type { Activation } from './config.js';

export interface MlpShape { n: number; d: number; f: number; activation: Activation }

export interface MlpWeights {
  up: Float32Array; // [d×f]
  down: Float32Array; // [f×d]
  gate?: Float32Array; // [d×f], swiglu
  upBias?: Float32Array; // [f]
}

/** One shard's buffers for one step; a, g, h, dh, dg are [n × (f1−f0)], y and dx [n×d] partial sums. */
export interface MlpShardBuffers {
  a: Float32Array; g?: Float32Array; h: Float32Array; y: Float32Array;
  dh: Float32Array; dg?: Float32Array; dx: Float32Array;
}

export function mlpShardForward(k: Kernels, s: MlpShape, w: MlpWeights, x: Float32Array, f0: number, f1: number,
  b: MlpShardBuffers): void {
  const { n, d, f } = s, fc = f1 - f0;
  k.gemm('nn', n, fc, d, x, w.up.subarray(f0), b.a, false, { ldb: f });
  if (w.upBias) for (let r = 0; r < n; r++) for (let j = 0; j < fc; j++) b.a[r * fc + j]! += w.upBias[f0 + j]!;
  if (s.activation === 'swiglu') {
    k.gemm('nn', n, fc, d, x, w.gate!.subarray(f0), b.g!, false, { ldb: f });
    k.swiglu(b.g!, b.a, b.h);
  } else if (s.activation === 'gelu') k.gelu(b.a, b.h);
  else k.relu(b.a, b.h);
  k.gemm('nn', n, d, fc, b.h, w.down.subarray(f0 * d), b.y, false);
}

/** Given dy [n×d]: writes this shard's slices of the weight gradients and its partial dx. */
export function mlpShardBackward(k: Kernels, s: MlpShape, w: MlpWeights, g: MlpWeights, x: Float32Array, dy: Float32Array,
  f0: number, f1: number, b: MlpShardBuffers): void {
  const { n, d, f } = s, fc = f1 - f0;
  k.gemm('tn', fc, d, n, b.h, dy, g.down.subarray(f0 * d), true); // dW_down[f0:f1] += hᵀ·dy
  k.gemm('nt', n, fc, d, dy, w.down.subarray(f0 * d), b.dh, false); // dh = dy·W_down[f0:f1]ᵀ
  if (s.activation === 'swiglu') {
    k.swigluBackward(b.g!, b.a, b.dh, b.dg!, b.dh); // dh becomes da
    k.gemm('tn', d, fc, n, x, b.dg!, g.gate!.subarray(f0), true, { ldc: f });
  } else if (s.activation === 'gelu') k.geluBackward(b.a, b.dh, b.dh);
  else k.reluBackward(b.a, b.dh, b.dh);
  k.gemm('tn', d, fc, n, x, b.dh, g.up.subarray(f0), true, { ldc: f }); // dW_up[:, f0:f1] += xᵀ·da
  if (g.upBias) for (let r = 0; r < n; r++) for (let j = 0; j < fc; j++) g.upBias[f0 + j]! += b.dh[r * fc + j]!;
  k.gemm('nt', n, d, fc, b.dh, w.up.subarray(f0), b.dx, false, { ldb: f }); // dx = da·W_up[:, f0:f1]ᵀ
  if (s.activation === 'swiglu') k.gemm('nt', n, d, fc, b.dg!, w.gate!.subarray(f0), b.dx, true, { ldb: f });
}

export interface MlpShard { f0: number; f1: number; buffers: MlpShardBuffers }
