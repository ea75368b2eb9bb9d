// GEMM for the portable x86-64 build: SSE2 only, no FMA, so each step is a rounded multiply then
// an add, as in the plain-SIMD WebAssembly module. A 6 × 8 register tile: 12 xmm accumulators,
// two packed B vectors, one broadcast A value and the product (all 16 registers).
// See gemm_blocked.h for what fixes the bits.
#include <emmintrin.h>

#include "kernels.h"

#define MR 6
#define NR 8
#define MC 240
#define NC 2048

/** A tile of R (≤ MR) rows, instantiated per R so the loops unroll and edge rows cost nothing. */
static inline __attribute__((always_inline)) void tile(const int R, int kc, const float *ap, const float *bp, float *c,
                                                       ptrdiff_t ldc, int cols, int overwrite) {
  __m128 lo[MR], hi[MR];
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) lo[r] = hi[r] = _mm_setzero_ps();
  for (int p = 0; p < kc; p++) {
    const __m128 b0 = _mm_load_ps(bp), b1 = _mm_load_ps(bp + 4);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      const __m128 a = _mm_load1_ps(ap + r);
      lo[r] = _mm_add_ps(_mm_mul_ps(a, b0), lo[r]);
      hi[r] = _mm_add_ps(_mm_mul_ps(a, b1), hi[r]);
    }
    ap += MR;
    bp += NR;
  }
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) {
    float *row = c + r * ldc;
    if (cols == NR) {
      if (!overwrite) {
        lo[r] = _mm_add_ps(lo[r], _mm_loadu_ps(row));
        hi[r] = _mm_add_ps(hi[r], _mm_loadu_ps(row + 4));
      }
      _mm_storeu_ps(row, lo[r]);
      _mm_storeu_ps(row + 4, hi[r]);
    } else {
      float v[NR];
      _mm_storeu_ps(v, lo[r]);
      _mm_storeu_ps(v + 4, hi[r]);
      for (int j = 0; j < cols; j++) row[j] = overwrite ? v[j] : v[j] + row[j];
    }
  }
}

static void micro_kernel(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc, int rows, int cols,
                         int overwrite) {
  switch (rows) {
    case 6: tile(6, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 5: tile(5, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 4: tile(4, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 3: tile(3, kc, ap, bp, c, ldc, cols, overwrite); break;
    case 2: tile(2, kc, ap, bp, c, ldc, cols, overwrite); break;
    default: tile(1, kc, ap, bp, c, ldc, cols, overwrite); break;
  }
}

#include "gemm_blocked.h"
