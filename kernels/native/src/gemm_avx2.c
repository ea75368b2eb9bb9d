// GEMM for AVX2 + FMA: a 6 × 16 register tile, 12 ymm accumulators fed by two packed B vectors
// and six broadcast A values per step (15 of the 16 ymm registers). See gemm_blocked.h for what
// fixes the bits; the tile's FMA is wasm relaxed SIMD's relaxed_madd, lane for lane.
#include <immintrin.h>

#include "kernels.h"

#define MR 6
#define NR 16
#define MC 240
#define NC 2048

/** Lanes below `count` set: a maskload/maskstore mask for a tile's last columns. */
static inline __m256i first_lanes(int count) {
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), lane);
}

/** A tile of R (≤ MR) rows, instantiated per R so the loops unroll and edge rows cost nothing. */
static inline __attribute__((always_inline)) void tile(const int R, int kc, const float *ap, const float *bp, float *c,
                                                       ptrdiff_t ldc, int cols, int overwrite) {
  __m256 lo[MR], hi[MR];
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) {
    lo[r] = hi[r] = _mm256_setzero_ps();
    // C's rows are far apart (often a power of two floats, so they share L1 sets): start fetching
    // them now, to add into them after the last step.
    _mm_prefetch((const char *)(c + r * ldc), _MM_HINT_T0);
    _mm_prefetch((const char *)(c + r * ldc + NR - 1), _MM_HINT_T0);
  }
  for (int p = 0; p < kc; p++) {
    const __m256 b0 = _mm256_load_ps(bp), b1 = _mm256_load_ps(bp + 8);
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      const __m256 a = _mm256_broadcast_ss(ap + r);
      lo[r] = _mm256_fmadd_ps(a, b0, lo[r]);
      hi[r] = _mm256_fmadd_ps(a, b1, hi[r]);
    }
    ap += MR;
    bp += NR;
  }
  if (cols == NR) {
#pragma GCC unroll 6
    for (int r = 0; r < R; r++) {
      float *row = c + r * ldc;
      if (!overwrite) {
        lo[r] = _mm256_add_ps(lo[r], _mm256_loadu_ps(row));
        hi[r] = _mm256_add_ps(hi[r], _mm256_loadu_ps(row + 8));
      }
      _mm256_storeu_ps(row, lo[r]);
      _mm256_storeu_ps(row + 8, hi[r]);
    }
    return;
  }
  // Masked lanes are neither read nor written, so a tile at the end of the memory is safe.
  const __m256i m0 = first_lanes(cols), m1 = first_lanes(cols - 8);
#pragma GCC unroll 6
  for (int r = 0; r < R; r++) {
    float *row = c + r * ldc;
    if (!overwrite) {
      lo[r] = _mm256_add_ps(lo[r], _mm256_maskload_ps(row, m0));
      hi[r] = _mm256_add_ps(hi[r], _mm256_maskload_ps(row + 8, m1));
    }
    _mm256_maskstore_ps(row, m0, lo[r]);
    _mm256_maskstore_ps(row + 8, m1, hi[r]);
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
