// Elementwise arithmetic over n floats (residual sums, partial-sum reductions, dropout masks), and
// a bias added to each row or its gradient summed over them.
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

/** x[r·ld + j] += bias[j] for r < rows, j < cols. */
export function addBias(x: usize, bias: usize, rows: i32, cols: i32, ld: i32): void {
  for (let r = 0; r < rows; r++) elementwise(x + <usize>(r * ld * 4), bias, x + <usize>(r * ld * 4), cols, false);
}

/** dBias[j] += dy[r·ld + j], row after row. */
export function biasGrad(dy: usize, rows: i32, cols: i32, ld: i32, dBias: usize): void {
  for (let r = 0; r < rows; r++) elementwise(dBias, dy + <usize>(r * ld * 4), dBias, cols, false);
}
