// Elementwise arithmetic (kernels/wasm/assembly/elementwise.ts); out may alias either input.
#include "kernels.h"

void K(add)(const float *x, const float *y, float *out, int n) {
  for (int i = 0; i < n; i++) out[i] = x[i] + y[i];
}

void K(multiply)(const float *x, const float *y, float *out, int n) {
  for (int i = 0; i < n; i++) out[i] = x[i] * y[i];
}

void K(add_bias)(float *x, const float *bias, int rows, int cols, int ld) {
  for (int r = 0; r < rows; r++) {
    float *row = x + (size_t)r * (size_t)ld;
    for (int j = 0; j < cols; j++) row[j] += bias[j];
  }
}

void K(bias_grad)(const float *dy, int rows, int cols, int ld, float *dbias) {
  for (int r = 0; r < rows; r++) {
    const float *row = dy + (size_t)r * (size_t)ld;
    for (int j = 0; j < cols; j++) dbias[j] += row[j];
  }
}
