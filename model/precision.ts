// bfloat16 rounding: expert weights stored for compute in bfloat16 keep float32 masters, and the
// compute copy holds the float32 values nearest to bfloat16 ones.

// Upper 16 bits of the float32 `bits` rounded to nearest even; NaN is kept NaN by setting the
// quiet bit, since truncating a NaN with only low mantissa bits would turn it into Infinity.
export function bf16Bits(bits: number): number {
  if ((bits & 0x7fffffff) > 0x7f800000) return ((bits >>> 16) | 0x0040) & 0xffff;
  return ((bits + 0x7fff + ((bits >>> 16) & 1)) >>> 16) & 0xffff;
}

export function toBF16Precision(values: Float32Array): void {
  const bits = new Uint32Array(values.buffer, values.byteOffset, values.length);
  for (let i = 0; i < bits.length; i++) bits[i] = bf16Bits(bits[i]!) << 16;
}

