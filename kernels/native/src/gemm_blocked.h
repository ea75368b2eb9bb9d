// The loop nest every ISA's GEMM shares: C (+)= op(A)·op(B), BLIS-style, as in
// kernels/wasm/assembly/gemm.ts: NC columns of op(B), KC = 256 deep slices, MC rows of op(A),
// then MR×NR register tiles, with op(A) and op(B) packed into the micro-kernel's read order.
//
// What fixes the bits, whatever the tile: each element of C is, slice by slice in order, a sum
// from zero of op(A)(i, p)·op(B)(p, j) over the slice's p in increasing order, one MADD per p,
// then stored (the first slice when not accumulating) or added to C with one add. Tile shape,
// MC, NC and the packing only decide which elements are computed together.
//
// The includer defines MR, NR, MC (a multiple of MR), NC (a multiple of NR) and
//   static void micro_kernel(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc,
//                            int rows, int cols, int overwrite);
// which computes a rows × cols (≤ MR × NR) tile at c from an MR-wide packed panel of op(A) and
// an NR-wide one of op(B), then includes this file, which defines K(gemm) and K(gemm_scratch_bytes).
#include <stddef.h>
#include <string.h>
#ifdef __SSE2__
#include <emmintrin.h>
#endif

#include "kernels.h"

size_t K(gemm_scratch_bytes)(void) {
  return (size_t)(KC * NC + MC * KC) * sizeof(float);
}

/** dst[q·dst_stride + r] = src[r·src_stride + q] for a 4 × 4 block. */
static inline void transpose4(const float *src, ptrdiff_t src_stride, float *dst, ptrdiff_t dst_stride) {
#ifdef __SSE2__
  __m128 r0 = _mm_loadu_ps(src), r1 = _mm_loadu_ps(src + src_stride);
  __m128 r2 = _mm_loadu_ps(src + 2 * src_stride), r3 = _mm_loadu_ps(src + 3 * src_stride);
  _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
  _mm_storeu_ps(dst, r0);
  _mm_storeu_ps(dst + dst_stride, r1);
  _mm_storeu_ps(dst + 2 * dst_stride, r2);
  _mm_storeu_ps(dst + 3 * dst_stride, r3);
#else
  for (int q = 0; q < 4; q++) {
    for (int r = 0; r < 4; r++) dst[q * dst_stride + r] = src[r * src_stride + q];
  }
#endif
}

/**
 * Packs `lanes` (≤ width) rows of op(A), or columns of op(B), over kc steps of depth into a
 * panel: panel[p·width + l] = src[l·lane_stride + p·depth_stride], zero for l ≥ lanes, so edge
 * tiles need no branch. One of the strides is 1 for every form: a copy, or a transpose.
 */
static inline void pack_panel(const float *src, ptrdiff_t lane_stride, ptrdiff_t depth_stride, int lanes, int kc,
                              int width, float *panel) {
  if (lane_stride == 1 && lanes == width) {
    // A whole panel's worth of contiguous lanes: a fixed-size copy per step, which compiles to vector moves.
    for (int p = 0; p < kc; p++) memcpy(panel + (ptrdiff_t)p * width, src + p * depth_stride, sizeof(float) * width);
    return;
  }
  if (lanes < width) memset(panel, 0, (size_t)kc * width * sizeof(float));
  if (lane_stride == 1) {
    for (int p = 0; p < kc; p++) memcpy(panel + (ptrdiff_t)p * width, src + p * depth_stride, lanes * sizeof(float));
    return;
  }
  // Otherwise the depth is contiguous (depth_stride = 1): op(A)'s rows in nn and nt, op(B)'s
  // columns in nt. Four lanes at a time go through 4 × 4 transposes.
  int l = 0;
  for (; l + 4 <= lanes; l += 4) {
    const float *s = src + l * lane_stride;
    int p = 0;
    for (; p + 4 <= kc; p += 4) transpose4(s + p, lane_stride, panel + (ptrdiff_t)p * width + l, width);
    for (; p < kc; p++) {
      for (int q = 0; q < 4; q++) panel[(ptrdiff_t)p * width + l + q] = s[q * lane_stride + p];
    }
  }
  for (; l < lanes; l++) {
    const float *s = src + l * lane_stride;
    for (int p = 0; p < kc; p++) panel[(ptrdiff_t)p * width + l] = s[p];
  }
}

void K(gemm)(int form, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
             int accumulate, float *scratch) {
  if (m <= 0 || n <= 0) return;
  if (k <= 0) {
    if (!accumulate) {
      for (int i = 0; i < m; i++) memset(c + (ptrdiff_t)i * ldc, 0, (size_t)n * sizeof(float));
    }
    return;
  }
  // Strides, in floats, of op(A)(i, p) and op(B)(p, j).
  const ptrdiff_t asi = form == FORM_TN ? 1 : lda, asp = form == FORM_TN ? lda : 1;
  const ptrdiff_t bsp = form == FORM_NT ? 1 : ldb, bsj = form == FORM_NT ? ldb : 1;
  float *packed_b = scratch, *packed_a = scratch + KC * NC;

  for (int j0 = 0; j0 < n; j0 += NC) {
    const int nc = n - j0 < NC ? n - j0 : NC;
    for (int p0 = 0; p0 < k; p0 += KC) {
      const int kc = k - p0 < KC ? k - p0 : KC;
      const int overwrite = p0 == 0 && !accumulate;
      for (int jr = 0; jr < nc; jr += NR) {
        const int cols = nc - jr < NR ? nc - jr : NR;
        pack_panel(b + p0 * bsp + (j0 + jr) * bsj, bsj, bsp, cols, kc, NR, packed_b + (ptrdiff_t)jr * kc);
      }
      for (int i0 = 0; i0 < m; i0 += MC) {
        const int mc = m - i0 < MC ? m - i0 : MC;
        for (int ir = 0; ir < mc; ir += MR) {
          const int rows = mc - ir < MR ? mc - ir : MR;
          pack_panel(a + (i0 + ir) * asi + p0 * asp, asi, asp, rows, kc, MR, packed_a + (ptrdiff_t)ir * kc);
        }
        for (int jr = 0; jr < nc; jr += NR) {
          const int cols = nc - jr < NR ? nc - jr : NR;
          for (int ir = 0; ir < mc; ir += MR) {
            const int rows = mc - ir < MR ? mc - ir : MR;
            micro_kernel(kc, packed_a + (ptrdiff_t)ir * kc, packed_b + (ptrdiff_t)jr * kc,
                         c + (ptrdiff_t)(i0 + ir) * ldc + j0 + jr, ldc, rows, cols, overwrite);
          }
        }
      }
    }
  }
}
