// Plain TypeScript kernels: the oracle the tests hold every other backend to. Loops as the math
// reads, float64 accumulation, no blocking, no SIMD.
import { type AdamHyper, type GemmForm, type GemmStrides, type Kernels, checkBias, checkRope, gemmLayout, requireLength } from './kernels.js';

/** erf(x), from erfc's Chebyshev fit (Numerical Recipes, 6.2): relative error of erfc < 1.2e-7. */
export function erf(x: number): number {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 +
    t * 0.17087277)))))))));
  return x >= 0 ? 1 - erfc : erfc - 1;
}

const sigmoid = (v: number): number => 1 / (1 + Math.exp(-v));
const geluOf = (v: number): number => 0.5 * v * (1 + erf(v / Math.SQRT2));
const geluDerivative = (v: number): number =>
  0.5 * (1 + erf(v / Math.SQRT2)) + (v * Math.exp(-0.5 * v * v)) / Math.sqrt(2 * Math.PI);
const siluDerivative = (v: number): number => { const s = sigmoid(v); return s * (1 + v * (1 - s)); };

export class ReferenceKernels implements Kernels {
  readonly name = 'reference';

  allocF32(length: number): Float32Array { return new Float32Array(length); }
  allocI32(length: number): Int32Array { return new Int32Array(length); }
  free(): void { /* garbage collected */ }

  gemm(form: GemmForm, m: number, n: number, k: number, a: Float32Array, b: Float32Array, c: Float32Array,
    accumulate: boolean, strides?: GemmStrides): void {
    const { lda, ldb, ldc } = gemmLayout(form, m, n, k, a, b, c, strides);
    const A = form === 'tn' ? (i: number, p: number) => a[p * lda + i]! : (i: number, p: number) => a[i * lda + p]!;
    const B = form === 'nt' ? (p: number, j: number) => b[j * ldb + p]! : (p: number, j: number) => b[p * ldb + j]!;
    for (let i = 0; i < m; i++) {
      for (let j = 0; j < n; j++) {
        let sum = 0;
        for (let p = 0; p < k; p++) sum += A(i, p) * B(p, j);
        c[i * ldc + j] = accumulate ? c[i * ldc + j]! + sum : sum;
      }
    }
  }

  relu(x: Float32Array, out: Float32Array): void { map(x, out, (v) => (v > 0 ? v : 0)); }
  reluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { map2(x, dy, dx, (v, d) => (v > 0 ? d : 0)); }
  gelu(x: Float32Array, out: Float32Array): void { map(x, out, geluOf); }
  geluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { map2(x, dy, dx, (v, d) => d * geluDerivative(v)); }
  silu(x: Float32Array, out: Float32Array): void { map(x, out, (v) => v * sigmoid(v)); }
  siluBackward(x: Float32Array, dy: Float32Array, dx: Float32Array): void { map2(x, dy, dx, (v, d) => d * siluDerivative(v)); }
  swiglu(g: Float32Array, u: Float32Array, out: Float32Array): void { map2(g, u, out, (v, w) => v * sigmoid(v) * w); }

  swigluBackward(g: Float32Array, u: Float32Array, dh: Float32Array, dg: Float32Array, du: Float32Array): void {
    const n = dh.length;
    for (const v of [g, u, dg, du]) requireLength('swigluBackward', v, n);
    for (let i = 0; i < n; i++) {
      const v = g[i]!, w = u[i]!, d = dh[i]!;
      dg[i] = d * w * siluDerivative(v);
      du[i] = d * v * sigmoid(v);
    }
  }

  softmaxRows(x: Float32Array, out: Float32Array, rows: number, cols: number, lse?: Float32Array): void {
    requireLength('softmaxRows x', x, rows * cols);
    requireLength('softmaxRows out', out, rows * cols);
    if (lse) requireLength('softmaxRows lse', lse, rows);
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * cols, (r + 1) * cols);
      const max = Math.max(...row);
      const exps = Array.from(row, (v) => Math.exp(v - max));
      const sum = exps.reduce((s, e) => s + e, 0);
      exps.forEach((e, c) => { out[r * cols + c] = e / sum; });
      if (lse) lse[r] = max + Math.log(sum);
    }
  }

  gatherRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array,
    scale?: Float32Array): void {
    for (let i = 0; i < count; i++) {
      const s = scale ? scale[i]! : 1;
      for (let c = 0; c < cols; c++) out[i * cols + c] = s * at(src, index[i]! * cols + c, 'gatherRows');
    }
  }

  scatterAddRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array,
    scale?: Float32Array): void {
    for (let i = 0; i < count; i++) {
      const s = scale ? scale[i]! : 1;
      const row = index[i]!;
      if (!(row >= 0 && (row + 1) * cols <= out.length)) throw new RangeError(`scatterAddRows: index[${i}] = ${row} is out of range`);
      for (let c = 0; c < cols; c++) out[row * cols + c] = out[row * cols + c]! + s * src[i * cols + c]!;
    }
  }

  scatterRows(src: Float32Array, index: Int32Array, count: number, cols: number, out: Float32Array, scale?: Float32Array): void {
    for (let i = 0; i < count; i++) {
      const s = scale ? scale[i]! : 1;
      const row = index[i]!;
      if (!(row >= 0 && (row + 1) * cols <= out.length)) throw new RangeError(`scatterRows: index[${i}] = ${row} is out of range`);
      for (let c = 0; c < cols; c++) out[row * cols + c] = s * src[i * cols + c]!;
    }
  }

  softmaxBackwardRows(p: Float32Array, dp: Float32Array, out: Float32Array, rows: number, cols: number, scale: number): void {
    for (let r = 0; r < rows; r++) {
      const o = r * cols;
      let dot = 0;
      for (let c = 0; c < cols; c++) dot += dp[o + c]! * p[o + c]!;
      for (let c = 0; c < cols; c++) out[o + c] = scale * p[o + c]! * (dp[o + c]! - dot);
    }
  }

  causalMaskRows(s: Float32Array, rows: number, cols: number, scale: number): void {
    for (let r = 0; r < rows; r++) {
      for (let c = 0; c < cols; c++) s[r * cols + c] = c <= r % cols ? s[r * cols + c]! * scale : -Infinity;
    }
  }

  layerNorm(x: Float32Array, gain: Float32Array, bias: Float32Array | undefined, out: Float32Array, rstd: Float32Array,
    mean: Float32Array, rows: number, cols: number, eps: number): void {
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * cols, (r + 1) * cols);
      const m = row.reduce((a, v) => a + v, 0) / cols;
      const s = 1 / Math.sqrt(row.reduce((a, v) => a + (v - m) * (v - m), 0) / cols + eps);
      mean[r] = m; rstd[r] = s;
      for (let c = 0; c < cols; c++) out[r * cols + c] = (row[c]! - m) * s * gain[c]! + (bias ? bias[c]! : 0);
    }
  }

  layerNormBackward(x: Float32Array, gain: Float32Array, rstd: Float32Array, mean: Float32Array, dy: Float32Array,
    dx: Float32Array, dGain: Float32Array, dBias: Float32Array | undefined, rows: number, cols: number): void {
    for (let r = 0; r < rows; r++) {
      const o = r * cols, m = mean[r]!, s = rstd[r]!;
      const xh = (c: number) => (x[o + c]! - m) * s;
      let sumG = 0, sumGX = 0;
      for (let c = 0; c < cols; c++) {
        sumG += gain[c]! * dy[o + c]!;
        sumGX += gain[c]! * dy[o + c]! * xh(c);
        dGain[c] = dGain[c]! + dy[o + c]! * xh(c);
        if (dBias) dBias[c] = dBias[c]! + dy[o + c]!;
      }
      for (let c = 0; c < cols; c++) dx[o + c] = s * (gain[c]! * dy[o + c]! - sumG / cols - xh(c) * (sumGX / cols));
    }
  }

  rmsNorm(x: Float32Array, gain: Float32Array, out: Float32Array, rstd: Float32Array, rows: number, cols: number, eps: number): void {
    for (let r = 0; r < rows; r++) {
      const row = x.subarray(r * cols, (r + 1) * cols);
      const s = 1 / Math.sqrt(row.reduce((a, v) => a + v * v, 0) / cols + eps);
      rstd[r] = s;
      for (let c = 0; c < cols; c++) out[r * cols + c] = row[c]! * s * gain[c]!;
    }
  }

  rmsNormBackward(x: Float32Array, gain: Float32Array, rstd: Float32Array, dy: Float32Array, dx: Float32Array,
    dGain: Float32Array, rows: number, cols: number): void {
    for (let r = 0; r < rows; r++) {
      const o = r * cols, s = rstd[r]!;
      let dot = 0;
      for (let c = 0; c < cols; c++) {
        dot += gain[c]! * dy[o + c]! * x[o + c]!;
        dGain[c] = dGain[c]! + dy[o + c]! * x[o + c]! * s;
      }
      for (let c = 0; c < cols; c++) dx[o + c] = s * gain[c]! * dy[o + c]! - (x[o + c]! * s * s * s * dot) / cols;
    }
  }

  sumSquares(x: Float32Array): number {
    let sum = 0;
    for (const v of x) sum += v * v;
    return sum;
  }

  add(x: Float32Array, y: Float32Array, out: Float32Array): void { map2(x, y, out, (a, b) => a + b); }
  multiply(x: Float32Array, y: Float32Array, out: Float32Array): void { map2(x, y, out, (a, b) => a * b); }

  addBias(x: Float32Array, bias: Float32Array, rows: number, cols: number, ld: number): void {
    checkBias('addBias', 'x', x, bias, rows, cols, ld);
    for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) x[r * ld + j]! += bias[j]!;
  }

  biasGrad(dy: Float32Array, rows: number, cols: number, ld: number, dBias: Float32Array): void {
    checkBias('biasGrad', 'dy', dy, dBias, rows, cols, ld);
    for (let r = 0; r < rows; r++) for (let j = 0; j < cols; j++) dBias[j]! += dy[r * ld + j]!;
  }

  rope(x: Float32Array, rows: number, stride: number, groups: number, headDim: number, time: number,
    cos: Float32Array, sin: Float32Array, inverse: boolean): void {
    checkRope(x, rows, stride, groups, headDim, time, cos, sin);
    const half = headDim / 2, sign = inverse ? -1 : 1;
    for (let r = 0; r < rows; r++) {
      const t = r % time;
      for (let g = 0; g < groups; g++) {
        const o = r * stride + g * headDim;
        for (let i = 0; i < half; i++) {
          const c = cos[t * half + i]!, sn = sign * sin[t * half + i]!;
          const x1 = x[o + i]!, x2 = x[o + half + i]!;
          x[o + i] = x1 * c - x2 * sn;
          x[o + half + i] = x2 * c + x1 * sn;
        }
      }
    }
  }

  firstNonFinite(x: Float32Array): number {
    return x.findIndex((v) => !Number.isFinite(v));
  }

  adamw(w: Float32Array, g: Float32Array, m: Float32Array, v: Float32Array, h: AdamHyper): void {
    for (const a of [g, m, v]) requireLength('adamw', a, w.length);
    for (let i = 0; i < w.length; i++) {
      const gi = g[i]! * h.clip;
      m[i] = h.beta1 * m[i]! + (1 - h.beta1) * gi;
      v[i] = h.beta2 * v[i]! + (1 - h.beta2) * gi * gi;
      w[i] = w[i]! * h.decay - (h.lr * (m[i]! / h.correct1)) / (Math.sqrt(v[i]! / h.correct2) + h.eps);
    }
  }
}

function at(array: Float32Array, i: number, what: string): number {
  if (!(i >= 0 && i < array.length)) throw new RangeError(`${what}: element ${i} is out of range`);
  return array[i]!;
}

function map(x: Float32Array, out: Float32Array, f: (v: number) => number): void {
  requireLength('activation input', x, out.length);
  for (let i = 0; i < out.length; i++) out[i] = f(x[i]!);
}

function map2(x: Float32Array, y: Float32Array, out: Float32Array, f: (v: number, w: number) => number): void {
  requireLength('activation input', x, out.length);
  requireLength('activation input', y, out.length);
  for (let i = 0; i < out.length; i++) out[i] = f(x[i]!, y[i]!);
}
