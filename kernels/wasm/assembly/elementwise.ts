// Elementwise arithmetic over n floats (residual sums, partial-sum reductions, dropout masks).
// Pointers are byte offsets; out may alias either input.

export function add(x: usize, y: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>(i * 4);
    v128.store(out + o, f32x4.add(v128.load(x + o), v128.load(y + o)));
  }
  for (; i < n; i++) {
    const o = <usize>(i * 4);
    store<f32>(out + o, load<f32>(x + o) + load<f32>(y + o));
  }
}

export function multiply(x: usize, y: usize, out: usize, n: i32): void {
  let i = 0;
  for (; i + 4 <= n; i += 4) {
    const o = <usize>(i * 4);
    v128.store(out + o, f32x4.mul(v128.load(x + o), v128.load(y + o)));
  }
  for (; i < n; i++) {
    const o = <usize>(i * 4);
    store<f32>(out + o, load<f32>(x + o) * load<f32>(y + o));
  }
}
