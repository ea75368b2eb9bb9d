// Input checks at memory speed: a JavaScript loop over a layer's input costs more than routing it.

/** The index of the first NaN or ±Inf among n floats, or −1 when every one is finite. */
export function firstNonFinite(x: usize, n: i32): i32 {
  // v·0 is ±0 for finite v and NaN otherwise; OR-ing keeps a NaN's bits a NaN and ±0 a zero.
  const zero = f32x4.splat(0);
  let probe = zero;
  let i = 0;
  for (; i + 4 <= n; i += 4) probe = v128.or(probe, f32x4.mul(v128.load(x + <usize>(i * 4)), zero));
  let tail: f32 = 0;
  for (let j = i; j < n; j++) tail += load<f32>(x + <usize>(j * 4)) * 0;
  if (!v128.any_true(f32x4.ne(probe, probe)) && tail == tail) return -1;
  for (let j = 0; j < n; j++) if (!isFinite(load<f32>(x + <usize>(j * 4)))) return j;
  return -1;
}
