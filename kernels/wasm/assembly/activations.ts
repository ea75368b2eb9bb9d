// Elementwise activations and their derivatives over n floats. Pointers are byte offsets.
// Derivative kernels take the activation's input x and the upstream gradient dy and write dx;
// dx may alias dy.

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

// gelu needs erf, and erf an exp: both are vectorised here, four lanes at a time, because a
// language model's step spends more time in gelu than in any GEMM but the largest when each lane
// calls a scalar exp. The polynomials are evaluated in Estrin's form with fused multiply-adds where
// the CPU has them: Horner's chain of 20 dependent multiply-adds per vector, not the arithmetic,
// bounded the speed (docs/kernels.md). Constants come from a table by broadcast load.
const K = memory.data<f32>([
  -87.0, 88.0, 1.4426950408889634, 0.693145751953125, 1.428606765330187e-6, // 0–4: exp range reduction
  1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, // 5–10: e^r = Σ rⁱ/i!, i = 0 (and 1) … 6
  -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, // 11–20: erfc fit, P(t) = Σ cᵢ tⁱ
  0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277,
  0.7071067811865476, 0.3989422804014327, -0.5, 0.0, // 21–24: 1/√2, 1/√(2π), −½, 0
]);

// @ts-ignore: decorator
@inline function k(i: i32): v128 {
  return v128.load32_splat(K + <usize>(i * 4));
}

/** a·b + c, fused where relaxed SIMD is on. */
// @ts-ignore: decorator
@inline function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** e^x for four lanes: x = n·ln2 + r, |r| ≤ ln2/2, e^r by its Taylor series to r⁶ (error < 2e-7), times 2^n. */
// @ts-ignore: decorator
@inline function exp4(x: v128): v128 {
  x = f32x4.min(f32x4.max(x, k(0)), k(1));
  const n = f32x4.nearest(f32x4.mul(x, k(2)));
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(n, k(3))), f32x4.mul(n, k(4)));
  const r2 = f32x4.mul(r, r), r4 = f32x4.mul(r2, r2);
  const q01 = f32x4.add(k(5), r), q23 = madd(r, k(7), k(6)), q45 = madd(r, k(9), k(8));
  const p = madd(r4, madd(r2, k(10), q45), madd(r2, q23, q01));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return f32x4.mul(p, scale);
}

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

/** The first `count` (< 4) floats at p in the low lanes, zeros above: a tail that must not read past the array. */
// @ts-ignore: decorator
@inline function loadTail(p: usize, count: i32): v128 {
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (count > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (count > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

// @ts-ignore: decorator
@inline function storeTail(p: usize, v: v128, count: i32): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (count > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (count > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
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
