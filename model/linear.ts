// y = x·W (+ b) over n rows, W stored [in × out]. Backward accumulates into the gradients, so a
// weight used twice in a step (the tied embedding) collects both contributions.
import type { Kernels } from '../kernels/index.js';

export interface LinearParams { w: Float32Array; b?: Float32Array; dw: Float32Array; db?: Float32Array }

export function linearForward(k: Kernels, p: LinearParams, x: Float32Array, n: number, inF: number, outF: number,
  out: Float32Array): void {
  k.gemm('nn', n, outF, inF, x, p.w, out, false);
  if (p.b) for (let r = 0; r < n; r++) for (let c = 0; c < outF; c++) out[r * outF + c]! += p.b[c]!;
}

/** dW += xᵀ·dy, db += Σ_rows dy, and dx = dy·Wᵀ (or dx += when accumulateDx). */
export function linearBackward(k: Kernels, p: LinearParams, x: Float32Array, dy: Float32Array, n: number, inF: number,
  outF: number, dx: Float32Array, accumulateDx = false): void {
  k.gemm('tn', inF, outF, n, x, dy, p.dw, true);
  if (p.db) for (let r = 0; r < n; r++) for (let c = 0; c < outF; c++) p.db[c]! += dy[r * outF + c]!;
  k.gemm('nt', n, inF, outF, dy, p.w, dx, accumulateDx);
}
