// Elementwise activations and their derivatives (kernels/wasm/assembly/activations.ts), lane by
// lane. dx may alias dy; nothing is `restrict`, so the compiler checks overlap before it vectorises.
#include "kernels.h"
#include "vector_math.h"

// relu's vector body is f32x4.max(x, 0) (NaN stays NaN, −0 becomes +0) but its scalar tail,
// past the last multiple of four, is `x > 0 ? x : 0` (NaN becomes 0): both kept, by position.
void K(relu)(const float *x, float *out, int n) {
  int body = n & ~3;
  for (int i = 0; i < body; i++) out[i] = x[i] > 0.0f ? x[i] : (x[i] != x[i] ? x[i] : 0.0f);
  for (int i = body; i < n; i++) out[i] = x[i] > 0.0f ? x[i] : 0.0f;
}

void K(relu_backward)(const float *x, const float *dy, float *dx, int n) {
  for (int i = 0; i < n; i++) dx[i] = x[i] > 0.0f ? dy[i] : 0.0f;
}

static inline float gelu_cdf(float v) {
  return C_HALF * (1.0f + erf_lane(v * C_SQRT1_2));
}

void K(gelu)(const float *x, float *out, int n) {
  for (int i = 0; i < n; i++) out[i] = x[i] * gelu_cdf(x[i]);
}

void K(gelu_backward)(const float *x, const float *dy, float *dx, int n) {
  for (int i = 0; i < n; i++) {
    float v = x[i];
    float pdf = C_INV_SQRT_2PI * exp_lane((v * v) * -0.5f);
    dx[i] = dy[i] * (gelu_cdf(v) + v * pdf);
  }
}

void K(silu)(const float *x, float *out, int n) {
  for (int i = 0; i < n; i++) out[i] = x[i] * sigmoid_lane(x[i]);
}

/** silu'(x) = σ(x)·(1 + x·(1 − σ(x))), with wasm's fused multiply-add inside. */
static inline float silu_grad(float v, float s) {
  return s * MADD(v, 1.0f - s, 1.0f);
}

void K(silu_backward)(const float *x, const float *dy, float *dx, int n) {
  for (int i = 0; i < n; i++) {
    float v = x[i];
    dx[i] = dy[i] * silu_grad(v, sigmoid_lane(v));
  }
}

void K(swiglu)(const float *g, const float *u, float *out, int n) {
  for (int i = 0; i < n; i++) out[i] = (g[i] * sigmoid_lane(g[i])) * u[i];
}

void K(swiglu_backward)(const float *g, const float *u, const float *dh, float *dg, float *du, int n) {
  for (int i = 0; i < n; i++) {
    float v = g[i], w = u[i], d = dh[i];
    float s = sigmoid_lane(v);
    float grad_g = (d * w) * silu_grad(v, s);
    float grad_u = d * (v * s);
    dg[i] = grad_g;
    du[i] = grad_u;
  }
}
