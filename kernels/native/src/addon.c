// The Node-API glue: every thread (the main one, each worker) loads this addon, binds an ISA's
// kernels to the arena's shared memory, and then calls them by byte offset, as the WebAssembly
// exports are called. Nothing is copied: a kernel reads and writes the memory in place.
//
// Every argument is checked here, whatever the JavaScript side checked already: each offset is
// a multiple of 4 and the extent the kernel will touch lies inside the registered memory, else a
// RangeError names the kernel and the argument. Bad input must never take the process down.
#define NAPI_VERSION 8
#include <node_api.h>

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "kernels.h"

#if defined(__x86_64__) || defined(_M_X64)
#define X86 1
extern const struct kernel_table avx512_table, avx2_table, portable_table;
static const struct kernel_table *const TABLES[] = {&avx512_table, &avx2_table, &portable_table};
#elif defined(__aarch64__)
extern const struct kernel_table neon_table, portable_table;
static const struct kernel_table *const TABLES[] = {&neon_table, &portable_table};
#else
extern const struct kernel_table portable_table;
static const struct kernel_table *const TABLES[] = {&portable_table};
#endif
#define TABLE_COUNT (sizeof TABLES / sizeof TABLES[0])

/** One thread's state (Node-API instance data: one per environment, freed with it). */
struct thread_state {
  float *scratch;  // GEMM packing buffers, this thread's own
  size_t scratch_bytes;
};

static void free_state(napi_env env, void *data, void *hint) {
  (void)env, (void)hint;
  struct thread_state *s = data;
  free(s->scratch);
  free(s);
}

/** One ISA's kernels bound to one memory: the data behind each function `bind` returns. */
struct binding {
  const struct kernel_table *table;
  uint8_t *base;  // the registered memory
  uint64_t size;  // its length in bytes when registered
  napi_ref view;  // keeps the registered view, and so the memory, alive
};

static void free_binding(napi_env env, void *data, void *hint) {
  (void)hint;
  struct binding *b = data;
  if (b->view) napi_delete_reference(env, b->view);
  free(b);
}

static int cpu_runs(const struct kernel_table *t) {
#if X86
  __builtin_cpu_init();
  if (strcmp(t->isa, "avx512") == 0) {
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
           __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512dq") &&
           __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  if (strcmp(t->isa, "avx2") == 0) return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#endif
  (void)t;
  return 1; // portable runs anywhere; AArch64 always has NEON and FMA
}

// ---- Argument checking ------------------------------------------------------------------------

#define MAX_ARGS 13

struct call {
  napi_env env;
  struct binding *bound;
  const struct kernel_table *table;
  const char *kernel;
  napi_value argv[MAX_ARGS];
  int failed;
};

static void throw_range(struct call *c, const char *fmt, ...) {
  if (c->failed) return;
  char message[320];
  int used = snprintf(message, sizeof message, "%s ", c->kernel);
  va_list args;
  va_start(args, fmt);
  vsnprintf(message + used, sizeof message - (size_t)used, fmt, args);
  va_end(args);
  napi_throw_range_error(c->env, NULL, message);
  c->failed = 1;
}

static int begin(struct call *c, napi_env env, napi_callback_info info, const char *kernel, size_t expected) {
  size_t argc = MAX_ARGS;
  void *bound;
  c->env = env;
  c->kernel = kernel;
  c->failed = 0;
  if (napi_get_cb_info(env, info, &argc, c->argv, NULL, &bound) != napi_ok) return 0;
  c->bound = bound;
  c->table = c->bound->table;
  if (argc != expected) {
    char message[160];
    snprintf(message, sizeof message, "native %s: takes %zu arguments, got %zu", kernel, expected, argc);
    napi_throw_type_error(env, NULL, message);
    return 0;
  }
  return 1;
}

/** Argument i as an integer in [lo, hi]. */
static int64_t int_arg(struct call *c, size_t i, const char *what, int64_t lo, int64_t hi) {
  double d = NAN;
  if (c->failed) return 0;
  if (napi_get_value_double(c->env, c->argv[i], &d) != napi_ok || !(d == floor(d)) || d < (double)lo ||
      d > (double)hi) {
    throw_range(c, "%s: %g is not an integer in %lld..%lld", what, d, (long long)lo, (long long)hi);
    return 0;
  }
  return (int64_t)d;
}

/** A count, a dimension or a row stride: what the kernels index with int. */
static int dim_arg(struct call *c, size_t i, const char *what) {
  return (int)int_arg(c, i, what, 0, INT32_MAX);
}

static float float_arg(struct call *c, size_t i, const char *what) {
  double d = 0;
  if (c->failed) return 0;
  if (napi_get_value_double(c->env, c->argv[i], &d) != napi_ok) throw_range(c, "%s: not a number", what);
  return (float)d; // JavaScript's Math.fround, as a wasm f32 parameter receives it
}

/** rows × cols at a row stride ld, in elements: (rows − 1)·ld + cols, saturating. */
static uint64_t extent(int64_t rows, int64_t ld, int64_t cols) {
  uint64_t e;
  if (rows <= 0 || cols <= 0) return 0;
  if (__builtin_mul_overflow((uint64_t)(rows - 1), (uint64_t)ld, &e) || __builtin_add_overflow(e, (uint64_t)cols, &e)) {
    return UINT64_MAX;
  }
  return e;
}

/**
 * Argument i as a byte offset of `elements` 4-byte values inside the registered memory: the
 * pointer, or NULL (and a RangeError thrown) when it is not. `optional`: offset 0 means none.
 */
static void *span(struct call *c, size_t i, const char *what, uint64_t elements, int optional) {
  const int64_t offset = int_arg(c, i, what, 0, (int64_t)1 << 53);
  uint64_t bytes, end;
  if (c->failed || (optional && offset == 0)) return NULL;
  if (offset % 4 != 0) {
    throw_range(c, "%s: byte offset %lld is not a multiple of 4", what, (long long)offset);
    return NULL;
  }
  if (__builtin_mul_overflow(elements, (uint64_t)4, &bytes) || __builtin_add_overflow((uint64_t)offset, bytes, &end) ||
      end > c->bound->size) {
    throw_range(c, "%s: %llu values at byte offset %lld run past the registered memory of %llu bytes", what,
                (unsigned long long)elements, (long long)offset, (unsigned long long)c->bound->size);
    return NULL;
  }
  return c->bound->base + offset;
}

/** Row stride of a matrix: at least its row length, so rows never overlap. */
static int stride_arg(struct call *c, size_t i, const char *what, int cols) {
  const int ld = dim_arg(c, i, what);
  if (!c->failed && ld < cols) throw_range(c, "%s: row stride %d is shorter than a row of %d", what, ld, cols);
  return ld;
}

/** Every index of a gather or scatter must address a whole row inside the memory. */
static void check_rows(struct call *c, const int32_t *index, int count, const float *rows, int cols) {
  if (c->failed) return;
  const uint64_t room = (c->bound->size - (uint64_t)((const uint8_t *)rows - c->bound->base)) / 4;
  for (int i = 0; i < count; i++) {
    if (index[i] < 0 || ((uint64_t)index[i] + 1) * (uint64_t)cols > room) {
      throw_range(c, "index[%d]: row %d lies outside the registered memory", i, index[i]);
      return;
    }
  }
}

// ---- Kernels: the same arguments, in the same order, as the WebAssembly exports ---------------

#define BEGIN(name, argc)                                                        \
  struct call c;                                                                 \
  if (!begin(&c, env, info, name, argc)) return NULL

static napi_value gemm(napi_env env, napi_callback_info info) {
  BEGIN("gemm", 11);
  const int form = (int)int_arg(&c, 0, "form", 0, 2);
  const int m = dim_arg(&c, 1, "m"), n = dim_arg(&c, 2, "n"), k = dim_arg(&c, 3, "k");
  const int a_rows = form == FORM_TN ? k : m, a_cols = form == FORM_TN ? m : k;
  const int b_rows = form == FORM_NT ? n : k, b_cols = form == FORM_NT ? k : n;
  const int lda = stride_arg(&c, 5, "lda", a_cols), ldb = stride_arg(&c, 7, "ldb", b_cols);
  const int ldc = stride_arg(&c, 9, "ldc", n);
  const float *a = span(&c, 4, "A", extent(a_rows, lda, a_cols), 0);
  const float *b = span(&c, 6, "B", extent(b_rows, ldb, b_cols), 0);
  float *out = span(&c, 8, "C", extent(m, ldc, n), 0);
  const int accumulate = (int)int_arg(&c, 10, "accumulate", 0, 1);
  struct thread_state *state;
  if (c.failed || napi_get_instance_data(env, (void **)&state) != napi_ok) return NULL;
  const size_t need = c.table->gemm_scratch_bytes();
  if (state->scratch_bytes < need) {
    void *scratch = NULL;
    if (posix_memalign(&scratch, 64, need) != 0) {
      napi_throw_error(env, NULL, "native gemm: out of memory for the packing scratch");
      return NULL;
    }
    free(state->scratch);
    state->scratch = scratch;
    state->scratch_bytes = need;
  }
  c.table->gemm(form, m, n, k, a, lda, b, ldb, out, ldc, accumulate, state->scratch);
  return NULL;
}

#define UNARY(js, field)                                                         \
  static napi_value js(napi_env env, napi_callback_info info) {                  \
    BEGIN(#js, 3);                                                               \
    const int n = dim_arg(&c, 2, "n");                                           \
    const float *x = span(&c, 0, "x", n, 0);                                     \
    float *out = span(&c, 1, "out", n, 0);                                       \
    if (c.failed) return NULL;                                                   \
    c.table->field(x, out, n);                                                   \
    return NULL;                                                                 \
  }

#define BINARY(js, field, x_name, y_name, out_name)                              \
  static napi_value js(napi_env env, napi_callback_info info) {                  \
    BEGIN(#js, 4);                                                               \
    const int n = dim_arg(&c, 3, "n");                                           \
    const float *x = span(&c, 0, x_name, n, 0);                                  \
    const float *y = span(&c, 1, y_name, n, 0);                                  \
    float *out = span(&c, 2, out_name, n, 0);                                    \
    if (c.failed) return NULL;                                                   \
    c.table->field(x, y, out, n);                                                \
    return NULL;                                                                 \
  }

UNARY(relu, relu)
UNARY(gelu, gelu)
UNARY(silu, silu)
BINARY(reluBackward, relu_backward, "x", "dy", "dx")
BINARY(geluBackward, gelu_backward, "x", "dy", "dx")
BINARY(siluBackward, silu_backward, "x", "dy", "dx")
BINARY(swiglu, swiglu, "g", "u", "out")
BINARY(add, add, "x", "y", "out")
BINARY(multiply, multiply, "x", "y", "out")

static napi_value addBias(napi_env env, napi_callback_info info) {
  BEGIN("addBias", 5);
  const int rows = dim_arg(&c, 2, "rows"), cols = dim_arg(&c, 3, "cols"), ld = stride_arg(&c, 4, "ld", cols);
  float *x = span(&c, 0, "x", extent(rows, ld, cols), 0);
  const float *bias = span(&c, 1, "bias", cols, 0);
  if (c.failed) return NULL;
  c.table->add_bias(x, bias, rows, cols, ld);
  return NULL;
}

static napi_value biasGrad(napi_env env, napi_callback_info info) {
  BEGIN("biasGrad", 5);
  const int rows = dim_arg(&c, 1, "rows"), cols = dim_arg(&c, 2, "cols"), ld = stride_arg(&c, 3, "ld", cols);
  const float *dy = span(&c, 0, "dy", extent(rows, ld, cols), 0);
  float *dbias = span(&c, 4, "dBias", cols, 0);
  if (c.failed) return NULL;
  c.table->bias_grad(dy, rows, cols, ld, dbias);
  return NULL;
}

static napi_value swigluBackward(napi_env env, napi_callback_info info) {
  BEGIN("swigluBackward", 6);
  const int n = dim_arg(&c, 5, "n");
  const float *g = span(&c, 0, "g", n, 0), *u = span(&c, 1, "u", n, 0), *dh = span(&c, 2, "dh", n, 0);
  float *dg = span(&c, 3, "dg", n, 0), *du = span(&c, 4, "du", n, 0);
  if (c.failed) return NULL;
  c.table->swiglu_backward(g, u, dh, dg, du, n);
  return NULL;
}

static napi_value rope(napi_env env, napi_callback_info info) {
  BEGIN("rope", 9);
  const int rows = dim_arg(&c, 1, "rows"), stride = dim_arg(&c, 2, "stride"), groups = dim_arg(&c, 3, "groups");
  const int hd = dim_arg(&c, 4, "headDim"), time = dim_arg(&c, 5, "time");
  if (!c.failed && hd % 2 != 0) throw_range(&c, "headDim: %d is odd; the halves must pair up", hd);
  if (!c.failed && rows > 0 && time < 1) throw_range(&c, "time: %d positions for %d rows", time, rows);
  if (!c.failed && (int64_t)groups * hd > stride) {
    throw_range(&c, "stride: %d blocks of %d do not fit a row stride of %d", groups, hd, stride);
  }
  float *x = span(&c, 0, "x", extent(rows, stride, (int64_t)groups * hd), 0);
  const uint64_t table = (uint64_t)(rows < time ? rows : time) * (uint64_t)(hd / 2);
  const float *cos = span(&c, 6, "cos", table, 0), *sin = span(&c, 7, "sin", table, 0);
  const int inverse = (int)int_arg(&c, 8, "inverse", 0, 1);
  if (c.failed) return NULL;
  c.table->rope(x, rows, stride, groups, hd, time, cos, sin, inverse);
  return NULL;
}

static napi_value softmaxRows(napi_env env, napi_callback_info info) {
  BEGIN("softmaxRows", 5);
  const int rows = dim_arg(&c, 3, "rows"), cols = dim_arg(&c, 4, "cols");
  const uint64_t size = (uint64_t)rows * (uint64_t)cols;
  const float *x = span(&c, 0, "x", size, 0);
  float *out = span(&c, 1, "out", size, 0), *lse = span(&c, 2, "lse", rows, 1);
  if (c.failed) return NULL;
  c.table->softmax_rows(x, out, lse, rows, cols);
  return NULL;
}

/** gatherRows: the indexed side is src; scatterRows, scatterAddRows: out. */
#define ROWS(js, field, gather)                                                  \
  static napi_value js(napi_env env, napi_callback_info info) {                  \
    BEGIN(#js, 6);                                                               \
    const int count = dim_arg(&c, 4, "count"), cols = dim_arg(&c, 5, "cols");    \
    const uint64_t dense = (uint64_t)count * (uint64_t)cols;                     \
    const float *src = span(&c, 0, "src", gather ? 0 : dense, 0);                \
    const int32_t *index = span(&c, 1, "index", count, 0);                       \
    const float *scale = span(&c, 2, "scale", count, 1);                         \
    float *out = span(&c, 3, "out", gather ? dense : 0, 0);                      \
    check_rows(&c, index, count, gather ? src : out, cols);                      \
    if (c.failed) return NULL;                                                   \
    c.table->field(src, index, scale, out, count, cols);                         \
    return NULL;                                                                 \
  }

ROWS(gatherRows, gather_rows, 1)
ROWS(scatterAddRows, scatter_add_rows, 0)
ROWS(scatterRows, scatter_rows, 0)

static napi_value softmaxBackwardRows(napi_env env, napi_callback_info info) {
  BEGIN("softmaxBackwardRows", 6);
  const int rows = dim_arg(&c, 3, "rows"), cols = dim_arg(&c, 4, "cols");
  const uint64_t size = (uint64_t)rows * (uint64_t)cols;
  const float *p = span(&c, 0, "p", size, 0), *dp = span(&c, 1, "dp", size, 0);
  float *out = span(&c, 2, "out", size, 0);
  const float scale = float_arg(&c, 5, "scale");
  if (c.failed) return NULL;
  c.table->softmax_backward_rows(p, dp, out, rows, cols, scale);
  return NULL;
}

static napi_value causalMaskRows(napi_env env, napi_callback_info info) {
  BEGIN("causalMaskRows", 4);
  const int rows = dim_arg(&c, 1, "rows"), cols = dim_arg(&c, 2, "cols");
  float *s = span(&c, 0, "s", (uint64_t)rows * (uint64_t)cols, 0);
  const float scale = float_arg(&c, 3, "scale");
  if (c.failed || cols == 0) return NULL;
  c.table->causal_mask_rows(s, rows, cols, scale);
  return NULL;
}

/** The norms walk rows four columns at a time. */
static int norm_cols(struct call *c, size_t i) {
  const int cols = dim_arg(c, i, "cols");
  if (!c->failed && cols % 4 != 0) throw_range(c, "cols: %d is not a multiple of 4", cols);
  return cols;
}

static napi_value layerNorm(napi_env env, napi_callback_info info) {
  BEGIN("layerNorm", 9);
  const int rows = dim_arg(&c, 6, "rows"), cols = norm_cols(&c, 7);
  const uint64_t size = (uint64_t)rows * (uint64_t)cols;
  const float *x = span(&c, 0, "x", size, 0), *gain = span(&c, 1, "gain", cols, 0), *bias = span(&c, 2, "bias", cols, 1);
  float *out = span(&c, 3, "out", size, 0), *rstd = span(&c, 4, "rstd", rows, 0), *mean = span(&c, 5, "mean", rows, 0);
  const float eps = float_arg(&c, 8, "eps");
  if (c.failed) return NULL;
  c.table->layer_norm(x, gain, bias, out, rstd, mean, rows, cols, eps);
  return NULL;
}

static napi_value layerNormBackward(napi_env env, napi_callback_info info) {
  BEGIN("layerNormBackward", 10);
  const int rows = dim_arg(&c, 8, "rows"), cols = norm_cols(&c, 9);
  const uint64_t size = (uint64_t)rows * (uint64_t)cols;
  const float *x = span(&c, 0, "x", size, 0), *gain = span(&c, 1, "gain", cols, 0);
  const float *rstd = span(&c, 2, "rstd", rows, 0), *mean = span(&c, 3, "mean", rows, 0);
  const float *dy = span(&c, 4, "dy", size, 0);
  float *dx = span(&c, 5, "dx", size, 0), *dgain = span(&c, 6, "dGain", cols, 0), *dbias = span(&c, 7, "dBias", cols, 1);
  if (c.failed) return NULL;
  c.table->layer_norm_backward(x, gain, rstd, mean, dy, dx, dgain, dbias, rows, cols);
  return NULL;
}

static napi_value rmsNorm(napi_env env, napi_callback_info info) {
  BEGIN("rmsNorm", 7);
  const int rows = dim_arg(&c, 4, "rows"), cols = norm_cols(&c, 5);
  const uint64_t size = (uint64_t)rows * (uint64_t)cols;
  const float *x = span(&c, 0, "x", size, 0), *gain = span(&c, 1, "gain", cols, 0);
  float *out = span(&c, 2, "out", size, 0), *rstd = span(&c, 3, "rstd", rows, 0);
  const float eps = float_arg(&c, 6, "eps");
  if (c.failed) return NULL;
  c.table->rms_norm(x, gain, out, rstd, rows, cols, eps);
  return NULL;
}

static napi_value rmsNormBackward(napi_env env, napi_callback_info info) {
  BEGIN("rmsNormBackward", 8);
  const int rows = dim_arg(&c, 6, "rows"), cols = norm_cols(&c, 7);
  const uint64_t size = (uint64_t)rows * (uint64_t)cols;
  const float *x = span(&c, 0, "x", size, 0), *gain = span(&c, 1, "gain", cols, 0);
  const float *rstd = span(&c, 2, "rstd", rows, 0), *dy = span(&c, 3, "dy", size, 0);
  float *dx = span(&c, 4, "dx", size, 0), *dgain = span(&c, 5, "dGain", cols, 0);
  if (c.failed) return NULL;
  c.table->rms_norm_backward(x, gain, rstd, dy, dx, dgain, rows, cols);
  return NULL;
}

static napi_value sumSquares(napi_env env, napi_callback_info info) {
  BEGIN("sumSquares", 2);
  const int n = dim_arg(&c, 1, "n");
  const float *x = span(&c, 0, "x", n, 0);
  napi_value result;
  if (c.failed || napi_create_double(env, c.table->sum_squares(x, n), &result) != napi_ok) return NULL;
  return result;
}

static napi_value firstNonFinite(napi_env env, napi_callback_info info) {
  BEGIN("firstNonFinite", 2);
  const int n = dim_arg(&c, 1, "n");
  const float *x = span(&c, 0, "x", n, 0);
  napi_value result;
  if (c.failed || napi_create_int32(env, c.table->first_non_finite(x, n), &result) != napi_ok) return NULL;
  return result;
}

static napi_value adamw(napi_env env, napi_callback_info info) {
  BEGIN("adamw", 13);
  const int n = dim_arg(&c, 4, "n");
  float *w = span(&c, 0, "w", n, 0), *m = span(&c, 2, "m", n, 0), *v = span(&c, 3, "v", n, 0);
  const float *g = span(&c, 1, "g", n, 0);
  const float lr = float_arg(&c, 5, "lr"), beta1 = float_arg(&c, 6, "beta1"), beta2 = float_arg(&c, 7, "beta2");
  const float correct1 = float_arg(&c, 8, "correct1"), correct2 = float_arg(&c, 9, "correct2");
  const float decay = float_arg(&c, 10, "decay"), clip = float_arg(&c, 11, "clip"), eps = float_arg(&c, 12, "eps");
  if (c.failed) return NULL;
  c.table->adamw(w, g, m, v, n, lr, beta1, beta2, correct1, correct2, decay, clip, eps);
  return NULL;
}

// ---- Module ------------------------------------------------------------------------------------

static const struct { const char *name; napi_callback fn; } KERNELS[] = {
  {"gemm", gemm}, {"relu", relu}, {"reluBackward", reluBackward}, {"gelu", gelu}, {"geluBackward", geluBackward},
  {"silu", silu}, {"siluBackward", siluBackward}, {"swiglu", swiglu}, {"swigluBackward", swigluBackward},
  {"add", add}, {"multiply", multiply}, {"addBias", addBias}, {"biasGrad", biasGrad}, {"rope", rope}, {"softmaxRows", softmaxRows}, {"gatherRows", gatherRows},
  {"scatterAddRows", scatterAddRows}, {"scatterRows", scatterRows}, {"softmaxBackwardRows", softmaxBackwardRows},
  {"causalMaskRows", causalMaskRows}, {"layerNorm", layerNorm}, {"layerNormBackward", layerNormBackward},
  {"rmsNorm", rmsNorm}, {"rmsNormBackward", rmsNormBackward}, {"sumSquares", sumSquares},
  {"firstNonFinite", firstNonFinite}, {"adamw", adamw},
};

static napi_value throw_error(napi_env env, const char *message) {
  napi_throw_error(env, NULL, message);
  return NULL;
}

/** The memory under a Uint8Array view: its data pointer and length, or 0 with a TypeError thrown. */
static int view_memory(napi_env env, napi_value view, uint8_t **base, uint64_t *size) {
  napi_typedarray_type type;
  size_t length;
  void *data;
  // A view over a SharedArrayBuffer gives its data pointer here; napi_get_arraybuffer_info on
  // the buffer itself would refuse a shared one.
  if (napi_get_typedarray_info(env, view, &type, &length, &data, NULL, NULL) != napi_ok || type != napi_uint8_array) {
    napi_throw_type_error(env, NULL, "native kernels: pass a Uint8Array over the whole of the memory's buffer");
    return 0;
  }
  *base = data;
  *size = length;
  return 1;
}

/**
 * register(view), on a bound object: the memory grew, and `view` covers its new buffer. The
 * checks then allow its new length. Returns that length in bytes.
 */
static napi_value register_memory(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value view, result;
  void *data;
  napi_ref ref;
  uint8_t *base;
  uint64_t size;
  if (napi_get_cb_info(env, info, &argc, &view, NULL, &data) != napi_ok) return NULL;
  struct binding *b = data;
  if (argc != 1 || !view_memory(env, view, &base, &size)) return NULL;
  if (napi_create_reference(env, view, 1, &ref) != napi_ok) return throw_error(env, "native register: no reference");
  napi_delete_reference(env, b->view);
  b->view = ref;
  b->base = base;
  b->size = size;
  if (napi_create_double(env, (double)size, &result) != napi_ok) return NULL;
  return result;
}

static napi_value string_array(napi_env env, const char *const *items, size_t count) {
  napi_value array, item;
  if (napi_create_array_with_length(env, count, &array) != napi_ok) return NULL;
  for (size_t i = 0; i < count; i++) {
    if (napi_create_string_utf8(env, items[i], NAPI_AUTO_LENGTH, &item) != napi_ok ||
        napi_set_element(env, array, (uint32_t)i, item) != napi_ok) {
      return NULL;
    }
  }
  return array;
}

/** isas(): the ISA builds this CPU runs, fastest first. */
static napi_value isas(napi_env env, napi_callback_info info) {
  (void)info;
  const char *names[TABLE_COUNT];
  size_t count = 0;
  for (size_t i = 0; i < TABLE_COUNT; i++) {
    if (cpu_runs(TABLES[i])) names[count++] = TABLES[i]->isa;
  }
  return string_array(env, names, count);
}

/** cpuFeatures(): the SIMD features the dispatch looks at that this CPU has. */
static napi_value cpu_features(napi_env env, napi_callback_info info) {
  (void)info;
  const char *found[16];
  size_t count = 0;
#if X86
  __builtin_cpu_init();
#define FEATURE(name) if (__builtin_cpu_supports(name)) found[count++] = name
  FEATURE("sse4.2"); FEATURE("avx"); FEATURE("fma"); FEATURE("avx2");
  FEATURE("avx512f"); FEATURE("avx512vl"); FEATURE("avx512bw"); FEATURE("avx512dq");
#undef FEATURE
#elif defined(__aarch64__)
  found[count++] = "neon";
  found[count++] = "fma";
#endif
  return string_array(env, found, count);
}

/**
 * bind(isa, view): an object of the kernels built for `isa`, each taking byte offsets into the
 * memory under `view` (a Uint8Array over the whole of a WebAssembly.Memory's buffer), and
 * `register` for after that memory grows.
 */
static napi_value bind(napi_env env, napi_callback_info info) {
  size_t argc = 2;
  napi_value argv[2], object, fn;
  char isa[32] = "";
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok) return NULL;
  if (argc != 2 || napi_get_value_string_utf8(env, argv[0], isa, sizeof isa, NULL) != napi_ok) {
    napi_throw_type_error(env, NULL, "native bind: pass an ISA name and a Uint8Array over the memory");
    return NULL;
  }
  const struct kernel_table *table = NULL;
  for (size_t i = 0; i < TABLE_COUNT; i++) {
    if (strcmp(TABLES[i]->isa, isa) == 0) table = TABLES[i];
  }
  if (!table || !cpu_runs(table)) {
    char message[96];
    snprintf(message, sizeof message, "native kernels: no %s build runs on this CPU", isa);
    return throw_error(env, message);
  }
  struct binding *b = calloc(1, sizeof *b);
  if (!b) return throw_error(env, "native bind: out of memory");
  b->table = table;
  if (!view_memory(env, argv[1], &b->base, &b->size) || napi_create_reference(env, argv[1], 1, &b->view) != napi_ok ||
      napi_create_object(env, &object) != napi_ok || napi_add_finalizer(env, object, b, free_binding, NULL, NULL) != napi_ok) {
    if (b->view) napi_delete_reference(env, b->view);
    free(b);
    return NULL;
  }
  for (size_t i = 0; i < sizeof KERNELS / sizeof KERNELS[0]; i++) {
    if (napi_create_function(env, KERNELS[i].name, NAPI_AUTO_LENGTH, KERNELS[i].fn, b, &fn) != napi_ok ||
        napi_set_named_property(env, object, KERNELS[i].name, fn) != napi_ok) {
      return NULL;
    }
  }
  if (napi_create_function(env, "register", NAPI_AUTO_LENGTH, register_memory, b, &fn) != napi_ok ||
      napi_set_named_property(env, object, "register", fn) != napi_ok) {
    return NULL;
  }
  return object;
}

NAPI_MODULE_INIT() {
  struct thread_state *state = calloc(1, sizeof *state);
  if (!state || napi_set_instance_data(env, state, free_state, NULL) != napi_ok) {
    free(state);
    return throw_error(env, "native kernels: cannot set up this thread's state");
  }
  const struct { const char *name; napi_callback fn; } exported[] = {
    {"isas", isas}, {"cpuFeatures", cpu_features}, {"bind", bind},
  };
  for (size_t i = 0; i < sizeof exported / sizeof exported[0]; i++) {
    napi_value fn;
    if (napi_create_function(env, exported[i].name, NAPI_AUTO_LENGTH, exported[i].fn, NULL, &fn) != napi_ok ||
        napi_set_named_property(env, exports, exported[i].name, fn) != napi_ok) {
      return NULL;
    }
  }
  return exports;
}
