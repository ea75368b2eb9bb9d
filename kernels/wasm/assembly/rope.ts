// Rotary position embedding in Hugging Face's half-split form (rotate_half), in place.

/**
 * Each of `rows` rows (at `stride` floats apart, position = row % time) holds `groups` blocks of
 * hd values; each block [x₁ | x₂] becomes [x₁·c − x₂·s | x₂·c + x₁·s] with c, s the position's
 * [time × hd/2] tables. `inverse` rotates back (s → −s): the transpose, for the backward.
 */
export function rope(x: usize, rows: i32, stride: i32, groups: i32, hd: i32, time: i32, cos: usize, sin: usize, inverse: bool): void {
  const half = hd >> 1;
  for (let r = 0; r < rows; r++) {
    const row = x + <usize>(r * stride * 4);
    const c = cos + <usize>((r % time) * half * 4), s = sin + <usize>((r % time) * half * 4);
    for (let g = 0; g < groups; g++) {
      const lo = row + <usize>(g * hd * 4), hi = lo + <usize>(half * 4);
      let i = 0;
      for (; i + 4 <= half; i += 4) {
        const o = <usize>(i * 4);
        const cv = v128.load(c + o);
        const sv = inverse ? f32x4.neg(v128.load(s + o)) : v128.load(s + o);
        const x1 = v128.load(lo + o), x2 = v128.load(hi + o);
        v128.store(lo + o, f32x4.sub(f32x4.mul(x1, cv), f32x4.mul(x2, sv)));
        v128.store(hi + o, f32x4.add(f32x4.mul(x2, cv), f32x4.mul(x1, sv)));
      }
      for (; i < half; i++) {
        const o = <usize>(i * 4);
        const cv = load<f32>(c + o), sv = inverse ? -load<f32>(s + o) : load<f32>(s + o);
        const x1 = load<f32>(lo + o), x2 = load<f32>(hi + o);
        store<f32>(lo + o, x1 * cv - x2 * sv);
        store<f32>(hi + o, x2 * cv + x1 * sv);
      }
    }
  }
}
