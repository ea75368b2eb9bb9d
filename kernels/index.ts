// Picks a kernel backend. Nothing above kernels/ imports a backend directly.
import { Arena } from './arena.js';
import type { Kernels } from './kernels.js';
import { ReferenceKernels } from './reference.js';
import { WasmKernels, fastestVariant, type WasmVariant } from './wasm/backend.js';

export type { GemmForm, Kernels } from './kernels.js';
export { GEMM_FORMS } from './kernels.js';
export { Arena } from './arena.js';

export type BackendName = 'wasm' | 'reference';
export const BACKENDS: readonly BackendName[] = ['wasm', 'reference'];

export interface KernelOptions {
  /** 'wasm' (default): WebAssembly SIMD; 'reference': the plain TypeScript oracle. */
  backend?: BackendName;
  /** WebAssembly variant; default: the fastest on this machine. */
  variant?: WasmVariant;
  /** Memory to work in; default: a new arena. */
  arena?: Arena;
}

export function createKernels(options: KernelOptions = {}): Kernels {
  const backend = options.backend ?? 'wasm';
  switch (backend) {
    case 'reference': return new ReferenceKernels();
    case 'wasm': return new WasmKernels(options.arena ?? new Arena(), options.variant ?? fastestVariant());
    default: throw new Error(`unknown kernel backend '${String(backend)}' (use ${BACKENDS.join(' or ')})`);
  }
}
