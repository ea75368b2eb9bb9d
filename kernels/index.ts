// Picks a kernel backend. Nothing above kernels/ imports a backend directly.
import { Arena } from './arena.js';
import type { ArenaKernels, KernelSpec } from './arena-kernels.js';
import type { Kernels } from './kernels.js';
import { NativeKernels, type NativeIsa, loadNative } from './native/backend.js';
import { ReferenceKernels } from './reference.js';
import { WasmKernels, fastestVariant, type WasmVariant } from './wasm/backend.js';

export type { GemmForm, Kernels } from './kernels.js';
export { GEMM_FORMS } from './kernels.js';
export { Arena } from './arena.js';
export { ArenaKernels, type KernelSpec } from './arena-kernels.js';
export { NativeKernels, type NativeIsa } from './native/backend.js';
export { WasmKernels, type WasmVariant } from './wasm/backend.js';
export { kernelInfo, formatKernelInfo, type KernelInfo } from './info.js';

/** Every backend createKernels builds. */
export type KernelBackend = 'native' | 'wasm' | 'reference';
export const KERNEL_BACKENDS: readonly KernelBackend[] = ['native', 'wasm', 'reference'];
/** The backends the CLI's --backend offers today (the engine's workers run wasm only, so far). */
export type BackendName = 'wasm' | 'reference';
export const BACKENDS: readonly BackendName[] = ['wasm', 'reference'];

export interface KernelOptions {
  /**
   * 'native': the C addon; 'wasm': WebAssembly SIMD; 'reference': the plain TypeScript oracle.
   * Default: wasm when `variant` is given, native when `isa` is; else SWITCHYARD_KERNELS (native
   * or wasm) where set, else native where the addon loads, else wasm, with a one-line notice of why.
   */
  backend?: KernelBackend;
  /** WebAssembly variant; default: the fastest on this machine. */
  variant?: WasmVariant;
  /** Native ISA build; default: SWITCHYARD_NATIVE_ISA, else the fastest this CPU runs. */
  isa?: NativeIsa;
  /** Memory to work in; default: a new arena. */
  arena?: Arena;
}

export function createKernels(options: KernelOptions & { backend: 'native' | 'wasm' }): ArenaKernels;
export function createKernels(options?: KernelOptions): Kernels;
export function createKernels(options: KernelOptions = {}): Kernels {
  const backend = options.backend ?? (options.variant ? 'wasm' : options.isa ? 'native' : forcedBackend());
  switch (backend) {
    case 'reference': return new ReferenceKernels();
    case 'native': return new NativeKernels(options.arena ?? new Arena(), options.isa);
    case 'wasm': return new WasmKernels(options.arena ?? new Arena(), options.variant ?? fastestVariant());
    case undefined: return createArenaKernels(options.arena ?? new Arena());
    default: throw new Error(`unknown kernel backend '${String(backend)}' (use ${KERNEL_BACKENDS.join(', ')})`);
  }
}

/**
 * The kernels this machine runs best, on `arena`: native where the addon loads, else WebAssembly
 * with a one-line notice (once per process) saying why. SWITCHYARD_KERNELS=native|wasm decides
 * instead; forcing native where it does not load is an error naming the reason.
 */
export function createArenaKernels(arena: Arena): ArenaKernels {
  const forced = forcedBackend();
  if (forced === 'wasm') return new WasmKernels(arena, fastestVariant());
  if (forced === 'native') return new NativeKernels(arena);
  const native = loadNative();
  if (native.ok) return new NativeKernels(arena);
  const wasm = new WasmKernels(arena, fastestVariant());
  if (!noticed) {
    noticed = true;
    console.warn(`switchyard: native kernels not used (${native.reason}); running ${wasm.name}`);
  }
  return wasm;
}

let noticed = false;

/**
 * The kernels a worker thread builds from the spec the owning thread's kernels gave
 * (`kernels.workerSpec()`), on its view of the same memory (`Arena.attach(memory)`): the same
 * backend and build, so the same rounding. For example, in the owning thread
 *   const spec = kernels.workerSpec(); // per worker; post it with kernels.arena.memory
 * and in the worker
 *   const kernels = kernelsFromSpec(Arena.attach(memory), spec);
 */
export function kernelsFromSpec(arena: Arena, spec: KernelSpec): ArenaKernels {
  switch (spec.backend) {
    case 'native': return new NativeKernels(arena, spec.isa);
    case 'wasm': return new WasmKernels(arena, spec.variant, spec.scratch);
    default: throw new Error(`unknown kernel spec ${JSON.stringify(spec)}`);
  }
}

/** SWITCHYARD_KERNELS, checked. */
function forcedBackend(): 'native' | 'wasm' | undefined {
  const forced = process.env.SWITCHYARD_KERNELS;
  if (forced === undefined || forced === '') return undefined;
  if (forced !== 'native' && forced !== 'wasm') throw new Error(`SWITCHYARD_KERNELS=${forced}: use native or wasm`);
  return forced;
}
