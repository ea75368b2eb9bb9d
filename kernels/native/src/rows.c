// Row kernels over row-major [rows × cols] matrices (kernels/wasm/assembly/rows.ts).
//
// Sums keep wasm's order exactly: four lane accumulators (lane j takes columns j, j + 4, …),
// folded lane 0 first, then the row's last one to three columns summed on their own and added.
// The elementwise parts run at the ISA's width.
#include "kernels.h"
#include "vector_math.h"

/** f32.max over a row: NaN if any is, else the largest with −0 < +0. The order does not matter. */
static float row_max(const float *x, int cols) {
  f32x4 m = splat4(-INFINITY);
  int c = 0;
  for (; c + 4 <= cols; c += 4) m = wasm_max4(m, load4(x + c));
  float max = wasm_maxf(wasm_maxf(m[0], m[1]), wasm_maxf(m[2], m[3]));
  for (; c < cols; c++) max = wasm_maxf(max, x[c]);
  return max;
}

/** laneSum over a row: the four lanes' sums folded, then the last one to three values' own sum added. */
static float row_sum(const float *v, int cols) {
  f32x4 acc = splat4(0.0f);
  int c = 0;
  for (; c + 4 <= cols; c += 4) acc += load4(v + c);
  float sum = fold4(acc);
  if (c < cols) {
    float tail = v[c];
    for (int j = c + 1; j < cols; j++) tail += v[j];
    sum += tail;
  }
  return sum;
}

void K(softmax_rows)(const float *x, float *out, float *lse, int rows, int cols) {
  for (int r = 0; r < rows; r++) {
    const float *xr = x + (size_t)r * cols;
    float *orow = out + (size_t)r * cols;
    float max = row_max(xr, cols);
    for (int c = 0; c < cols; c++) orow[c] = exp_lane(xr[c] - max);
    float sum = row_sum(orow, cols);
    if (lse) lse[r] = max + as_logf(sum);
    float inv = 1.0f / sum;
    for (int c = 0; c < cols; c++) orow[c] *= inv;
  }
}

static inline void scaled_copy_row(const float *src, float *dst, int cols, float s, int add) {
  if (add) {
    for (int c = 0; c < cols; c++) dst[c] = src[c] * s + dst[c];
  } else {
    for (int c = 0; c < cols; c++) dst[c] = src[c] * s;
  }
}

void K(gather_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count, int cols) {
  for (int i = 0; i < count; i++) {
    scaled_copy_row(src + (size_t)index[i] * cols, out + (size_t)i * cols, cols, scale ? scale[i] : 1.0f, 0);
  }
}

void K(scatter_add_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count, int cols) {
  for (int i = 0; i < count; i++) {
    scaled_copy_row(src + (size_t)i * cols, out + (size_t)index[i] * cols, cols, scale ? scale[i] : 1.0f, 1);
  }
}

void K(scatter_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count, int cols) {
  for (int i = 0; i < count; i++) {
    scaled_copy_row(src + (size_t)i * cols, out + (size_t)index[i] * cols, cols, scale ? scale[i] : 1.0f, 0);
  }
}

void K(softmax_backward_rows)(const float *p, const float *dp, float *out, int rows, int cols, float scale) {
  for (int r = 0; r < rows; r++) {
    const float *pr = p + (size_t)r * cols, *dpr = dp + (size_t)r * cols;
    float *orow = out + (size_t)r * cols;
    f32x4 acc = splat4(0.0f);
    int c = 0;
    for (; c + 4 <= cols; c += 4) acc += load4(dpr + c) * load4(pr + c);
    float dot = fold4(acc);
    if (c < cols) {
      float tail = dpr[c] * pr[c];
      for (int j = c + 1; j < cols; j++) tail += dpr[j] * pr[j];
      dot += tail;
    }
    for (c = 0; c < cols; c++) orow[c] = (scale * pr[c]) * (dpr[c] - dot);
  }
}

void K(causal_mask_rows)(float *s, int rows, int cols, float scale) {
  for (int r = 0; r < rows; r++) {
    float *row = s + (size_t)r * cols;
    int last = r % cols;
    for (int c = 0; c <= last; c++) row[c] *= scale;
    for (int c = last + 1; c < cols; c++) row[c] = -INFINITY;
  }
}
