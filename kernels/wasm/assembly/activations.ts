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

/** erf(x), from erfc's Chebyshev fit (Numerical Recipes, 6.2): relative error of erfc < 1.2e-7. */
function erf(x: f64): f64 {
  const z = Math.abs(x);
  const t = 1 / (1 + 0.5 * z);
  const erfc = t * Math.exp(-z * z - 1.26551223 + t * (1.00002368 + t * (0.37409196 + t * (0.09678418 +
    t * (-0.18628806 + t * (0.27886807 + t * (-1.13520398 + t * (1.48851587 + t * (-0.82215223 +
    t * 0.17087277)))))))));
  return x >= 0 ? 1 - erfc : erfc - 1;
}

const SQRT1_2: f64 = 0.7071067811865476;
const INV_SQRT_2PI: f64 = 0.3989422804014327;

/** gelu(x) = x·Φ(x), the exact (erf) form. */
export function gelu(x: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>(i * 4);
    const v = <f64>load<f32>(x + o);
    store<f32>(out + o, <f32>(0.5 * v * (1 + erf(v * SQRT1_2))));
  }
}

/** d gelu/dx = Φ(x) + x·φ(x). */
export function geluBackward(x: usize, dy: usize, dx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>(i * 4);
    const v = <f64>load<f32>(x + o);
    const d = 0.5 * (1 + erf(v * SQRT1_2)) + v * INV_SQRT_2PI * Math.exp(-0.5 * v * v);
    store<f32>(dx + o, <f32>(<f64>load<f32>(dy + o) * d));
  }
}

// @ts-ignore: decorator
@inline function sigmoid(v: f32): f32 {
  return <f32>1 / (<f32>1 + Mathf.exp(-v));
}

/** silu(x) = x·σ(x). */
export function silu(x: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>(i * 4);
    const v = load<f32>(x + o);
    store<f32>(out + o, v * sigmoid(v));
  }
}

/** d silu/dx = σ(x)·(1 + x·(1 − σ(x))). */
export function siluBackward(x: usize, dy: usize, dx: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>(i * 4);
    const v = load<f32>(x + o);
    const s = sigmoid(v);
    store<f32>(dx + o, load<f32>(dy + o) * s * (1 + v * (1 - s)));
  }
}

/** SwiGLU's hidden layer: h = silu(g) ⊙ u. */
export function swiglu(g: usize, u: usize, out: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>(i * 4);
    const v = load<f32>(g + o);
    store<f32>(out + o, v * sigmoid(v) * load<f32>(u + o));
  }
}

/** Backward of h = silu(g) ⊙ u: dg = dh·u·silu'(g), du = dh·silu(g). dg/du may alias dh. */
export function swigluBackward(g: usize, u: usize, dh: usize, dg: usize, du: usize, n: i32): void {
  for (let i = 0; i < n; i++) {
    const o = <usize>(i * 4);
    const v = load<f32>(g + o);
    const uv = load<f32>(u + o);
    const d = load<f32>(dh + o);
    const s = sigmoid(v);
    store<f32>(dg + o, d * uv * s * (1 + v * (1 - s)));
    store<f32>(du + o, d * v * s);
  }
}
