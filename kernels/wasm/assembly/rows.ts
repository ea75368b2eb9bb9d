// Row kernels over row-major [rows × cols] float32 matrices. Pointers are byte offsets.

/** out[r] = softmax(x[r]), max-subtracted so large logits do not overflow. out may alias x. */
export function softmaxRows(x: usize, out: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>(r * cols * 4);
    const or = out + <usize>(r * cols * 4);
    let max = load<f32>(xr);
    for (let c = 1; c < cols; c++) max = Mathf.max(max, load<f32>(xr + <usize>(c * 4)));
    let sum: f32 = 0;
    for (let c = 0; c < cols; c++) {
      const e = Mathf.exp(load<f32>(xr + <usize>(c * 4)) - max);
      store<f32>(or + <usize>(c * 4), e);
      sum += e;
    }
    const inv: f32 = <f32>1 / sum;
    for (let c = 0; c < cols; c++) store<f32>(or + <usize>(c * 4), load<f32>(or + <usize>(c * 4)) * inv);
  }
}

/** out[r] = log Σ_c exp(x[r, c]). */
export function logsumexpRows(x: usize, out: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>(r * cols * 4);
    let max = load<f32>(xr);
    for (let c = 1; c < cols; c++) max = Mathf.max(max, load<f32>(xr + <usize>(c * 4)));
    let sum: f32 = 0;
    for (let c = 0; c < cols; c++) sum += Mathf.exp(load<f32>(xr + <usize>(c * 4)) - max);
    store<f32>(out + <usize>(r * 4), max + Mathf.log(sum));
  }
}

// @ts-ignore: decorator
@inline function scaledCopyRow(src: usize, dst: usize, cols: i32, s: f32, add: bool): void {
  const sv = f32x4.splat(s);
  let c = 0;
  for (; c + 4 <= cols; c += 4) {
    const o = <usize>(c * 4);
    let v = f32x4.mul(v128.load(src + o), sv);
    if (add) v = f32x4.add(v, v128.load(dst + o));
    v128.store(dst + o, v);
  }
  for (; c < cols; c++) {
    const o = <usize>(c * 4);
    const v = load<f32>(src + o) * s;
    store<f32>(dst + o, add ? v + load<f32>(dst + o) : v);
  }
}

/** out[i] = scale[i] · src[index[i]] for i < count; scale = 0 means 1. index is int32. */
export function gatherRows(src: usize, index: usize, scale: usize, out: usize, count: i32, cols: i32): void {
  for (let i = 0; i < count; i++) {
    const row = load<i32>(index + <usize>(i * 4));
    const s: f32 = scale ? load<f32>(scale + <usize>(i * 4)) : 1;
    scaledCopyRow(src + <usize>(row * cols * 4), out + <usize>(i * cols * 4), cols, s, false);
  }
}

/** out[index[i]] += scale[i] · src[i] for i < count; scale = 0 means 1. Repeated indices add up. */
export function scatterAddRows(src: usize, index: usize, scale: usize, out: usize, count: i32, cols: i32): void {
  for (let i = 0; i < count; i++) {
    const row = load<i32>(index + <usize>(i * 4));
    const s: f32 = scale ? load<f32>(scale + <usize>(i * 4)) : 1;
    scaledCopyRow(src + <usize>(i * cols * 4), out + <usize>(row * cols * 4), cols, s, true);
  }
}

/** out = scale · p ⊙ (dp − Σ_c dp·p), row by row: softmax's backward. out may alias dp. */
export function softmaxBackwardRows(p: usize, dp: usize, out: usize, rows: i32, cols: i32, scale: f32): void {
  for (let r = 0; r < rows; r++) {
    const o = <usize>(r * cols * 4);
    let dot: f32 = 0;
    for (let c = 0; c < cols; c++) dot += load<f32>(dp + o + <usize>(c * 4)) * load<f32>(p + o + <usize>(c * 4));
    for (let c = 0; c < cols; c++) {
      const at = o + <usize>(c * 4);
      store<f32>(out + at, scale * load<f32>(p + at) * (load<f32>(dp + at) - dot));
    }
  }
}

/**
 * Causal attention scores: rows come in blocks of `cols` (one query per row, one key per column);
 * row i of a block keeps columns ≤ i, multiplied by `scale`, and the rest become −∞.
 */
export function causalMaskRows(s: usize, rows: i32, cols: i32, scale: f32): void {
  for (let r = 0; r < rows; r++) {
    const o = s + <usize>(r * cols * 4), i = r % cols;
    for (let c = 0; c <= i; c++) store<f32>(o + <usize>(c * 4), load<f32>(o + <usize>(c * 4)) * scale);
    for (let c = i + 1; c < cols; c++) store<f32>(o + <usize>(c * 4), -Infinity);
  }
}
