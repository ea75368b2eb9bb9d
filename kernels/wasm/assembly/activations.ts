// Elementwise activations and their derivatives over n floats. Pointers are byte offsets.
// Derivative kernels take the activation's input x and the upstream gradient dy and write dx;
// dx may alias dy.
import { exp4, k, loadTail, madd, storeTail } from './vector-math';

export function relu(x: usize, out: usize, n: i32): void {
  const zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>(i * 4);
    v128.store(out + o, f32x4.max(v128.load(x + o), zero));
  }
  for (; i < n; i++) {
    const o = <usize>(i * 4);
    const v = load<f32>(x + o);
    store<f32>(out + o, v > 0 ? v : 0);
  }
}

export function reluBackward(x: usize, dy: usize, dx: usize, n: i32): void {
  const zero = f32x4.splat(0);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>(i * 4);
    const positive = f32x4.gt(v128.load(x + o), zero);
    v128.store(dx + o, v128.and(v128.load(dy + o), positive));
  }
  for (; i < n; i++) {
    const o = <usize>(i * 4);
    store<f32>(dx + o, load<f32>(x + o) > 0 ? load<f32>(dy + o) : 0);
  }
}

// gelu needs erf, and erf an exp: both are vectorised (exp4 in vector-math.ts), four lanes at a
// time, because a language model's step spends more time in gelu than in any GEMM but the largest
// when each lane calls a scalar exp.
/**
 * erf for four lanes, from erfc's Chebyshev fit (Numerical Recipes 6.2: relative error of erfc
 * below 1.2e-7): erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2), for z = |x|.
 */
// @ts-ignore: decorator
@inline function erf4(x: v128): v128 {
  const one = k(5);
  const z = f32x4.abs(x);
  const t = f32x4.div(one, madd(z, k(6), one));
  const t2 = f32x4.mul(t, t), t4 = f32x4.mul(t2, t2), t8 = f32x4.mul(t4, t4);
  const q01 = madd(t, k(12), k(11)), q23 = madd(t, k(14), k(13)), q45 = madd(t, k(16), k(15));
  const q67 = madd(t, k(18), k(17)), q89 = madd(t, k(20), k(19));
  const p = madd(t8, q89, madd(t4, madd(t2, q67, q45), madd(t2, q23, q01)));
  const erfc = f32x4.mul(t, exp4(f32x4.sub(p, f32x4.mul(z, z))));
  const positive = f32x4.ge(x, k(24));
  return v128.bitselect(f32x4.sub(one, erfc), f32x4.sub(erfc, one), positive);
}

// @ts-ignore: decorator
@inline function geluOf(v: v128): v128 {
  const cdf = f32x4.mul(k(6), f32x4.add(k(5), erf4(f32x4.mul(v, k(21)))));
  return f32x4.mul(v, cdf);
}

// @ts-ignore: decorator
@inline function geluGrad(v: v128, d: v128): v128 {
  const cdf = f32x4.mul(k(6), f32x4.add(k(5), erf4(f32x4.mul(v, k(21)))));
  const pdf = f32x4.mul(k(22), exp4(f32x4.mul(f32x4.mul(v, v), k(23))));
  return f32x4.mul(d, f32x4.add(cdf, f32x4.mul(v, pdf)));
}

/** gelu(x) = x·Φ(x) = x·(1 + erf(x/√2))/2, the exact (erf) form. */
export function gelu(x: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) v128.store(out + <usize>(i * 4), geluOf(v128.load(x + <usize>(i * 4))));
  if (i < n) storeTail(out + <usize>(i * 4), geluOf(loadTail(x + <usize>(i * 4), n - i)), n - i);
}

/** d gelu/dx = Φ(x) + x·φ(x), φ(x) = exp(−x²/2)/√(2π). */
export function geluBackward(x: usize, dy: usize, dx: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>(i * 4);
    v128.store(dx + o, geluGrad(v128.load(x + o), v128.load(dy + o)));
  }
  if (i < n) {
    const o = <usize>(i * 4);
    storeTail(dx + o, geluGrad(loadTail(x + o, n - i), loadTail(dy + o, n - i)), n - i);
  }
}

/** σ(x) = 1/(1 + e^(−x)) for four lanes. */
// @ts-ignore: decorator
@inline function sigmoid4(x: v128): v128 {
  return f32x4.div(k(5), f32x4.add(k(5), exp4(f32x4.neg(x))));
}

// Each kernel below runs four lanes at a time over whole vectors, then once more over the last
// one to three values through loadTail/storeTail.

/** silu(x) = x·σ(x). */
export function silu(x: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) {
    const o = <usize>(i * 4), count = min(4, n - i);
    const v = count == 4 ? v128.load(x + o) : loadTail(x + o, count);
    const y = f32x4.mul(v, sigmoid4(v));
    if (count == 4) v128.store(out + o, y); else storeTail(out + o, y, count);
  }
}

/** d silu/dx = σ(x)·(1 + x·(1 − σ(x))). */
export function siluBackward(x: usize, dy: usize, dx: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) {
    const o = <usize>(i * 4), count = min(4, n - i);
    const v = count == 4 ? v128.load(x + o) : loadTail(x + o, count);
    const d = count == 4 ? v128.load(dy + o) : loadTail(dy + o, count);
    const s = sigmoid4(v);
    const y = f32x4.mul(d, f32x4.mul(s, madd(v, f32x4.sub(k(5), s), k(5))));
    if (count == 4) v128.store(dx + o, y); else storeTail(dx + o, y, count);
  }
}

/** SwiGLU's hidden layer: h = silu(g) ⊙ u. */
export function swiglu(g: usize, u: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) {
    const o = <usize>(i * 4), count = min(4, n - i);
    const v = count == 4 ? v128.load(g + o) : loadTail(g + o, count);
    const w = count == 4 ? v128.load(u + o) : loadTail(u + o, count);
    const y = f32x4.mul(f32x4.mul(v, sigmoid4(v)), w);
    if (count == 4) v128.store(out + o, y); else storeTail(out + o, y, count);
  }
}

/** Backward of h = silu(g) ⊙ u: dg = dh·u·silu'(g), du = dh·silu(g). dg/du may alias dh. */
export function swigluBackward(g: usize, u: usize, dh: usize, dg: usize, du: usize, n: i32): void {
  for (let i = 0; i < n; i += 4) {
    const o = <usize>(i * 4), count = min(4, n - i);
    const v = count == 4 ? v128.load(g + o) : loadTail(g + o, count);
    const w = count == 4 ? v128.load(u + o) : loadTail(u + o, count);
    const d = count == 4 ? v128.load(dh + o) : loadTail(dh + o, count);
    const s = sigmoid4(v);
    const gradG = f32x4.mul(f32x4.mul(d, w), f32x4.mul(s, madd(v, f32x4.sub(k(5), s), k(5))));
    const gradU = f32x4.mul(d, f32x4.mul(v, s));
    if (count == 4) { v128.store(dg + o, gradG); v128.store(du + o, gradU); } else { storeTail(dg + o, gradG, count); storeTail(du + o, gradU, count); }
  }
}
