// GEMM in plain C, for the NEON build (MADD = fmaf, which AArch64 fuses) and the portable build
// off x86-64: a 4 × 8 tile of MADDs the compiler keeps in vector registers. (x86-64's portable
// build uses gemm_sse2.c.) See gemm_blocked.h for what fixes the bits.
#include "kernels.h"
#include "vector_math.h"

#define MR 4
#define NR 8
#define MC 128
#define NC 2048

static void micro_kernel(int kc, const float *ap, const float *bp, float *c, ptrdiff_t ldc, int rows, int cols,
                         int overwrite) {
  float acc[MR][NR];
  for (int r = 0; r < MR; r++) {
    for (int j = 0; j < NR; j++) acc[r][j] = 0.0f;
  }
  for (int p = 0; p < kc; p++) {
    for (int r = 0; r < MR; r++) {
      for (int j = 0; j < NR; j++) acc[r][j] = MADD(ap[r], bp[j], acc[r][j]);
    }
    ap += MR;
    bp += NR;
  }
  for (int r = 0; r < rows; r++) {
    float *row = c + r * ldc;
    if (overwrite) {
      for (int j = 0; j < cols; j++) row[j] = acc[r][j];
    } else {
      for (int j = 0; j < cols; j++) row[j] = row[j] + acc[r][j];
    }
  }
}

#include "gemm_blocked.h"
