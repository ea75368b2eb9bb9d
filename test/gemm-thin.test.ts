// A few rows (m ≤ 4) take gemm's thin path (kernels/wasm/assembly/gemm-thin.ts), which must give
// the packed path's bits: the same row computed among more rows, in every form, with edges in
// every dimension, strides, depth past one KC block, overwrite and accumulate.
import { describe, expect, it } from 'vitest';
import { Arena, GEMM_FORMS } from '../kernels/index.js';
import { WASM_VARIANTS, WasmKernels, kernelModule } from '../kernels/wasm/backend.js';
import { Rng } from '../model/rng.js';

const backends = WASM_VARIANTS.filter((v) => kernelModule(v)).map((v) => new WasmKernels(new Arena(), v));

describe.each(backends.map((k) => [k.name, k] as const))('%s: thin rows equal packed rows bit for bit', (_name, k) => {
  it.each(GEMM_FORMS.map((f) => [f]))('%s', (form) => {
    const rng = new Rng('thin', form);
    for (const [n, kk] of [[1, 1], [7, 3], [8, 4], [13, 257], [40, 513], [300, 70]] as const) {
      const M = 9; // the packed path's rows
      const [lda, ldb, ldc] = [kk + 3, n + 5, n + 2].map((v, i) => (form === 'tn' && i === 0 ? M + 2 : form === 'nt' && i === 1 ? kk + 5 : v));
      const aRows = form === 'tn' ? kk : M, bRows = form === 'nt' ? n : kk;
      const a = rng.fillNormal(k.allocF32(aRows * lda!)), b = rng.fillNormal(k.allocF32(bRows * ldb!)), start = rng.fillNormal(k.allocF32(M * ldc!));
      for (const accumulate of [false, true]) {
        const packed = k.allocF32(M * ldc!); packed.set(start);
        k.gemm(form, M, n, kk, a, b, packed, accumulate, { lda: lda!, ldb: ldb!, ldc: ldc! });
        for (let m = 1; m <= 4; m++) {
          for (const first of [0, M - m]) {
            const thin = k.allocF32(m * ldc!); thin.set(start.subarray(first * ldc!, (first + m) * ldc!));
            const aFirst = form === 'tn' ? a.subarray(first) : a.subarray(first * lda!);
            k.gemm(form, m, n, kk, aFirst, b, thin, accumulate, { lda: lda!, ldb: ldb!, ldc: ldc! });
            for (let r = 0; r < m; r++) {
              const want = packed.subarray((first + r) * ldc!, (first + r) * ldc! + n), got = thin.subarray(r * ldc!, r * ldc! + n);
              expect(Array.from(got), `${form} n=${n} k=${kk} m=${m} row ${first + r} accumulate=${accumulate}`).toEqual(Array.from(want));
            }
          }
        }
      }
    }
  });
});
