// Rotary position embedding, Hugging Face's half-split form, in place (kernels/wasm/assembly/rope.ts).
#include "kernels.h"

void K(rope)(float *x, int rows, int stride, int groups, int hd, int time, const float *cos, const float *sin,
             int inverse) {
  const int half = hd >> 1;
  for (int r = 0; r < rows; r++) {
    float *row = x + (size_t)r * stride;
    const float *c = cos + (size_t)(r % time) * half, *s = sin + (size_t)(r % time) * half;
    for (int g = 0; g < groups; g++) {
      float *lo = row + (size_t)g * hd, *hi = lo + half;
      for (int i = 0; i < half; i++) {
        float cv = c[i], sv = inverse ? -s[i] : s[i];
        float x1 = lo[i], x2 = hi[i];
        lo[i] = x1 * cv - x2 * sv;
        hi[i] = x2 * cv + x1 * sv;
      }
    }
  }
}
