// Single-thread float32 GEMM, BLIS-style: C (+)= op(A)·op(B).
//
// Loop nest (outside in): NC columns of B, KC deep slices, MC rows of A, then MR×NR register
// tiles. Each KC×NC block of op(B) and MC×KC block of op(A) is copied ("packed") into the caller's
// scratch in the exact order the micro-kernel reads it, so the inner loop streams two contiguous
// arrays whatever the form, and the transposed forms cost only a different packing.
//
// All pointers are byte offsets into the (shared) memory; nothing here allocates.
import { THIN_ROWS, gemmThin } from './gemm-thin';

export const FORM_NN: i32 = 0; // A[m×k] · B[k×n]
export const FORM_NT: i32 = 1; // A[m×k] · B[n×k]ᵀ
export const FORM_TN: i32 = 2; // A[k×m]ᵀ · B[k×n]

// @ts-ignore: decorator
@inline const MR: i32 = 4;
// @ts-ignore: decorator
@inline const NR: i32 = 8;
// @ts-ignore: decorator
@inline const KC: i32 = 256;
// @ts-ignore: decorator
@inline const MC: i32 = 128;
// @ts-ignore: decorator
@inline const NC: i32 = 2048;

const PACK_B_BYTES: i32 = KC * NC * 4;
const PACK_A_BYTES: i32 = MC * KC * 4;
const TILE_BYTES: i32 = MR * NR * 4;

/** Bytes of scratch one thread needs for `gemm`: its packing buffers and an edge tile. */
export function gemmScratchBytes(): i32 {
  return PACK_B_BYTES + PACK_A_BYTES + TILE_BYTES;
}

// @ts-ignore: decorator
@inline function fma(a: v128, b: v128, c: v128): v128 {
  if (ASC_FEATURE_RELAXED_SIMD) return f32x4.relaxed_madd(a, b, c);
  return f32x4.add(f32x4.mul(a, b), c);
}

/** Stores the transpose of the 4×4 block with rows r0..r3: column c goes to dst + c·step. */
// @ts-ignore: decorator
@inline function transpose4(r0: v128, r1: v128, r2: v128, r3: v128, dst: usize, step: i32): void {
  const t0 = i32x4.shuffle(r0, r1, 0, 4, 1, 5), t1 = i32x4.shuffle(r0, r1, 2, 6, 3, 7);
  const t2 = i32x4.shuffle(r2, r3, 0, 4, 1, 5), t3 = i32x4.shuffle(r2, r3, 2, 6, 3, 7);
  v128.store(dst, i32x4.shuffle(t0, t2, 0, 1, 4, 5));
  v128.store(dst + <usize>step, i32x4.shuffle(t0, t2, 2, 3, 6, 7));
  v128.store(dst + <usize>(2 * step), i32x4.shuffle(t1, t3, 0, 1, 4, 5));
  v128.store(dst + <usize>(3 * step), i32x4.shuffle(t1, t3, 2, 3, 6, 7));
}

/**
 * Packs op(A)[i0 .. i0+mc, p0 .. p0+kc] into MR-row panels: panel r holds, for each p, the MR
 * values of rows r·MR .. r·MR+MR−1 side by side. Rows past m are zero so edge tiles need no branch.
 * op(A)(i, p) lives at a + 4·(i·si + p·sp).
 */
function packA(a: usize, si: i32, sp: i32, i0: i32, p0: i32, mc: i32, kc: i32, m: i32, dst: usize): void {
  for (let ir = 0; ir < mc; ir += MR) {
    const rows = min(MR, m - (i0 + ir));
    const panel = dst + <usize>(ir * kc * 4);
    if (rows == MR && si == 1) {
      // op(A) columns are contiguous (the tn form): one vector load per p.
      let src = a + <usize>(((i0 + ir) + p0 * sp) * 4);
      for (let p = 0; p < kc; p++) {
        v128.store(panel + <usize>(p * MR * 4), v128.load(src));
        src += <usize>(sp * 4);
      }
    } else if (rows == MR && sp == 1) {
      // op(A) rows are contiguous (nn, nt): four rows × four p at a time, transposed in registers.
      const row = a + <usize>(((i0 + ir) * si + p0) * 4), stride = <usize>(si * 4);
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const at = row + <usize>(p * 4);
        transpose4(v128.load(at), v128.load(at + stride), v128.load(at + 2 * stride), v128.load(at + 3 * stride),
          panel + <usize>(p * MR * 4), MR * 4);
      }
      for (; p < kc; p++) {
        for (let r = 0; r < MR; r++) store<f32>(panel + <usize>((p * MR + r) * 4), load<f32>(row + <usize>(r) * stride + <usize>(p * 4)));
      }
    } else {
      for (let r = 0; r < MR; r++) {
        if (r < rows) {
          let src = a + <usize>(((i0 + ir + r) * si + p0 * sp) * 4);
          for (let p = 0; p < kc; p++) {
            store<f32>(panel + <usize>((p * MR + r) * 4), load<f32>(src));
            src += <usize>(sp * 4);
          }
        } else {
          for (let p = 0; p < kc; p++) store<f32>(panel + <usize>((p * MR + r) * 4), 0);
        }
      }
    }
  }
}

/**
 * Packs op(B)[p0 .. p0+kc, j0 .. j0+nc] into NR-column panels: panel c holds, for each p, the NR
 * values of columns c·NR .. c·NR+NR−1. Columns past n are zero. op(B)(p, j) lives at b + 4·(p·sp + j·sj).
 */
function packB(b: usize, sp: i32, sj: i32, p0: i32, j0: i32, kc: i32, nc: i32, n: i32, dst: usize): void {
  for (let jr = 0; jr < nc; jr += NR) {
    const cols = min(NR, n - (j0 + jr));
    const panel = dst + <usize>(jr * kc * 4);
    if (cols == NR && sj == 1) {
      let src = b + <usize>((p0 * sp + (j0 + jr)) * 4);
      for (let p = 0; p < kc; p++) {
        const out = panel + <usize>(p * NR * 4);
        v128.store(out, v128.load(src));
        v128.store(out, v128.load(src, 16), 16);
        src += <usize>(sp * 4);
      }
    } else if (cols == NR && sp == 1) {
      // op(B) columns are contiguous (the nt form): two 4×4 transposes per four p.
      const col = b + <usize>(((j0 + jr) * sj + p0) * 4), stride = <usize>(sj * 4);
      let p = 0;
      for (; p + 4 <= kc; p += 4) {
        const at = col + <usize>(p * 4), out = panel + <usize>(p * NR * 4);
        transpose4(v128.load(at), v128.load(at + stride), v128.load(at + 2 * stride), v128.load(at + 3 * stride), out, NR * 4);
        const at4 = at + 4 * stride;
        transpose4(v128.load(at4), v128.load(at4 + stride), v128.load(at4 + 2 * stride), v128.load(at4 + 3 * stride), out + 16, NR * 4);
      }
      for (; p < kc; p++) {
        for (let c = 0; c < NR; c++) store<f32>(panel + <usize>((p * NR + c) * 4), load<f32>(col + <usize>(c) * stride + <usize>(p * 4)));
      }
    } else {
      for (let c = 0; c < NR; c++) {
        if (c < cols) {
          let src = b + <usize>((p0 * sp + (j0 + jr + c) * sj) * 4);
          for (let p = 0; p < kc; p++) {
            store<f32>(panel + <usize>((p * NR + c) * 4), load<f32>(src));
            src += <usize>(sp * 4);
          }
        } else {
          for (let p = 0; p < kc; p++) store<f32>(panel + <usize>((p * NR + c) * 4), 0);
        }
      }
    }
  }
}

/**
 * MR×NR tile: acc = Σ_p ap[p]ᵀ · bp[p]; then c = acc (overwrite) or c += acc.
 * `c` is the tile's top-left, `ldc` its row stride in floats.
 */
function microKernel(kc: i32, ap: usize, bp: usize, c: usize, ldc: i32, overwrite: bool): void {
  let c00 = f32x4.splat(0), c01 = f32x4.splat(0);
  let c10 = f32x4.splat(0), c11 = f32x4.splat(0);
  let c20 = f32x4.splat(0), c21 = f32x4.splat(0);
  let c30 = f32x4.splat(0), c31 = f32x4.splat(0);
  for (let p = 0; p < kc; p++) {
    const b0 = v128.load(bp);
    const b1 = v128.load(bp, 16);
    let a = v128.load32_splat(ap);
    c00 = fma(a, b0, c00); c01 = fma(a, b1, c01);
    a = v128.load32_splat(ap, 4);
    c10 = fma(a, b0, c10); c11 = fma(a, b1, c11);
    a = v128.load32_splat(ap, 8);
    c20 = fma(a, b0, c20); c21 = fma(a, b1, c21);
    a = v128.load32_splat(ap, 12);
    c30 = fma(a, b0, c30); c31 = fma(a, b1, c31);
    ap += MR * 4;
    bp += NR * 4;
  }
  const row = <usize>(ldc * 4);
  if (!overwrite) {
    c00 = f32x4.add(c00, v128.load(c)); c01 = f32x4.add(c01, v128.load(c, 16));
    c10 = f32x4.add(c10, v128.load(c + row)); c11 = f32x4.add(c11, v128.load(c + row, 16));
    c20 = f32x4.add(c20, v128.load(c + 2 * row)); c21 = f32x4.add(c21, v128.load(c + 2 * row, 16));
    c30 = f32x4.add(c30, v128.load(c + 3 * row)); c31 = f32x4.add(c31, v128.load(c + 3 * row, 16));
  }
  v128.store(c, c00); v128.store(c, c01, 16);
  v128.store(c + row, c10); v128.store(c + row, c11, 16);
  v128.store(c + 2 * row, c20); v128.store(c + 2 * row, c21, 16);
  v128.store(c + 3 * row, c30); v128.store(c + 3 * row, c31, 16);
}

/**
 * C[m×n] = op(A)·op(B) (accumulate = 0) or C += op(A)·op(B) (accumulate = 1).
 * lda, ldb, ldc are the row strides, in floats, of A, B and C as stored.
 */
export function gemm(
  form: i32, m: i32, n: i32, k: i32,
  a: usize, lda: i32, b: usize, ldb: i32, c: usize, ldc: i32,
  accumulate: i32, scratch: usize,
): void {
  if (m <= 0 || n <= 0) return;
  // Strides of op(A)(i, p) and op(B)(p, j) in floats.
  const asi = form == FORM_TN ? 1 : lda;
  const asp = form == FORM_TN ? lda : 1;
  const bsp = form == FORM_NT ? 1 : ldb;
  const bsj = form == FORM_NT ? ldb : 1;
  if (k <= 0) {
    if (!accumulate) for (let i = 0; i < m; i++) memory.fill(c + <usize>(i * ldc * 4), 0, <usize>(n * 4));
    return;
  }
  // A few rows: op(B) read in place, the same sums in the same order (gemm-thin.ts).
  if (m <= THIN_ROWS) { gemmThin(m, n, k, a, asi, asp, b, ldb, form == FORM_NT, c, ldc, accumulate, scratch); return; }
  const packedB = scratch;
  const packedA = scratch + <usize>PACK_B_BYTES;
  const tile = packedA + <usize>PACK_A_BYTES;

  for (let j0 = 0; j0 < n; j0 += NC) {
    const nc = min(NC, n - j0);
    for (let p0 = 0; p0 < k; p0 += KC) {
      const kc = min(KC, k - p0);
      const overwrite = p0 == 0 && !accumulate;
      packB(b, bsp, bsj, p0, j0, kc, nc, n, packedB);
      for (let i0 = 0; i0 < m; i0 += MC) {
        const mc = min(MC, m - i0);
        packA(a, asi, asp, i0, p0, mc, kc, m, packedA);
        for (let jr = 0; jr < nc; jr += NR) {
          const cols = min(NR, nc - jr);
          const bp = packedB + <usize>(jr * kc * 4);
          for (let ir = 0; ir < mc; ir += MR) {
            const rows = min(MR, mc - ir);
            const ap = packedA + <usize>(ir * kc * 4);
            const cTile = c + <usize>(((i0 + ir) * ldc + j0 + jr) * 4);
            if (rows == MR && cols == NR) {
              microKernel(kc, ap, bp, cTile, ldc, overwrite);
            } else {
              microKernel(kc, ap, bp, tile, NR, true);
              for (let r = 0; r < rows; r++) {
                for (let q = 0; q < cols; q++) {
                  const dst = cTile + <usize>((r * ldc + q) * 4);
                  const v = load<f32>(tile + <usize>((r * NR + q) * 4));
                  store<f32>(dst, overwrite ? v : load<f32>(dst) + v);
                }
              }
            }
          }
        }
      }
    }
  }
}
