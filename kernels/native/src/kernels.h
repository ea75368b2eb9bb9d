// What every ISA build of the kernels provides: one table of plain C functions over float
// pointers. The Node-API glue (addon.c) checks every argument against the registered memory
// before it calls through a table, so nothing here checks bounds.
//
// Each kernel file is compiled once per ISA (build.mjs) with ISA set to avx512, avx2, neon or
// portable and HAS_FMA to 1 or 0; K(name) gives the function that ISA's own symbol name.
#ifndef SWITCHYARD_KERNELS_H
#define SWITCHYARD_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#define K_CAT2(a, b) a##_##b
#define K_CAT(a, b) K_CAT2(a, b)
#define K(name) K_CAT(ISA, name)

enum { FORM_NN = 0, FORM_NT = 1, FORM_TN = 2 };

/** The WebAssembly kernels' GEMM slice depth: each 256-deep slice sums from zero, then adds into C. */
#define KC 256

struct kernel_table {
  const char *isa;
  /** Bytes of packing scratch `gemm` needs, 64-byte aligned. */
  size_t (*gemm_scratch_bytes)(void);
  void (*gemm)(int form, int m, int n, int k, const float *a, int lda, const float *b, int ldb,
               float *c, int ldc, int accumulate, float *scratch);
  void (*relu)(const float *x, float *out, int n);
  void (*relu_backward)(const float *x, const float *dy, float *dx, int n);
  void (*gelu)(const float *x, float *out, int n);
  void (*gelu_backward)(const float *x, const float *dy, float *dx, int n);
  void (*silu)(const float *x, float *out, int n);
  void (*silu_backward)(const float *x, const float *dy, float *dx, int n);
  void (*swiglu)(const float *g, const float *u, float *out, int n);
  void (*swiglu_backward)(const float *g, const float *u, const float *dh, float *dg, float *du, int n);
  void (*add)(const float *x, const float *y, float *out, int n);
  void (*add_bias)(float *x, const float *bias, int rows, int cols, int ld);
  void (*bias_grad)(const float *dy, int rows, int cols, int ld, float *dbias);
  void (*multiply)(const float *x, const float *y, float *out, int n);
  void (*rope)(float *x, int rows, int stride, int groups, int hd, int time, const float *cos, const float *sin,
               int inverse);
  void (*softmax_rows)(const float *x, float *out, float *lse, int rows, int cols);
  void (*gather_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count, int cols);
  void (*scatter_add_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count,
                           int cols);
  void (*scatter_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count, int cols);
  void (*softmax_backward_rows)(const float *p, const float *dp, float *out, int rows, int cols, float scale);
  void (*causal_mask_rows)(float *s, int rows, int cols, float scale);
  void (*layer_norm)(const float *x, const float *gain, const float *bias, float *out, float *rstd, float *mean,
                     int rows, int cols, float eps);
  void (*layer_norm_backward)(const float *x, const float *gain, const float *rstd, const float *mean,
                              const float *dy, float *dx, float *dgain, float *dbias, int rows, int cols);
  void (*rms_norm)(const float *x, const float *gain, float *out, float *rstd, int rows, int cols, float eps);
  void (*rms_norm_backward)(const float *x, const float *gain, const float *rstd, const float *dy, float *dx,
                            float *dgain, int rows, int cols);
  double (*sum_squares)(const float *x, int n);
  int (*first_non_finite)(const float *x, int n);
  void (*adamw)(float *w, const float *g, float *m, float *v, int n, float lr, float beta1, float beta2,
                float correct1, float correct2, float decay, float clip, float eps);
};

/** AssemblyScript's Mathf.log (its port of musl's logf), which softmax's lse must match bit for bit. */
float as_logf(float x);

#ifdef ISA
void K(gemm)(int form, int m, int n, int k, const float *a, int lda, const float *b, int ldb, float *c, int ldc,
             int accumulate, float *scratch);
size_t K(gemm_scratch_bytes)(void);
void K(relu)(const float *x, float *out, int n);
void K(relu_backward)(const float *x, const float *dy, float *dx, int n);
void K(gelu)(const float *x, float *out, int n);
void K(gelu_backward)(const float *x, const float *dy, float *dx, int n);
void K(silu)(const float *x, float *out, int n);
void K(silu_backward)(const float *x, const float *dy, float *dx, int n);
void K(swiglu)(const float *g, const float *u, float *out, int n);
void K(swiglu_backward)(const float *g, const float *u, const float *dh, float *dg, float *du, int n);
void K(add)(const float *x, const float *y, float *out, int n);
void K(add_bias)(float *x, const float *bias, int rows, int cols, int ld);
void K(bias_grad)(const float *dy, int rows, int cols, int ld, float *dbias);
void K(multiply)(const float *x, const float *y, float *out, int n);
void K(rope)(float *x, int rows, int stride, int groups, int hd, int time, const float *cos, const float *sin,
             int inverse);
void K(softmax_rows)(const float *x, float *out, float *lse, int rows, int cols);
void K(gather_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count, int cols);
void K(scatter_add_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count, int cols);
void K(scatter_rows)(const float *src, const int32_t *index, const float *scale, float *out, int count, int cols);
void K(softmax_backward_rows)(const float *p, const float *dp, float *out, int rows, int cols, float scale);
void K(causal_mask_rows)(float *s, int rows, int cols, float scale);
void K(layer_norm)(const float *x, const float *gain, const float *bias, float *out, float *rstd, float *mean,
                   int rows, int cols, float eps);
void K(layer_norm_backward)(const float *x, const float *gain, const float *rstd, const float *mean, const float *dy,
                            float *dx, float *dgain, float *dbias, int rows, int cols);
void K(rms_norm)(const float *x, const float *gain, float *out, float *rstd, int rows, int cols, float eps);
void K(rms_norm_backward)(const float *x, const float *gain, const float *rstd, const float *dy, float *dx,
                          float *dgain, int rows, int cols);
double K(sum_squares)(const float *x, int n);
int K(first_non_finite)(const float *x, int n);
void K(adamw)(float *w, const float *g, float *m, float *v, int n, float lr, float beta1, float beta2, float correct1,
              float correct2, float decay, float clip, float eps);
#endif

#endif
