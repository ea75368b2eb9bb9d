// GEMM for a handful of rows (m ≤ 4: a decoder step, one token per sequence), without packing.
//
// gemm() packs op(B), the weight, before multiplying it; for a few rows that copy is most of the
// work, and the product is bound by memory bandwidth. Here op(B) is read in place, once:
//   nn, tn (B's rows are op(B)'s rows): streamed row after row, each row's values multiplied into
//     accumulators kept in the scratch (1024 columns at a time, in L1), so B is read sequentially;
//   nt (B stored [n×k]): 16 (or 8) of its rows four values at a time, transposed in registers.
// Walking down a column strip of B instead would thrash the caches: B's rows are a power-of-two
// multiple of 4 KiB apart in the models' shapes, so they all fall into the same cache sets.
//
// Each output is summed in gemm()'s exact order: p ascending with the same (fused or not)
// multiply-add, restarted every KC values and added to C block by block. So the bits equal
// gemm()'s for the same row computed among any number of rows: which path ran never shows.
import { loadTail, madd, storeTail } from './vector-math';

// @ts-ignore: decorator
@inline const KC: i32 = 256; // gemm()'s depth block: the sums restart at the same places
// @ts-ignore: decorator
@inline const NR: i32 = 8;

/** Rows at most this many take the thin path. */
export const THIN_ROWS: i32 = 4;

// @ts-ignore: decorator
@inline const CHUNK: i32 = 1024; // accumulator columns per row: 4 KiB, so four rows stay in L1

/**
 * op(A)(i, p) at a + 4·(i·asi + p·asp); B as gemm() stores it (`transposedB`: the nt form);
 * m ≤ THIN_ROWS; `scratch` holds THIN_ROWS · CHUNK floats (gemm()'s packing scratch is far larger).
 */
export function gemmThin(m: i32, n: i32, k: i32, a: usize, asi: i32, asp: i32, b: usize, ldb: i32, transposedB: bool,
  c: usize, ldc: i32, accumulate: i32, scratch: usize): void {
  if (!transposedB) {
    streamRows(m, n, k, a, asi, asp, b, ldb, c, ldc, accumulate, scratch);
    return;
  }
  // Rows beyond m repeat the last one: computed, never stored, and never read past A.
  const a0 = a, a1 = a + <usize>(min(1, m - 1) * asi * 4), a2 = a + <usize>(min(2, m - 1) * asi * 4), a3 = a + <usize>(min(3, m - 1) * asi * 4);
  const step = <usize>(asp * 4);
  // One row: 16 columns at a time, so that four sums are in flight.
  const j = m == 1 ? oneRowNt(n, k, a, step, b, ldb, c, accumulate) : 0;
  for (let j0 = j; j0 < n; j0 += NR) {
    const cols = min(NR, n - j0);
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = min(KC, k - p0);
      const overwrite = p0 == 0 && !accumulate;
      let c00 = f32x4.splat(0), c01 = f32x4.splat(0), c10 = f32x4.splat(0), c11 = f32x4.splat(0);
      let c20 = f32x4.splat(0), c21 = f32x4.splat(0), c30 = f32x4.splat(0), c31 = f32x4.splat(0);
      let pa = <usize>(p0) * step;
      // Column j of op(B) is row j of B: eight rows, four values each, transposed to four
      // vectors of eight columns, one per p.
      const row = <usize>(ldb * 4), base = b + <usize>((j0 * ldb + p0) * 4);
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const at = base + <usize>(p * 4);
        const r0 = loadRow(at, row, 0, cols), r1 = loadRow(at, row, 1, cols), r2 = loadRow(at, row, 2, cols), r3 = loadRow(at, row, 3, cols);
        const r4 = loadRow(at, row, 4, cols), r5 = loadRow(at, row, 5, cols), r6 = loadRow(at, row, 6, cols), r7 = loadRow(at, row, 7, cols);
        const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5), t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        const t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5), t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        const u0 = i32x4.shuffle(r4, r5, 0, 4, 1, 5), u1 = i32x4.shuffle(r4, r5, 2, 6, 3, 7);
        const u2 = i32x4.shuffle(r6, r7, 0, 4, 1, 5), u3 = i32x4.shuffle(r6, r7, 2, 6, 3, 7);
        for (let q = 0; q < 4; q++) {
          // Column vectors of p + q: lanes are rows j0 … j0+3, then j0+4 … j0+7.
          const b0 = q == 0 ? i32x4.shuffle(t0, t2, 0, 1, 4, 5) : q == 1 ? i32x4.shuffle(t0, t2, 2, 3, 6, 7)
            : q == 2 ? i32x4.shuffle(t1, t3, 0, 1, 4, 5) : i32x4.shuffle(t1, t3, 2, 3, 6, 7);
          const b1 = q == 0 ? i32x4.shuffle(u0, u2, 0, 1, 4, 5) : q == 1 ? i32x4.shuffle(u0, u2, 2, 3, 6, 7)
            : q == 2 ? i32x4.shuffle(u1, u3, 0, 1, 4, 5) : i32x4.shuffle(u1, u3, 2, 3, 6, 7);
          let x = v128.load32_splat(a0 + pa);
          c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
          if (m > 1) {
            x = v128.load32_splat(a1 + pa); c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
            x = v128.load32_splat(a2 + pa); c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
            x = v128.load32_splat(a3 + pa); c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
          }
          pa += step;
        }
      }
      for (; p < kc; p++) {
        const at = base + <usize>(p * 4);
        const b0 = gatherColumn(at, row, 0, cols), b1 = gatherColumn(at, row, 4, cols);
        let x = v128.load32_splat(a0 + pa);
        c00 = madd(x, b0, c00); c01 = madd(x, b1, c01);
        if (m > 1) {
          x = v128.load32_splat(a1 + pa); c10 = madd(x, b0, c10); c11 = madd(x, b1, c11);
          x = v128.load32_splat(a2 + pa); c20 = madd(x, b0, c20); c21 = madd(x, b1, c21);
          x = v128.load32_splat(a3 + pa); c30 = madd(x, b0, c30); c31 = madd(x, b1, c31);
        }
        pa += step;
      }
      const at = c + <usize>(j0 * 4), rowC = <usize>(ldc * 4);
      storeRow(at, c00, c01, cols, overwrite);
      if (m > 1) storeRow(at + rowC, c10, c11, cols, overwrite);
      if (m > 2) storeRow(at + 2 * rowC, c20, c21, cols, overwrite);
      if (m > 3) storeRow(at + 3 * rowC, c30, c31, cols, overwrite);
    }
  }
}

/**
 * nn and tn: for each KC block and chunk of columns, every row of B in turn times each A row's
 * value, into accumulators in the scratch; then into C. B is read row after row, once.
 */
function streamRows(m: i32, n: i32, k: i32, a: usize, asi: i32, asp: i32, b: usize, ldb: i32, c: usize, ldc: i32,
  accumulate: i32, acc: usize): void {
  for (let j0 = 0; j0 < n; j0 += CHUNK) {
    const w = min(CHUNK, n - j0), whole = w & ~15, vectors = (w + 3) >> 2, tail = w & 3;
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = min(KC, k - p0);
      memory.fill(acc, 0, <usize>(m * CHUNK * 4));
      for (let p = p0; p < p0 + kc; p++) {
        const row = b + <usize>((p * ldb + j0) * 4);
        for (let r = 0; r < m; r++) {
          const x = v128.load32_splat(a + <usize>((r * asi + p * asp) * 4)), s = acc + <usize>(r * CHUNK * 4);
          let v = 0;
          for (; v < whole; v += 16) { // four independent vectors per turn
            const o = <usize>(v * 4);
            v128.store(s + o, madd(x, v128.load(row + o), v128.load(s + o)));
            v128.store(s + o, madd(x, v128.load(row + o, 16), v128.load(s + o, 16)), 16);
            v128.store(s + o, madd(x, v128.load(row + o, 32), v128.load(s + o, 32)), 32);
            v128.store(s + o, madd(x, v128.load(row + o, 48), v128.load(s + o, 48)), 48);
          }
          for (; v + 4 <= w; v += 4) v128.store(s + <usize>(v * 4), madd(x, v128.load(row + <usize>(v * 4)), v128.load(s + <usize>(v * 4))));
          if (tail) v128.store(s + <usize>(v * 4), madd(x, loadTail(row + <usize>(v * 4), tail), v128.load(s + <usize>(v * 4))));
        }
      }
      const overwrite = p0 == 0 && !accumulate;
      for (let r = 0; r < m; r++) {
        const s = acc + <usize>(r * CHUNK * 4), out = c + <usize>((r * ldc + j0) * 4);
        for (let v = 0; v < vectors; v++) {
          const o = <usize>(v * 16), last = v == vectors - 1 && tail > 0;
          const sum = v128.load(s + o);
          if (last) storeTail(out + o, overwrite ? sum : f32x4.add(sum, loadTail(out + o, tail)), tail);
          else v128.store(out + o, overwrite ? sum : f32x4.add(sum, v128.load(out + o)));
        }
      }
    }
  }
}

/** m = 1, nt (column j of op(B) is row j of B): whole strips of 16 columns, two groups of eight rows transposed in registers. */
function oneRowNt(n: i32, k: i32, a: usize, step: usize, b: usize, ldb: i32, c: usize, accumulate: i32): i32 {
  const row = <usize>(ldb * 4);
  let j0 = 0;
  for (; j0 + 16 <= n; j0 += 16) {
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = min(KC, k - p0);
      let s0 = f32x4.splat(0), s1 = f32x4.splat(0), s2 = f32x4.splat(0), s3 = f32x4.splat(0);
      let pa = a + <usize>(p0) * step;
      const base = b + <usize>((j0 * ldb + p0) * 4);
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const x0 = v128.load32_splat(pa), x1 = v128.load32_splat(pa + step), x2 = v128.load32_splat(pa + 2 * step), x3 = v128.load32_splat(pa + 3 * step);
        const at = base + <usize>(p * 4);
        // Rows 0–7: after the transpose, lanes are rows and each vector one p.
        let r0 = v128.load(at), r1 = v128.load(at + row), r2 = v128.load(at + 2 * row), r3 = v128.load(at + 3 * row);
        let t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5), t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        let t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5), t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        s0 = madd(x0, i32x4.shuffle(t0, t2, 0, 1, 4, 5), s0); s0 = madd(x1, i32x4.shuffle(t0, t2, 2, 3, 6, 7), s0);
        s0 = madd(x2, i32x4.shuffle(t1, t3, 0, 1, 4, 5), s0); s0 = madd(x3, i32x4.shuffle(t1, t3, 2, 3, 6, 7), s0);
        r0 = v128.load(at + 4 * row); r1 = v128.load(at + 5 * row); r2 = v128.load(at + 6 * row); r3 = v128.load(at + 7 * row);
        t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5); t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5); t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        s1 = madd(x0, i32x4.shuffle(t0, t2, 0, 1, 4, 5), s1); s1 = madd(x1, i32x4.shuffle(t0, t2, 2, 3, 6, 7), s1);
        s1 = madd(x2, i32x4.shuffle(t1, t3, 0, 1, 4, 5), s1); s1 = madd(x3, i32x4.shuffle(t1, t3, 2, 3, 6, 7), s1);
        r0 = v128.load(at + 8 * row); r1 = v128.load(at + 9 * row); r2 = v128.load(at + 10 * row); r3 = v128.load(at + 11 * row);
        t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5); t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5); t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        s2 = madd(x0, i32x4.shuffle(t0, t2, 0, 1, 4, 5), s2); s2 = madd(x1, i32x4.shuffle(t0, t2, 2, 3, 6, 7), s2);
        s2 = madd(x2, i32x4.shuffle(t1, t3, 0, 1, 4, 5), s2); s2 = madd(x3, i32x4.shuffle(t1, t3, 2, 3, 6, 7), s2);
        r0 = v128.load(at + 12 * row); r1 = v128.load(at + 13 * row); r2 = v128.load(at + 14 * row); r3 = v128.load(at + 15 * row);
        t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5); t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
        t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5); t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
        s3 = madd(x0, i32x4.shuffle(t0, t2, 0, 1, 4, 5), s3); s3 = madd(x1, i32x4.shuffle(t0, t2, 2, 3, 6, 7), s3);
        s3 = madd(x2, i32x4.shuffle(t1, t3, 0, 1, 4, 5), s3); s3 = madd(x3, i32x4.shuffle(t1, t3, 2, 3, 6, 7), s3);
        pa += 4 * step;
      }
      for (; p < kc; p++) {
        const x = v128.load32_splat(pa), at = base + <usize>(p * 4);
        s0 = madd(x, gatherColumn(at, row, 0, 16), s0); s1 = madd(x, gatherColumn(at, row, 4, 16), s1);
        s2 = madd(x, gatherColumn(at, row, 8, 16), s2); s3 = madd(x, gatherColumn(at, row, 12, 16), s3);
        pa += step;
      }
      const overwrite = p0 == 0 && !accumulate, at = c + <usize>(j0 * 4);
      storeRow(at, s0, s1, NR, overwrite); storeRow(at + 32, s2, s3, NR, overwrite);
    }
  }
  return j0;
}

/** Four values of row r of the strip (zeros for a row past the edge). */
// @ts-ignore: decorator
@inline function loadRow(at: usize, row: usize, r: i32, cols: i32): v128 {
  return r < cols ? v128.load(at + <usize>(r) * row) : f32x4.splat(0);
}

/** One value of each of rows first … first+3 of the strip: column p of op(B), for a depth tail. */
// @ts-ignore: decorator
@inline function gatherColumn(at: usize, row: usize, first: i32, cols: i32): v128 {
  let v = f32x4.splat(0);
  for (let l = 0; l < 4; l++) if (first + l < cols) v = setLane(v, l, load<f32>(at + <usize>(first + l) * row));
  return v;
}

// @ts-ignore: decorator
@inline function setLane(v: v128, lane: i32, x: f32): v128 {
  if (lane == 0) return f32x4.replace_lane(v, 0, x);
  if (lane == 1) return f32x4.replace_lane(v, 1, x);
  if (lane == 2) return f32x4.replace_lane(v, 2, x);
  return f32x4.replace_lane(v, 3, x);
}

/** C's row = sum, or C's row + sum (gemm()'s order for an accumulated block), for the strip's columns. */
// @ts-ignore: decorator
@inline function storeRow(at: usize, s0: v128, s1: v128, cols: i32, overwrite: bool): void {
  if (cols == NR) {
    v128.store(at, overwrite ? s0 : f32x4.add(s0, v128.load(at)));
    v128.store(at, overwrite ? s1 : f32x4.add(s1, v128.load(at, 16)), 16);
    return;
  }
  for (let q = 0; q < cols; q++) {
    const v = q < 4 ? lane(s0, q) : lane(s1, q - 4), dst = at + <usize>(q * 4);
    store<f32>(dst, overwrite ? v : load<f32>(dst) + v);
  }
}

// @ts-ignore: decorator
@inline function lane(v: v128, l: i32): f32 {
  if (l == 0) return f32x4.extract_lane(v, 0);
  if (l == 1) return f32x4.extract_lane(v, 1);
  if (l == 2) return f32x4.extract_lane(v, 2);
  return f32x4.extract_lane(v, 3);
}
