// The expert FFN's math as gpu.js kernel functions: one output element per thread, thread.x the
// column and thread.y the row. gpu.js transpiles each function's source (to WGSL, GLSL, WebAssembly
// or plain JavaScript), so the bodies use only what it can translate: numbers, loops, Math.
// Every matrix is indexed [row][column]; `this.constants.inner` is the summed dimension.
import type { IKernelFunctionThis } from 'gpu.js';

type Inner = IKernelFunctionThis<{ inner: number }>;
type Elementwise = IKernelFunctionThis;
type Matrix = number[][];
/** Any of the bodies below. */
export type KernelBody = (this: never, ...matrices: Matrix[]) => number;

/** nn: C = A·B, A [m×inner], B [inner×n]. */
export function matmulNN(this: Inner, a: Matrix, b: Matrix): number {
  let sum = 0;
  for (let i = 0; i < this.constants.inner; i++) sum += a[this.thread.y]![i]! * b[i]![this.thread.x]!;
  return sum;
}

/** nt: C = A·Bᵀ, A [m×inner], B [n×inner]. */
export function matmulNT(this: Inner, a: Matrix, b: Matrix): number {
  let sum = 0;
  for (let i = 0; i < this.constants.inner; i++) sum += a[this.thread.y]![i]! * b[this.thread.x]![i]!;
  return sum;
}

/** tn: C = Aᵀ·B, A [inner×m], B [inner×n]. */
export function matmulTN(this: Inner, a: Matrix, b: Matrix): number {
  let sum = 0;
  for (let i = 0; i < this.constants.inner; i++) sum += a[i]![this.thread.y]! * b[i]![this.thread.x]!;
  return sum;
}

/** A·Bᵀ + C·Dᵀ: swiglu's dx, both input projections at once. */
export function matmulNTPair(this: Inner, a: Matrix, b: Matrix, c: Matrix, d: Matrix): number {
  let sum = 0;
  for (let i = 0; i < this.constants.inner; i++) {
    sum += a[this.thread.y]![i]! * b[this.thread.x]![i]! + c[this.thread.y]![i]! * d[this.thread.x]![i]!;
  }
  return sum;
}

export function multiply(this: Elementwise, a: Matrix, b: Matrix): number {
  return a[this.thread.y]![this.thread.x]! * b[this.thread.y]![this.thread.x]!;
}

export function relu(this: Elementwise, a: Matrix): number {
  return Math.max(a[this.thread.y]![this.thread.x]!, 0);
}

/** dy where the input was positive, else 0. */
export function reluBackward(this: Elementwise, a: Matrix, dy: Matrix): number {
  return a[this.thread.y]![this.thread.x]! > 0 ? dy[this.thread.y]![this.thread.x]! : 0;
}

// gelu is the exact (erf) form, with the reference kernels' erf: erfc's Chebyshev fit (Numerical
// Recipes 6.2, relative error < 1.2e-7), given to the gelu kernels as `functions: [erf]`.

export function erf(v: number): number {
  const z = Math.abs(v);
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418
    + t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 + t * 0.17087277)))))))));
  return v >= 0 ? 1 - erfc : erfc - 1;
}

export function gelu(this: Elementwise, a: Matrix): number {
  const v = a[this.thread.y]![this.thread.x]!;
  return 0.5 * v * (1 + erf(v * 0.7071067811865476));
}

/** dy · gelu'(a), gelu'(v) = Φ(v) + v·φ(v). */
export function geluBackward(this: Elementwise, a: Matrix, dy: Matrix): number {
  const v = a[this.thread.y]![this.thread.x]!;
  const derivative = 0.5 * (1 + erf(v * 0.7071067811865476)) + v * Math.exp(-0.5 * v * v) * 0.3989422804014327;
  return dy[this.thread.y]![this.thread.x]! * derivative;
}

/** silu(g) ⊙ u. */
export function swiglu(this: Elementwise, g: Matrix, u: Matrix): number {
  const v = g[this.thread.y]![this.thread.x]!;
  return (v / (1 + Math.exp(-v))) * u[this.thread.y]![this.thread.x]!;
}

/** swiglu's d/dg: dh ⊙ u ⊙ silu'(g), silu'(v) = s·(1 + v·(1 − s)), s = sigmoid(v). */
export function swigluBackwardGate(this: Elementwise, g: Matrix, u: Matrix, dh: Matrix): number {
  const v = g[this.thread.y]![this.thread.x]!;
  const s = 1 / (1 + Math.exp(-v));
  return dh[this.thread.y]![this.thread.x]! * u[this.thread.y]![this.thread.x]! * s * (1 + v * (1 - s));
}

/** swiglu's d/du: dh ⊙ silu(g). */
export function swigluBackwardUp(this: Elementwise, g: Matrix, dh: Matrix): number {
  const v = g[this.thread.y]![this.thread.x]!;
  return dh[this.thread.y]![this.thread.x]! * (v / (1 + Math.exp(-v)));
}
