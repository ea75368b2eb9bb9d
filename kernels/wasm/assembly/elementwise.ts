// Elementwise arithmetic over n floats (residual sums, partial-sum reductions, dropout masks).
// Pointers are byte offsets; out may alias either input.

// @ts-ignore: decorator
@inline function elementwise(x: usize, y: usize, out: usize, n: i32, multiply: bool): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>(i * 4);
    const a = v128.load(x + o), b = v128.load(y + o);
    v128.store(out + o, multiply ? f32x4.mul(a, b) : f32x4.add(a, b));
  }
  for (; i < n; i++) {
    const o = <usize>(i * 4);
    const a = load<f32>(x + o), b = load<f32>(y + o);
    store<f32>(out + o, multiply ? a * b : a + b);
  }
}

export function add(x: usize, y: usize, out: usize, n: i32): void {
  elementwise(x, y, out, n, false);
}

export function multiply(x: usize, y: usize, out: usize, n: i32): void {
  elementwise(x, y, out, n, true);
}
