// Elementwise arithmetic (kernels/wasm/assembly/elementwise.ts); out may alias either input.
#include "kernels.h"

void K(add)(const float *x, const float *y, float *out, int n) {
  for (int i = 0; i < n; i++) out[i] = x[i] + y[i];
}

void K(multiply)(const float *x, const float *y, float *out, int n) {
  for (int i = 0; i < n; i++) out[i] = x[i] * y[i];
}
