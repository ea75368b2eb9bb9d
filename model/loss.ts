// Mean softmax cross-entropy over n rows of logits [n × V], and its gradient.
import type { Kernels } from '../kernels/index.js';

/** Returns the mean loss; writes d loss / d logits into dLogits (which may alias logits). */
export function crossEntropy(kernels: Kernels, logits: Float32Array, targets: Int32Array, n: number, vocab: number,
  dLogits: Float32Array, lse: Float32Array): number {
  const picked = Float64Array.from({ length: n }, (_, r) => logits[r * vocab + targets[r]!]!); // read before dLogits may overwrite logits
  // d/dlogit = (softmax − onehot) / n
  kernels.softmaxRows(logits, dLogits, n, vocab, lse);
  let loss = 0;
  for (let r = 0; r < n; r++) loss += lse[r]! - picked[r]!;
  for (let i = 0; i < n * vocab; i++) dLogits[i] = dLogits[i]! / n;
  for (let r = 0; r < n; r++) dLogits[r * vocab + targets[r]!]! -= 1 / n;
  return loss / n;
}
