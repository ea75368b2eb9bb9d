// AdamW with nanoGPT's schedule: linear warm-up, then cosine decay to the minimum learning rate,
// and clipping of the global gradient norm. Decoupled weight decay on matrices only.
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

  constructor(private readonly params: Param[], private readonly c: TrainConfig) {
    this.m = params.map((p) => new Float32Array(p.data.length));
    this.v = params.map((p) => new Float32Array(p.data.length));
  }

  /** One update at training step `step`. Returns the learning rate used and the gradient norm before clipping. */
  step(step: number): { lr: number; gradNorm: number } {
    const c = this.c;
    let sq = 0;
    for (const p of this.params) for (let i = 0; i < p.grad.length; i++) sq += p.grad[i]! * p.grad[i]!;
    const gradNorm = Math.sqrt(sq);
    if (!Number.isFinite(gradNorm)) throw new Error(`optimizer: the gradient norm is ${gradNorm} at step ${step}; training diverged`);
    const clip = c.gradClip > 0 && gradNorm > c.gradClip ? c.gradClip / gradNorm : 1;
    const lr = learningRate(c, step);
    this.t++;
    const b1 = c.beta1, b2 = c.beta2;
    const correct1 = 1 - Math.pow(b1, this.t), correct2 = 1 - Math.pow(b2, this.t);
    this.params.forEach((p, j) => {
      const m = this.m[j]!, v = this.v[j]!, w = p.data, g = p.grad;
      const decay = p.decay ? 1 - lr * c.weightDecay : 1;
      for (let i = 0; i < w.length; i++) {
        const gi = g[i]! * clip;
        m[i] = b1 * m[i]! + (1 - b1) * gi;
        v[i] = b2 * v[i]! + (1 - b2) * gi * gi;
        w[i] = w[i]! * decay - (lr * (m[i]! / correct1)) / (Math.sqrt(v[i]! / correct2) + 1e-8);
      }
    });
    return { lr, gradNorm };
  }
}
