// AssemblyScript's Mathf.log, which the WebAssembly softmax uses for lse: its port of musl's
// table-driven logf (node_modules/assemblyscript/std/assembly/util/math.ts, logf_lut), in
// double precision. The C library's logf may round differently (glibc picks an FMA variant at
// run time), so lse uses this one. Built without FMA contraction, like every file here.
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

// {1/c, log c} for each of the 16 subintervals, as IEEE double bit patterns.
static const uint64_t LOGF_TABLE[16][2] = {
  {0x3FF661EC79F8F3BE, 0xBFD57BF7808CAADE}, {0x3FF571ED4AAF883D, 0xBFD2BEF0A7C06DDB},
  {0x3FF49539F0F010B0, 0xBFD01EAE7F513A67}, {0x3FF3C995B0B80385, 0xBFCB31D8A68224E9},
  {0x3FF30D190C8864A5, 0xBFC6574F0AC07758}, {0x3FF25E227B0B8EA0, 0xBFC1AA2BC79C8100},
  {0x3FF1BB4A4A1A343F, 0xBFBA4E76CE8C0E5E}, {0x3FF12358F08AE5BA, 0xBFB1973C5A611CCC},
  {0x3FF0953F419900A7, 0xBFA252F438E10C1E}, {0x3FF0000000000000, 0},
  {0x3FEE608CFD9A47AC, 0x3FAAA5AA5DF25984}, {0x3FECA4B31F026AA0, 0x3FBC5E53AA362EB4},
  {0x3FEB2036576AFCE6, 0x3FC526E57720DB08}, {0x3FE9C2D163A1AA2D, 0x3FCBC2860D224770},
  {0x3FE886E6037841ED, 0x3FD1058BC8A07EE1}, {0x3FE767DCF5534862, 0x3FD4043057B6EE09},
};

static double f64_of(uint64_t bits) {
  double d;
  memcpy(&d, &bits, sizeof d);
  return d;
}

float as_logf(float x) {
  const double ln2 = f64_of(0x3FE62E42FEFA39EF);
  const double a0 = f64_of(0xBFD00EA348B88334), a1 = f64_of(0x3FD5575B0BE00B6A), a2 = f64_of(0xBFDFFFFEF20A4123);
  uint32_t ux;
  memcpy(&ux, &x, sizeof ux);
  if (ux - 0x00800000u >= 0x7F800000u - 0x00800000u) {
    // x < 0x1p-126, or inf, or NaN.
    if ((uint32_t)(ux << 1) == 0) return -INFINITY;
    if (ux == 0x7F800000u) return x;
    if ((ux >> 31) || (uint32_t)(ux << 1) >= 0xFF000000u) return (x - x) / (x - x);
    // Subnormal: normalise it.
    float scaled = x * 8388608.0f; // 0x1p23
    memcpy(&ux, &scaled, sizeof ux);
    ux -= 23u << 23;
  }
  // x = 2^k z, z in [OFF, 2·OFF] split into 16 subintervals around c.
  uint32_t tmp = ux - 0x3F330000u;
  uint32_t i = (tmp >> (23 - 4)) & 15u;
  int32_t k = (int32_t)tmp >> 23;
  uint32_t iz = ux - (tmp & (0x1FFu << 23));
  double invc = f64_of(LOGF_TABLE[i][0]), logc = f64_of(LOGF_TABLE[i][1]);
  float zf;
  memcpy(&zf, &iz, sizeof zf);
  double z = (double)zf;
  // log(x) = log1p(z/c − 1) + log c + k·ln2
  double r = z * invc - 1.0;
  double y0 = logc + (double)k * ln2;
  double r2 = r * r;
  double y = a1 * r + a2;
  y += a0 * r2;
  y = y * r2 + (y0 + r);
  return (float)y;
}
