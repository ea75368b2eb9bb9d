// Input checks at memory speed (kernels/wasm/assembly/checks.ts).
#include "kernels.h"
#include "vector_math.h"

/** The index of the first NaN or ±Inf among n floats, or −1. */
int K(first_non_finite)(const float *x, int n) {
  // A non-finite float has every exponent bit set. OR-ing a block's flags is a reduction the
  // compiler vectorises (integers reassociate; float sums would not), then one pass finds it.
  enum { BLOCK = 1024 };
  for (int i0 = 0; i0 < n; i0 += BLOCK) {
    int end = n - i0 < BLOCK ? n : i0 + BLOCK;
    uint32_t bad = 0;
    for (int i = i0; i < end; i++) bad |= (as_u32(x[i]) & 0x7f800000u) == 0x7f800000u;
    if (!bad) continue;
    for (int i = i0; i < end; i++) {
      if ((as_u32(x[i]) & 0x7f800000u) == 0x7f800000u) return i;
    }
  }
  return -1;
}
