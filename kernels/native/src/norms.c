// Row normalisations over [rows × cols], cols a multiple of 4 (kernels/wasm/assembly/norms.ts).
// Each row's sums use wasm's four lane accumulators folded as ((l0 + l1) + l2) + l3; the
// elementwise passes run at the ISA's width.
#include "kernels.h"
#include "vector_math.h"

static inline float fold4(const float acc[4]) {
  return ((acc[0] + acc[1]) + acc[2]) + acc[3];
}

void K(layer_norm)(const float *x, const float *gain, const float *bias, float *out, float *rstd, float *mean,
                   int rows, int cols, float eps) {
  const float inv = 1.0f / (float)cols;
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * cols;
    float *orow = out + (size_t)r * cols;
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < cols; c += 4) {
      for (int j = 0; j < 4; j++) acc[j] += xr[c + j];
    }
    const float m = fold4(acc) * inv;
    float sq[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < cols; c += 4) {
      for (int j = 0; j < 4; j++) {
        float e = xr[c + j] - m;
        sq[j] += e * e;
      }
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
    float sum_g[4] = {0.0f, 0.0f, 0.0f, 0.0f}, sum_gx[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < cols; c += 4) {
      for (int j = 0; j < 4; j++) {
        float xh = (xr[c + j] - m) * s;
        float gdy = gain[c + j] * dyr[c + j];
        sum_g[j] += gdy;
        sum_gx[j] += gdy * xh;
      }
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
    float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < cols; c += 4) {
      for (int j = 0; j < 4; j++) acc[j] += xr[c + j] * xr[c + j];
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
    float dot[4] = {0.0f, 0.0f, 0.0f, 0.0f};
    for (int c = 0; c < cols; c += 4) {
      for (int j = 0; j < 4; j++) dot[j] += (gain[c + j] * dyr[c + j]) * xr[c + j];
    }
    for (int c = 0; c < cols; c++) dgain[c] += (dyr[c] * xr[c]) * s;
    const float kv = (((s * s) * s) * fold4(dot)) * inv;
    for (int c = 0; c < cols; c++) dxr[c] = ((gain[c] * dyr[c]) * s) - xr[c] * kv;
  }
}
