// Row normalisations over [rows × cols] and the attention's row softmax helpers, vectorised.
// cols must be a multiple of 4 (the model's width is); the backends check.

// @ts-ignore: decorator
@inline function hsum(v: v128): f32 {
  return f32x4.extract_lane(v, 0) + f32x4.extract_lane(v, 1) + f32x4.extract_lane(v, 2) + f32x4.extract_lane(v, 3);
}

/** out = (x − mean)·rstd·gain (+ bias); keeps mean and rstd per row. bias = 0: none. */
export function layerNorm(x: usize, gain: usize, bias: usize, out: usize, rstd: usize, mean: usize, rows: i32, cols: i32, eps: f32): void {
  const inv = <f32>1 / <f32>cols;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>(r * cols * 4), or = out + <usize>(r * cols * 4);
    let acc = f32x4.splat(0);
    for (let c = 0; c < cols; c += 4) acc = f32x4.add(acc, v128.load(xr + <usize>(c * 4)));
    const m = hsum(acc) * inv;
    const mv = f32x4.splat(m);
    acc = f32x4.splat(0);
    for (let c = 0; c < cols; c += 4) {
      const e = f32x4.sub(v128.load(xr + <usize>(c * 4)), mv);
      acc = f32x4.add(acc, f32x4.mul(e, e));
    }
    const s = <f32>1 / Mathf.sqrt(hsum(acc) * inv + eps);
    store<f32>(mean + <usize>(r * 4), m);
    store<f32>(rstd + <usize>(r * 4), s);
    const sv = f32x4.splat(s);
    for (let c = 0; c < cols; c += 4) {
      const o = <usize>(c * 4);
      let y = f32x4.mul(f32x4.mul(f32x4.sub(v128.load(xr + o), mv), sv), v128.load(gain + o));
      if (bias) y = f32x4.add(y, v128.load(bias + o));
      v128.store(or + o, y);
    }
  }
}

/** dx = s·(g·dy − mean(g·dy) − x̂·mean(g·dy·x̂)); dGain += Σ dy·x̂, dBias += Σ dy (bias = 0: none). */
export function layerNormBackward(x: usize, gain: usize, rstd: usize, mean: usize, dy: usize, dx: usize, dGain: usize,
  dBias: usize, rows: i32, cols: i32): void {
  const inv = <f32>1 / <f32>cols;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>(r * cols * 4), dyr = dy + <usize>(r * cols * 4), dxr = dx + <usize>(r * cols * 4);
    const mv = f32x4.splat(load<f32>(mean + <usize>(r * 4))), sv = f32x4.splat(load<f32>(rstd + <usize>(r * 4)));
    let sumG = f32x4.splat(0), sumGX = f32x4.splat(0);
    for (let c = 0; c < cols; c += 4) {
      const o = <usize>(c * 4);
      const xh = f32x4.mul(f32x4.sub(v128.load(xr + o), mv), sv);
      const d = v128.load(dyr + o);
      const gdy = f32x4.mul(v128.load(gain + o), d);
      sumG = f32x4.add(sumG, gdy);
      sumGX = f32x4.add(sumGX, f32x4.mul(gdy, xh));
      v128.store(dGain + o, f32x4.add(v128.load(dGain + o), f32x4.mul(d, xh)));
      if (dBias) v128.store(dBias + o, f32x4.add(v128.load(dBias + o), d));
    }
    const a = f32x4.splat(hsum(sumG) * inv), b = f32x4.splat(hsum(sumGX) * inv);
    for (let c = 0; c < cols; c += 4) {
      const o = <usize>(c * 4);
      const xh = f32x4.mul(f32x4.sub(v128.load(xr + o), mv), sv);
      const gdy = f32x4.mul(v128.load(gain + o), v128.load(dyr + o));
      v128.store(dxr + o, f32x4.mul(sv, f32x4.sub(f32x4.sub(gdy, a), f32x4.mul(xh, b))));
    }
  }
}

/** out = x·rstd·gain, rstd = (mean x² + ε)^(−1/2) kept per row. */
export function rmsNorm(x: usize, gain: usize, out: usize, rstd: usize, rows: i32, cols: i32, eps: f32): void {
  const inv = <f32>1 / <f32>cols;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>(r * cols * 4), or = out + <usize>(r * cols * 4);
    let acc = f32x4.splat(0);
    for (let c = 0; c < cols; c += 4) {
      const v = v128.load(xr + <usize>(c * 4));
      acc = f32x4.add(acc, f32x4.mul(v, v));
    }
    const s = <f32>1 / Mathf.sqrt(hsum(acc) * inv + eps);
    store<f32>(rstd + <usize>(r * 4), s);
    const sv = f32x4.splat(s);
    for (let c = 0; c < cols; c += 4) {
      const o = <usize>(c * 4);
      v128.store(or + o, f32x4.mul(f32x4.mul(v128.load(xr + o), sv), v128.load(gain + o)));
    }
  }
}

/** dx = s·g·dy − x·s³·mean(g·dy·x); dGain += Σ dy·x·s. */
export function rmsNormBackward(x: usize, gain: usize, rstd: usize, dy: usize, dx: usize, dGain: usize, rows: i32, cols: i32): void {
  const inv = <f32>1 / <f32>cols;
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>(r * cols * 4), dyr = dy + <usize>(r * cols * 4), dxr = dx + <usize>(r * cols * 4);
    const s = load<f32>(rstd + <usize>(r * 4)), sv = f32x4.splat(s);
    let dot = f32x4.splat(0);
    for (let c = 0; c < cols; c += 4) {
      const o = <usize>(c * 4);
      const v = v128.load(xr + o), d = v128.load(dyr + o);
      dot = f32x4.add(dot, f32x4.mul(f32x4.mul(v128.load(gain + o), d), v));
      v128.store(dGain + o, f32x4.add(v128.load(dGain + o), f32x4.mul(f32x4.mul(d, v), sv)));
    }
    const kv = f32x4.splat(s * s * s * hsum(dot) * inv);
    for (let c = 0; c < cols; c += 4) {
      const o = <usize>(c * 4);
      const g = f32x4.mul(f32x4.mul(v128.load(gain + o), v128.load(dyr + o)), sv);
      v128.store(dxr + o, f32x4.sub(g, f32x4.mul(v128.load(xr + o), kv)));
    }
  }
}
