// GEMM for AVX-512 (F, VL, BW, DQ): a 12 × 32 register tile, 24 zmm accumulators fed by two
// packed B vectors and twelve broadcast A values per step. See gemm_blocked.h for what fixes
// the bits; the tile's FMA is wasm relaxed SIMD's relaxed_madd, lane for lane.
#include <immintrin.h>

#include "kernels.h"

#define MR 12
#define NR 32
#define MC 240
#define NC 2048

/** A tile of R (≤ MR) rows, instantiated per R so the loops unroll and edge rows cost nothing. */
static inline __attribute__((always_inline)) void tile(const int R, int kc, const float *ap, const float *bp, float *c,
                                                       ptrdiff_t ldc, int cols, int overwrite) {
  __m512 lo[MR], hi[MR];
#pragma GCC unroll 12
  for (int r = 0; r < R; r++) {
    lo[r] = hi[r] = _mm512_setzero_ps();
    // C's rows are far apart (often a power of two floats, so they share L1 sets): start fetching
    // them now, to add into them after the last step.
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
  }
  for (int p = 0; p < kc; p++) {
    const __m512 b0 = _mm512_load_ps(bp), b1 = _mm512_load_ps(bp + 16);
#pragma GCC unroll 12
    for (int r = 0; r < R; r++) {
      const __m512 a = _mm512_set1_ps(ap[r]);
      lo[r] = _mm512_fmadd_ps(a, b0, lo[r]);
      hi[r] = _mm512_fmadd_ps(a, b1, hi[r]);
    }
    ap += MR;
    bp += NR;
  }
  const __mmask16 m0 = cols >= 16 ? 0xFFFF : (__mmask16)((1u << cols) - 1);
  const __mmask16 m1 = cols >= 32 ? 0xFFFF : cols > 16 ? (__mmask16)((1u << (cols - 16)) - 1) : 0;
#pragma GCC unroll 12
  for (int r = 0; r < R; r++) {
    float *row = c + r * ldc;
    if (!overwrite) {
      lo[r] = _mm512_add_ps(lo[r], _mm512_maskz_loadu_ps(m0, row));
      hi[r] = _mm512_add_ps(hi[r], _mm512_maskz_loadu_ps(m1, row + 16));
    }
    _mm512_mask_storeu_ps(row, m0, lo[r]);
    _mm512_mask_storeu_ps(row + 16, m1, hi[r]);
  }
}

static void micro_kernel(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc, int rows, int cols,
                         int overwrite) {
  switch (rows) {
    case 12: tile(12, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 11: tile(11, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 10: tile(10, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 9: tile(9, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 8: tile(8, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 7: tile(7, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 6: tile(6, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 5: tile(5, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 4: tile(4, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 3: tile(3, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 2: tile(2, kc, ap, bp, c, ldc, cols, overwrite); break;
    default: tile(1, kc, ap, bp, c, ldc, cols, overwrite); break;
  }
}

#include "gemm_blocked.h"
