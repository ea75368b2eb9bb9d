// Row kernels over row-major [rows × cols] float32 matrices. Pointers are byte offsets.
import { exp4, loadTail, storeTail } from './vector-math';

// Rows are walked four lanes at a time; a row's last one to three values go through
// loadTail/storeTail, and lanes beyond the row never enter a sum or a maximum.

// @ts-ignore: decorator
@inline function rowMax(xr: usize, cols: i32): f32 {
  let m = f32x4.splat(-Infinity);
  let c = 0;
  for (; c + 4 <= cols; c += 4) m = f32x4.max(m, v128.load(xr + <usize>(c * 4)));
  let max = Mathf.max(Mathf.max(f32x4.extract_lane(m, 0), f32x4.extract_lane(m, 1)),
    Mathf.max(f32x4.extract_lane(m, 2), f32x4.extract_lane(m, 3)));
  for (; c < cols; c++) max = Mathf.max(max, load<f32>(xr + <usize>(c * 4)));
  return max;
}

// @ts-ignore: decorator
@inline function laneSum(v: v128, count: i32): f32 {
  let sum = f32x4.extract_lane(v, 0);
  if (count > 1) sum += f32x4.extract_lane(v, 1);
  if (count > 2) sum += f32x4.extract_lane(v, 2);
  if (count > 3) sum += f32x4.extract_lane(v, 3);
  return sum;
}

/** Σ_c e^(x[c] − max) over a row, and each term into `or` when `write`. */
// @ts-ignore: decorator
@inline function expRow(xr: usize, or: usize, cols: i32, max: f32, write: bool): f32 {
  const mv = f32x4.splat(max);
  let acc = f32x4.splat(0);
  let c = 0;
  for (; c + 4 <= cols; c += 4) {
    const e = exp4(f32x4.sub(v128.load(xr + <usize>(c * 4)), mv));
    if (write) v128.store(or + <usize>(c * 4), e);
    acc = f32x4.add(acc, e);
  }
  let sum = laneSum(acc, 4);
  if (c < cols) {
    const e = exp4(f32x4.sub(loadTail(xr + <usize>(c * 4), cols - c), mv));
    if (write) storeTail(or + <usize>(c * 4), e, cols - c);
    sum += laneSum(e, cols - c);
  }
  return sum;
}

/**
 * out[r] = softmax(x[r]), max-subtracted so large logits do not overflow; out may alias x. With
 * lse ≠ 0, also lse[r] = log Σ_c exp(x[r, c]), from the same maximum and sum.
 */
export function softmaxRows(x: usize, out: usize, lse: usize, rows: i32, cols: i32): void {
  for (let r = 0; r < rows; r++) {
    const xr = x + <usize>(r * cols * 4);
    const or = out + <usize>(r * cols * 4);
    const max = rowMax(xr, cols);
    const sum = expRow(xr, or, cols, max, true);
    if (lse) store<f32>(lse + <usize>(r * 4), max + Mathf.log(sum));
    const inv = f32x4.splat(<f32>1 / sum);
    let c = 0;
    for (; c + 4 <= cols; c += 4) v128.store(or + <usize>(c * 4), f32x4.mul(v128.load(or + <usize>(c * 4)), inv));
    if (c < cols) storeTail(or + <usize>(c * 4), f32x4.mul(loadTail(or + <usize>(c * 4), cols - c), inv), cols - c);
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

// @ts-ignore: decorator
@inline function scatter(src: usize, index: usize, scale: usize, out: usize, count: i32, cols: i32, add: bool): void {
  for (let i = 0; i < count; i++) {
    const row = load<i32>(index + <usize>(i * 4));
    const s: f32 = scale ? load<f32>(scale + <usize>(i * 4)) : 1;
    scaledCopyRow(src + <usize>(i * cols * 4), out + <usize>(row * cols * 4), cols, s, add);
  }
}

/** out[index[i]] += scale[i] · src[i] for i < count; scale = 0 means 1. Repeated indices add up. */
export function scatterAddRows(src: usize, index: usize, scale: usize, out: usize, count: i32, cols: i32): void {
  scatter(src, index, scale, out, count, cols, true);
}

/** out[index[i]] = scale[i] · src[i] for i < count; scale = 0 means 1. Other rows are untouched. */
export function scatterRows(src: usize, index: usize, scale: usize, out: usize, count: i32, cols: i32): void {
  scatter(src, index, scale, out, count, cols, false);
}

/** out = scale · p ⊙ (dp − Σ_c dp·p), row by row: softmax's backward. out may alias dp. */
export function softmaxBackwardRows(p: usize, dp: usize, out: usize, rows: i32, cols: i32, scale: f32): void {
  const sv = f32x4.splat(scale);
  for (let r = 0; r < rows; r++) {
    const o = <usize>(r * cols * 4);
    let acc = f32x4.splat(0);
    let c = 0;
    for (; c + 4 <= cols; c += 4) acc = f32x4.add(acc, f32x4.mul(v128.load(dp + o + <usize>(c * 4)), v128.load(p + o + <usize>(c * 4))));
    let dot = laneSum(acc, 4);
    if (c < cols) dot += laneSum(f32x4.mul(loadTail(dp + o + <usize>(c * 4), cols - c), loadTail(p + o + <usize>(c * 4), cols - c)), cols - c);
    const dv = f32x4.splat(dot);
    for (c = 0; c + 4 <= cols; c += 4) {
      const at = o + <usize>(c * 4);
      v128.store(out + at, f32x4.mul(f32x4.mul(sv, v128.load(p + at)), f32x4.sub(v128.load(dp + at), dv)));
    }
    if (c < cols) {
      const at = o + <usize>(c * 4);
      storeTail(out + at, f32x4.mul(f32x4.mul(sv, loadTail(p + at, cols - c)), f32x4.sub(loadTail(dp + at, cols - c), dv)), cols - c);
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
