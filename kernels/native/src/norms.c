// Row normalisations over [rows × cols], cols a multiple of 4 (kernels/wasm/assembly/norms.ts).
// Each row's sums use wasm's four lane accumulators folded as ((l0 + l1) + l2) + l3; the
// elementwise passes run at the ISA's width.
#include "kernels.h"
#include "vector_math.h"

void K(layer_norm)(const float *x, const float *gain, const float *bias, float *out, float *rstd, float *mean,
                   int rows, int cols, float eps) {
  const float inv = 1.0f / (float)cols;
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * cols;
    float *orow = out + (size_t)r * cols;
    f32x4 acc = splat4(0.0f);
    for (int c = 0; c < cols; c += 4) acc += load4(xr + c);
    const float m = fold4(acc) * inv;
    f32x4 sq = splat4(0.0f);
    for (int c = 0; c < cols; c += 4) {
      const f32x4 e = load4(xr + c) - splat4(m);
      sq += e * e;
    }
    const float s = 1.0f / sqrtf(fold4(sq) * inv + eps);
    mean[r] = m;
    rstd[r] = s;
    if (bias) {
      for (int c = 0; c < cols; c++) orow[c] = ((xr[c] - m) * s) * gain[c] + bias[c];
    } else {
      for (int c = 0; c < cols; c++) orow[c] = ((xr[c] - m) * s) * gain[c];
    }
  }
}

void K(layer_norm_backward)(const float *x, const float *gain, const float *rstd, const float *mean, const float *dy,
                            float *dx, float *dgain, float *dbias, int rows, int cols) {
  const float inv = 1.0f / (float)cols;
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * cols, *dyr = dy + (size_t)r * cols;
    float *dxr = dx + (size_t)r * cols;
    const float m = mean[r], s = rstd[r];
    f32x4 sum_g = splat4(0.0f), sum_gx = splat4(0.0f);
    for (int c = 0; c < cols; c += 4) {
      const f32x4 xh = (load4(xr + c) - splat4(m)) * splat4(s);
      const f32x4 gdy = load4(gain + c) * load4(dyr + c);
      sum_g += gdy;
      sum_gx += gdy * xh;
    }
    for (int c = 0; c < cols; c++) dgain[c] += dyr[c] * ((xr[c] - m) * s);
    if (dbias) {
      for (int c = 0; c < cols; c++) dbias[c] += dyr[c];
    }
    const float a = fold4(sum_g) * inv, b = fold4(sum_gx) * inv;
    for (int c = 0; c < cols; c++) {
      float xh = (xr[c] - m) * s;
      float gdy = gain[c] * dyr[c];
      dxr[c] = s * ((gdy - a) - xh * b);
    }
  }
}

void K(rms_norm)(const float *x, const float *gain, float *out, float *rstd, int rows, int cols, float eps) {
  const float inv = 1.0f / (float)cols;
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * cols;
    float *orow = out + (size_t)r * cols;
    f32x4 acc = splat4(0.0f);
    for (int c = 0; c < cols; c += 4) {
      const f32x4 v = load4(xr + c);
      acc += v * v;
    }
    const float s = 1.0f / sqrtf(fold4(acc) * inv + eps);
    rstd[r] = s;
    for (int c = 0; c < cols; c++) orow[c] = (xr[c] * s) * gain[c];
  }
}

void K(rms_norm_backward)(const float *x, const float *gain, const float *rstd, const float *dy, float *dx,
                          float *dgain, int rows, int cols) {
  const float inv = 1.0f / (float)cols;
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * cols, *dyr = dy + (size_t)r * cols;
    float *dxr = dx + (size_t)r * cols;
    const float s = rstd[r];
    f32x4 dot = splat4(0.0f);
    for (int c = 0; c < cols; c += 4) dot += (load4(gain + c) * load4(dyr + c)) * load4(xr + c);
    for (int c = 0; c < cols; c++) dgain[c] += (dyr[c] * xr[c]) * s;
    const float kv = (((s * s) * s) * fold4(dot)) * inv;
    for (int c = 0; c < cols; c++) dxr[c] = ((gain[c] * dyr[c]) * s) - xr[c] * kv;
  }
}
