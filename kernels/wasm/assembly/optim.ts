// The optimizer's elementwise work over every parameter, vectorised: it touches each weight once
// per step, and the experts multiply the weight count.

/** Σ x², accumulated per lane in float32 within blocks of 1024 values and across blocks in float64. */
export function sumSquares(x: usize, n: i32): f64 {
  let total: f64 = 0;
  let i = 0;
  while (i + 4 <= n) {
    let acc = f32x4.splat(0);
    const end = min(n - 3, i + 1024);
    for (; i < end; i += 4) {
      const v = v128.load(x + <usize>(i * 4));
      acc = f32x4.add(acc, f32x4.mul(v, v));
    }
    total += <f64>f32x4.extract_lane(acc, 0) + <f64>f32x4.extract_lane(acc, 1) +
      <f64>f32x4.extract_lane(acc, 2) + <f64>f32x4.extract_lane(acc, 3);
  }
  for (; i < n; i++) {
    const v = <f64>load<f32>(x + <usize>(i * 4));
    total += v * v;
  }
  return total;
}

/**
 * AdamW on n weights: g' = g·clip; m = β₁m + (1−β₁)g'; v = β₂v + (1−β₂)g'²;
 * w = w·decay − lr·(m/c₁)/(√(v/c₂) + ε), with c the bias corrections and decay = 1 − lr·wd.
 */
export function adamw(w: usize, g: usize, m: usize, v: usize, n: i32, lr: f32, beta1: f32, beta2: f32,
  correct1: f32, correct2: f32, decay: f32, clip: f32, eps: f32): void {
  const b1 = f32x4.splat(beta1), b2 = f32x4.splat(beta2), a1 = f32x4.splat(1 - beta1), a2 = f32x4.splat(1 - beta2);
  const c1 = f32x4.splat(1 / correct1), c2 = f32x4.splat(1 / correct2), lrv = f32x4.splat(lr);
  const dv = f32x4.splat(decay), cv = f32x4.splat(clip), ev = f32x4.splat(eps);
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>(i * 4);
    const gi = f32x4.mul(v128.load(g + o), cv);
    const mi = f32x4.add(f32x4.mul(b1, v128.load(m + o)), f32x4.mul(a1, gi));
    const vi = f32x4.add(f32x4.mul(b2, v128.load(v + o)), f32x4.mul(a2, f32x4.mul(gi, gi)));
    v128.store(m + o, mi);
    v128.store(v + o, vi);
    const step = f32x4.div(f32x4.mul(mi, c1), f32x4.add(f32x4.sqrt(f32x4.mul(vi, c2)), ev));
    v128.store(w + o, f32x4.sub(f32x4.mul(v128.load(w + o), dv), f32x4.mul(lrv, step)));
  }
  for (; i < n; i++) {
    const o = <usize>(i * 4);
    const gi = load<f32>(g + o) * clip;
    const mi = beta1 * load<f32>(m + o) + (1 - beta1) * gi;
    const vi = beta2 * load<f32>(v + o) + (1 - beta2) * gi * gi;
    store<f32>(m + o, mi);
    store<f32>(v + o, vi);
    store<f32>(w + o, load<f32>(w + o) * decay - lr * (mi / correct1) / (Mathf.sqrt(vi / correct2) + eps));
  }
}
