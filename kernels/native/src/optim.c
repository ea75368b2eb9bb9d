// The optimizer's elementwise work (kernels/wasm/assembly/optim.ts).
#include "kernels.h"
#include "vector_math.h"

/** A block's four float32 lanes into the float64 total, in lane order. */
static inline double fold4_f64(f32x4 v) {
  return (((double)v[0] + (double)v[1]) + (double)v[2]) + (double)v[3];
}

/**
 * Σ x² as wasm sums it: four float32 lanes within each block of 1024 values (the last block
 * ends at the last whole group of four), each block's lanes added into a float64 total in lane
 * order, then the last one to three values squared and added in float64.
 */
double K(sum_squares)(const float *x, int n) {
  enum { BLOCK = 1024 };
  double total = 0.0;
  int i = 0;
  // Whole blocks start from zero, so four of them can run side by side, overlapping their chains
  // of dependent adds (one chain alone runs at the adder's latency, not its throughput).
  for (; i + 4 * BLOCK <= n; i += 4 * BLOCK) {
    f32x4 acc[4] = {splat4(0.0f), splat4(0.0f), splat4(0.0f), splat4(0.0f)};
    for (int c = 0; c < BLOCK; c += 4) {
      for (int b = 0; b < 4; b++) {
        const f32x4 v = load4(x + i + b * BLOCK + c);
        acc[b] += v * v;
      }
    }
    for (int b = 0; b < 4; b++) total += fold4_f64(acc[b]);
  }
  while (i + 4 <= n) {
    f32x4 acc = splat4(0.0f);
    const int end = n - 3 < i + BLOCK ? n - 3 : i + BLOCK;
    for (; i < end; i += 4) {
      const f32x4 v = load4(x + i);
      acc += v * v;
    }
    total += fold4_f64(acc);
  }
  for (; i < n; i++) {
    const double v = (double)x[i];
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
