// The optimizer's elementwise work (kernels/wasm/assembly/optim.ts).
#include "kernels.h"
#include "vector_math.h"

/**
 * Σ x² as wasm sums it: four float32 lanes within each block of 1024 values (the last block
 * ends at the last whole group of four), each block's lanes added into a float64 total in lane
 * order, then the last one to three values squared and added in float64.
 */
double K(sum_squares)(const float *x, int n) {
  double total = 0.0;
  int i = 0;
  while (i + 4 <= n) {
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    int end = n - 3 < i + 1024 ? n - 3 : i + 1024;
    for (; i < end; i += 4) {
      for (int j = 0; j < 4; j++) acc[j] += x[i + j] * x[i + j];
    }
    total += (((double)acc[0] + (double)acc[1]) + (double)acc[2]) + (double)acc[3];
  }
  for (; i < n; i++) {
    double v = (double)x[i];
    total += v * v;
  }
  return total;
}

/**
 * AdamW, g' = g·clip; m = β₁m + (1−β₁)g'; v = β₂v + (1−β₂)g'²; w = w·decay − lr·(m/c₁)/(√(v/c₂) + ε).
 * wasm's vector body multiplies by 1/c₁ and 1/c₂ (rounded to float32 once) and groups the
 * products its own way; its scalar tail, past the last multiple of four, divides. Both kept.
 */
void K(adamw)(float *w, const float *g, float *m, float *v, int n, float lr, float beta1, float beta2,
              float correct1, float correct2, float decay, float clip, float eps) {
  const float a1 = 1.0f - beta1, a2 = 1.0f - beta2;
  const float c1 = 1.0f / correct1, c2 = 1.0f / correct2;
  int body = n & ~3;
  for (int i = 0; i < body; i++) {
    float gi = g[i] * clip;
    float mi = beta1 * m[i] + a1 * gi;
    float vi = beta2 * v[i] + a2 * (gi * gi);
    m[i] = mi;
    v[i] = vi;
    float step = (mi * c1) / (sqrtf(vi * c2) + eps);
    w[i] = w[i] * decay - lr * step;
  }
  for (int i = body; i < n; i++) {
    float gi = g[i] * clip;
    float mi = beta1 * m[i] + a1 * gi;
    float vi = beta2 * v[i] + (a2 * gi) * gi;
    m[i] = mi;
    v[i] = vi;
    w[i] = w[i] * decay - (lr * (mi / correct1)) / (sqrtf(vi / correct2) + eps);
  }
}
