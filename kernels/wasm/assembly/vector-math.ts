// Four-lane math shared by the kernels: exp, fused multiply-add, and loads and stores of a
// vector's last one to three values. The polynomials are evaluated in Estrin's form with fused
// multiply-adds where the CPU has them: Horner's chain of 20 dependent multiply-adds per vector,
// not the arithmetic, bounded the speed (docs/kernels.md). Constants come from a table by
// broadcast load.
const K = memory.data<f32>([
  -87.0, 88.0, 1.4426950408889634, 0.693145751953125, 1.428606765330187e-6, // 0–4: exp range reduction
  1.0, 0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, // 5–10: e^r = Σ rⁱ/i!, i = 0 (and 1) … 6
  -1.26551223, 1.00002368, 0.37409196, 0.09678418, -0.18628806, // 11–20: erfc fit, P(t) = Σ cᵢ tⁱ
  0.27886807, -1.13520398, 1.48851587, -0.82215223, 0.17087277,
  0.7071067811865476, 0.3989422804014327, -0.5, 0.0, // 21–24: 1/√2, 1/√(2π), −½, 0
]);

// @ts-ignore: decorator
@inline export function k(i: i32): v128 {
  return v128.load32_splat(K + <usize>(i * 4));
}

/** a·b + c, fused where relaxed SIMD is on. */
// @ts-ignore: decorator
@inline export function madd(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/**
 * e^x for four lanes: x = n·ln2 + r, |r| ≤ ln2/2, e^r by its Taylor series to r⁶ (error < 2e-7),
 * times 2^n. Below −87 (where e^x leaves float32's normal range) it is 0, so a softmax's masked
 * −∞ entries are exactly 0; NaN stays NaN.
 */
// @ts-ignore: decorator
@inline export function exp4(x: v128): v128 {
  const below = f32x4.lt(x, k(0));
  x = f32x4.min(f32x4.max(x, k(0)), k(1));
  const n = f32x4.nearest(f32x4.mul(x, k(2)));
  const r = f32x4.sub(f32x4.sub(x, f32x4.mul(n, k(3))), f32x4.mul(n, k(4)));
  const r2 = f32x4.mul(r, r), r4 = f32x4.mul(r2, r2);
  const q01 = f32x4.add(k(5), r), q23 = madd(r, k(7), k(6)), q45 = madd(r, k(9), k(8));
  const p = madd(r4, madd(r2, k(10), q45), madd(r2, q23, q01));
  const scale = i32x4.shl(i32x4.add(i32x4.trunc_sat_f32x4_s(n), i32x4.splat(127)), 23);
  return v128.andnot(f32x4.mul(p, scale), below);
}

/** The first `count` (< 4) floats at p in the low lanes, zeros above: a tail that must not read past the array. */
// @ts-ignore: decorator
@inline export function loadTail(p: usize, count: i32): v128 {
  let v = f32x4.splat(0);
  v = f32x4.replace_lane(v, 0, load<f32>(p));
  if (count > 1) v = f32x4.replace_lane(v, 1, load<f32>(p, 4));
  if (count > 2) v = f32x4.replace_lane(v, 2, load<f32>(p, 8));
  return v;
}

// @ts-ignore: decorator
@inline export function storeTail(p: usize, v: v128, count: i32): void {
  store<f32>(p, f32x4.extract_lane(v, 0));
  if (count > 1) store<f32>(p, f32x4.extract_lane(v, 1), 4);
  if (count > 2) store<f32>(p, f32x4.extract_lane(v, 2), 8);
}

