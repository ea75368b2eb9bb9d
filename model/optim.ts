// AdamW with nanoGPT's schedule: linear warm-up, then cosine decay to the minimum learning rate,
// and clipping of the global gradient norm. Decoupled weight decay on matrices only.
import type { Kernels } from '../kernels/index.js';
import type { TrainConfig } from './config.js';
import type { Param } from './params.js';

export function learningRate(c: TrainConfig, step: number): number {
  if (step < c.warmupSteps) return (c.learningRate * (step + 1)) / (c.warmupSteps + 1);
  if (step >= c.steps) return c.minLearningRate;
  const progress = (step - c.warmupSteps) / Math.max(1, c.steps - c.warmupSteps);
  return c.minLearningRate + 0.5 * (1 + Math.cos(Math.PI * progress)) * (c.learningRate - c.minLearningRate);
}

export class AdamW {
  /** First and second moments, one pair per parameter, in the parameters' order. */
  readonly m: Float32Array[];
  readonly v: Float32Array[];
  /** Updates applied so far (Adam's t). */
  t = 0;

  constructor(private readonly kernels: Kernels, private readonly params: Param[], private readonly c: TrainConfig) {
    this.m = params.map((p) => kernels.allocF32(p.data.length).fill(0));
    this.v = params.map((p) => kernels.allocF32(p.data.length).fill(0));
  }

  /** One update at training step `step`. Returns the learning rate used and the gradient norm before clipping. */
  step(step: number): { lr: number; gradNorm: number } {
    const c = this.c;
    const gradNorm = Math.sqrt(this.params.reduce((sum, p) => sum + this.kernels.sumSquares(p.grad), 0));
    if (!Number.isFinite(gradNorm)) throw new Error(`optimizer: the gradient norm is ${gradNorm} at step ${step}; training diverged`);
    const clip = c.gradClip > 0 && gradNorm > c.gradClip ? c.gradClip / gradNorm : 1;
    const lr = learningRate(c, step);
    this.t++;
    const hyper = {
      lr, beta1: c.beta1, beta2: c.beta2, clip, eps: 1e-8,
      correct1: 1 - Math.pow(c.beta1, this.t), correct2: 1 - Math.pow(c.beta2, this.t),
    };
    this.params.forEach((p, j) => {
      this.kernels.adamw(p.data, p.grad, this.m[j]!, this.v[j]!, { ...hyper, decay: p.decay ? 1 - lr * c.weightDecay : 1 });
    });
    return { lr, gradNorm };
  }
}
