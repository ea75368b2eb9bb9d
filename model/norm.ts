// Pre-norm over the rows of [n × d]: LayerNorm (with a bias when the model has biases) or
// RMSNorm. Forward keeps each row's reciprocal scale for backward.

export interface NormCache { x: Float32Array; rstd: Float32Array; mean?: Float32Array }

const LAYERNORM_EPS = 1e-5;
const RMSNORM_EPS = 1e-6; // Qwen2's rms_norm_eps

export function layerNormForward(x: Float32Array, n: number, d: number, gain: Float32Array, bias: Float32Array | undefined,
  out: Float32Array, rstd: Float32Array, mean: Float32Array): void {
  for (let r = 0; r < n; r++) {
    const o = r * d;
    let m = 0;
    for (let c = 0; c < d; c++) m += x[o + c]!;
    m /= d;
    let v = 0;
    for (let c = 0; c < d; c++) { const e = x[o + c]! - m; v += e * e; }
    const s = 1 / Math.sqrt(v / d + LAYERNORM_EPS);
    mean[r] = m; rstd[r] = s;
    for (let c = 0; c < d; c++) out[o + c] = (x[o + c]! - m) * s * gain[c]! + (bias ? bias[c]! : 0);
  }
}

/** dx = s·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂)); accumulates the gain's and bias's gradients. */
export function layerNormBackward(x: Float32Array, n: number, d: number, gain: Float32Array, rstd: Float32Array, mean: Float32Array,
  dy: Float32Array, dx: Float32Array, dGain: Float32Array, dBias: Float32Array | undefined): void {
  for (let r = 0; r < n; r++) {
    const o = r * d, m = mean[r]!, s = rstd[r]!;
    let sumG = 0, sumGX = 0;
    for (let c = 0; c < d; c++) {
      const xh = (x[o + c]! - m) * s, gdy = gain[c]! * dy[o + c]!;
      sumG += gdy; sumGX += gdy * xh;
      dGain[c]! += dy[o + c]! * xh;
      if (dBias) dBias[c]! += dy[o + c]!;
    }
    sumG /= d; sumGX /= d;
    for (let c = 0; c < d; c++) {
      const xh = (x[o + c]! - m) * s;
      dx[o + c] = s * (gain[c]! * dy[o + c]! - sumG - xh * sumGX);
    }
  }
}

export function rmsNormForward(x: Float32Array, n: number, d: number, gain: Float32Array, out: Float32Array, rstd: Float32Array): void {
  for (let r = 0; r < n; r++) {
    const o = r * d;
    let ss = 0;
    for (let c = 0; c < d; c++) ss += x[o + c]! * x[o + c]!;
    const s = 1 / Math.sqrt(ss / d + RMSNORM_EPS);
    rstd[r] = s;
    for (let c = 0; c < d; c++) out[o + c] = x[o + c]! * s * gain[c]!;
  }
}

/** y = x·s·g with s = (mean x² + ε)^(−1/2): dx = s·g·dy − x·s³·mean(g·dy·x). */
export function rmsNormBackward(x: Float32Array, n: number, d: number, gain: Float32Array, rstd: Float32Array,
  dy: Float32Array, dx: Float32Array, dGain: Float32Array): void {
  for (let r = 0; r < n; r++) {
    const o = r * d, s = rstd[r]!;
    let dot = 0;
    for (let c = 0; c < d; c++) {
      dot += gain[c]! * dy[o + c]! * x[o + c]!;
      dGain[c]! += dy[o + c]! * x[o + c]! * s;
    }
    const k = (s * s * s * dot) / d;
    for (let c = 0; c < d; c++) dx[o + c] = s * gain[c]! * dy[o + c]! - x[o + c]! * k;
  }
}
