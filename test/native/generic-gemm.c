// The plain-C GEMM (gemm_generic.c: arm64's NEON and portable builds) against the x86-64 builds
// of the same rounding, bit for bit: with fmaf against AVX2's FMA tile, without against SSE2's.
// Built and run by test/native-generic.test.ts on x86-64, where the arm64 builds cannot run.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef void gemm_fn(int form, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
                     int accumulate, float *scratch);
gemm_fn generic_fma_gemm, generic_gemm, avx2_gemm, portable_gemm;

static uint32_t state = 12345;
static float next(void) {
  state = state * 1664525u + 1013904223u;
  return (float)(int32_t)(state >> 8) / (float)(1 << 23) - 1.0f;
}

int main(void) {
  static const int shapes[][3] = {{1, 1, 1}, {5, 37, 3}, {13, 33, 255}, {25, 47, 257}, {7, 70, 1000}, {30, 9, 2100}, {4, 8, 256}};
  const size_t big = 1 << 20;
  float *a = malloc(big * 4), *b = malloc(big * 4), *c0 = malloc(big * 4), *c1 = malloc(big * 4), *start = malloc(big * 4);
  float *scratch = NULL;
  if (posix_memalign((void **)&scratch, 64, 16 << 20)) return 2;
  for (size_t i = 0; i < big; i++) a[i] = next(), b[i] = next(), start[i] = next();
  int failures = 0, checked = 0;
  for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
    const int m = shapes[s][0], n = shapes[s][1], k = shapes[s][2];
    for (int form = 0; form < 3; form++) {
      for (int accumulate = 0; accumulate < 2; accumulate++) {
        const int lda = (form == 2 ? m : k) + 3, ldb = (form == 1 ? k : n) + 1, ldc = n + 2;
        gemm_fn *pairs[2][2] = {{generic_fma_gemm, avx2_gemm}, {generic_gemm, portable_gemm}};
        for (int p = 0; p < 2; p++) {
          memcpy(c0, start, big * 4);
          memcpy(c1, start, big * 4);
          pairs[p][0](form, m, n, k, a, lda, b, ldb, c0, ldc, accumulate, scratch);
          pairs[p][1](form, m, n, k, a, lda, b, ldb, c1, ldc, accumulate, scratch);
          checked++;
          if (memcmp(c0, c1, (size_t)m * ldc * 4) != 0) {
            printf("%s differs: form %d, %d×%d×%d, accumulate %d\n", p ? "generic vs portable" : "generic fma vs avx2", form, m,
                   n, k, accumulate);
            failures++;
          }
        }
      }
    }
  }
  printf("%d of %d comparisons identical\n", checked - failures, checked);
  return failures != 0;
}
