// T5's relative position bias. Attention scores get a learned bias per head and per bucket of
// the distance key − query: the nearest distances have a bucket each, farther ones share
// logarithmically wider buckets up to maxDistance, and everything beyond shares the last. The
// encoder's buckets are bidirectional (half for keys after the query), the decoder's causal. Block
// 0 of each stack owns the table [buckets × heads]; every block of the stack adds the same bias.
const f32 = Math.fround;

/**
 * The bucket of distance `rp` = key position − query position, exactly as transformers computes
 * it: the logarithm in float32, truncated toward zero (so the float32 roundings are emulated).
 */
export function relativeBucket(rp: number, bidirectional: boolean, buckets: number, maxDistance: number): number {
  let bucket = 0, n = buckets, distance: number;
  if (bidirectional) {
    n = Math.floor(n / 2);
    if (rp > 0) bucket += n;
    distance = Math.abs(rp);
  } else {
    distance = -Math.min(rp, 0); // keys after the query are masked anyway: bucket 0
  }
  const exact = Math.floor(n / 2);
  if (distance < exact) return bucket + distance;
  const log = f32(f32(f32(Math.log(f32(distance / exact))) / f32(Math.log(maxDistance / exact))) * (n - exact));
  return bucket + Math.min(exact + Math.trunc(log), n - 1);
}

/** Buckets of queries at positions offset … offset+queries−1 against keys 0 … keys−1: [queries × keys]. */
export function bucketTable(queries: number, keys: number, offset: number, bidirectional: boolean, buckets: number, maxDistance: number): Int32Array {
  const out = new Int32Array(queries * keys);
  for (let i = 0; i < queries; i++) {
    for (let j = 0; j < keys; j++) out[i * keys + j] = relativeBucket(j - (i + offset), bidirectional, buckets, maxDistance);
  }
  return out;
}

/** The bias [heads × queries × keys] from the table weight [buckets × heads]. */
export function biasFromTable(weight: Float32Array, table: Int32Array, heads: number, out: Float32Array): void {
  const cells = table.length;
  for (let h = 0; h < heads; h++) for (let c = 0; c < cells; c++) out[h * cells + c] = weight[table[c]! * heads + h]!;
}

/** The table weight's gradient from the bias's, [heads × queries × keys]: each cell adds into its bucket. */
export function biasTableBackward(dBias: Float32Array, table: Int32Array, heads: number, dWeight: Float32Array): void {
  const cells = table.length;
  for (let h = 0; h < heads; h++) for (let c = 0; c < cells; c++) dWeight[table[c]! * heads + h]! += dBias[h * cells + c]!;
}
