// One lane of the WebAssembly kernels' four-lane math (kernels/wasm/assembly/vector-math.ts and
// activations.ts), written per element so the compiler vectorises loops over it at the ISA's own
// width: lanes never interact, so any width gives the same bits as wasm's four.
//
// MADD is relaxed SIMD's f32x4.relaxed_madd: fused on the FMA builds (avx512, avx2, neon), a
// rounded multiply then an add on the portable build, like the plain-SIMD module. Everything else
// is a separate IEEE operation; the build passes -ffp-contract=off so no other product fuses.
#ifndef SWITCHYARD_VECTOR_MATH_H
#define SWITCHYARD_VECTOR_MATH_H

#include <math.h>
#include <stdint.h>
#include <string.h>

#if HAS_FMA
#define MADD(a, b, c) fmaf((a), (b), (c))
#else
#define MADD(a, b, c) ((a) * (b) + (c))
#endif

// The constants as wasm holds them: each a JavaScript double rounded to float32.
#define C_EXP_LO ((float)-87.0)
#define C_EXP_HI ((float)88.0)
#define C_LOG2E ((float)1.4426950408889634)
#define C_LN2_HI ((float)0.693145751953125)
#define C_LN2_LO ((float)1.428606765330187e-6)
#define C_HALF ((float)0.5)
#define C_INV3F ((float)(1.0 / 6.0))
#define C_INV4F ((float)(1.0 / 24.0))
#define C_INV5F ((float)(1.0 / 120.0))
#define C_INV6F ((float)(1.0 / 720.0))
#define C_ERF0 ((float)-1.26551223)
#define C_ERF1 ((float)1.00002368)
#define C_ERF2 ((float)0.37409196)
#define C_ERF3 ((float)0.09678418)
#define C_ERF4 ((float)-0.18628806)
#define C_ERF5 ((float)0.27886807)
#define C_ERF6 ((float)-1.13520398)
#define C_ERF7 ((float)1.48851587)
#define C_ERF8 ((float)-0.82215223)
#define C_ERF9 ((float)0.17087277)
#define C_SQRT1_2 ((float)0.7071067811865476)
#define C_INV_SQRT_2PI ((float)0.3989422804014327)

static inline uint32_t as_u32(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

static inline float as_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

/**
 * f32.max / f32x4.max: NaN if either is NaN, and −0 < +0. x86's maxps returns its second operand
 * for a NaN or a pair of zeros, so the plain ternary is not enough.
 */
static inline float wasm_maxf(float a, float b) {
  float m = a > b ? a : b;
  m = a == b ? as_f32(as_u32(a) & as_u32(b)) : m; // +0 unless both are −0
  return a != a || b != b ? a + b : m;
}

/**
 * exp4's lane: x = n·ln2 + r, e^r by Taylor to r⁶ in Estrin's form, times 2^n; 0 below −87.
 * n = nearest(x·log2e) by the 1.5·2²³ shift, which rounds half to even like f32x4.nearest for
 * every |x·log2e| < 2²² (here at most 127) and also leaves n's integer value in the sum's low
 * bits. It may give +0 where nearest gives −0 (x·log2e in (−½, 0)); n then only enters as n·ln2
 * subtracted from a nonzero x, or from x = ±0 where the polynomial is exactly 1 either way.
 */
static inline float exp_lane(float x) {
  const float shift = 12582912.0f; // 1.5·2²³
  int below = x < C_EXP_LO;
  x = x < C_EXP_LO ? C_EXP_LO : x; // NaN stays NaN, as through f32x4.max/min
  x = x > C_EXP_HI ? C_EXP_HI : x;
  float shifted = x * C_LOG2E + shift;
  float n = shifted - shift;
  float r = (x - n * C_LN2_HI) - n * C_LN2_LO;
  float r2 = r * r, r4 = r2 * r2;
  float q01 = 1.0f + r, q23 = MADD(r, C_INV3F, C_HALF), q45 = MADD(r, C_INV5F, C_INV4F);
  float p = MADD(r4, MADD(r2, C_INV6F, q45), MADD(r2, q23, q01));
  float scale = as_f32((as_u32(shifted) - as_u32(shift) + 127u) << 23);
  return below ? 0.0f : p * scale;
}

/** erf4's lane: erfc's Chebyshev fit, erfc(z) = t·exp(−z² + P(t)), t = 1/(1 + z/2), z = |x|. */
static inline float erf_lane(float x) {
  float z = fabsf(x);
  float t = 1.0f / MADD(z, C_HALF, 1.0f);
  float t2 = t * t, t4 = t2 * t2, t8 = t4 * t4;
  float q01 = MADD(t, C_ERF1, C_ERF0), q23 = MADD(t, C_ERF3, C_ERF2), q45 = MADD(t, C_ERF5, C_ERF4);
  float q67 = MADD(t, C_ERF7, C_ERF6), q89 = MADD(t, C_ERF9, C_ERF8);
  float p = MADD(t8, q89, MADD(t4, MADD(t2, q67, q45), MADD(t2, q23, q01)));
  float erfc = t * exp_lane(p - z * z);
  return x >= 0.0f ? 1.0f - erfc : erfc - 1.0f;
}

static inline float sigmoid_lane(float x) {
  return 1.0f / (1.0f + exp_lane(-x));
}

// Sums keep wasm's four lanes exactly (lane j adds elements j, j + 4, …), so they are written
// with four-lane vectors: loops of per-lane scalar sums are reductions the compiler may not
// vectorise, or vectorises by transposing lanes in and out of wider registers.
typedef float f32x4 __attribute__((vector_size(16)));
typedef int32_t i32x4 __attribute__((vector_size(16)));

static inline f32x4 load4(const float *p) {
  f32x4 v;
  memcpy(&v, p, sizeof v);
  return v;
}

static inline f32x4 splat4(float x) {
  return (f32x4){x, x, x, x};
}

/** wasm's hsum and laneSum of four lanes: ((l0 + l1) + l2) + l3. */
static inline float fold4(f32x4 v) {
  return ((v[0] + v[1]) + v[2]) + v[3];
}

/** f32x4.max, lane by lane (wasm_maxf). */
static inline f32x4 wasm_max4(f32x4 a, f32x4 b) {
  const i32x4 ai = (i32x4)a, bi = (i32x4)b;
  const i32x4 greater = a > b, equal = a == b, nan = (a != a) | (b != b);
  i32x4 m = (greater & ai) | (~greater & bi);
  m = (equal & (ai & bi)) | (~equal & m);
  m = (nan & (i32x4)(a + b)) | (~nan & m);
  return (f32x4)m;
}

#endif
