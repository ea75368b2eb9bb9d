// The WebAssembly SIMD backend: the AssemblyScript module in ./assembly, compiled at install into
// two variants (plain SIMD, and relaxed SIMD whose f32x4.relaxed_madd becomes a fused multiply-add),
// instantiated against an Arena's shared memory.
import { readFileSync } from 'node:fs';
import { setFlagsFromString } from 'node:v8';
import type { Arena } from '../arena.js';
import { ArenaKernels, type KernelSpec, type OffsetKernels } from '../arena-kernels.js';

export type WasmVariant = 'simd' | 'relaxed-simd';
export const WASM_VARIANTS: readonly WasmVariant[] = ['simd', 'relaxed-simd'];

/** The module's exports: the offset-level kernels, but gemm also takes this instance's scratch offset. */
interface KernelExports extends Omit<OffsetKernels, 'gemm'> {
  gemm(form: number, m: number, n: number, k: number, a: number, lda: number, b: number, ldb: number,
    c: number, ldc: number, accumulate: number, scratch: number): void;
  gemmScratchBytes(): number;
}

const modules = new Map<WasmVariant, WebAssembly.Module | null>();

/**
 * The compiled module of a variant, or null where this Node cannot run it. Node 20 compiles
 * relaxed SIMD only behind a V8 flag, which must be set before the module is compiled.
 */
export function kernelModule(variant: WasmVariant): WebAssembly.Module | null {
  if (!modules.has(variant)) {
    if (variant === 'relaxed-simd') setFlagsFromString('--experimental-wasm-relaxed-simd');
    const file = new URL(`./build/kernels-${variant === 'simd' ? 'simd' : 'relaxed'}.wasm`, import.meta.url);
    let bytes: Uint8Array<ArrayBuffer>;
    try {
      bytes = new Uint8Array(readFileSync(file));
    } catch (cause) {
      throw new Error(`wasm kernels: ${file.pathname} is missing; run \`npm run build\``, { cause });
    }
    modules.set(variant, WebAssembly.validate(bytes) ? new WebAssembly.Module(bytes) : null);
  }
  return modules.get(variant)!;
}

/** The WebAssembly kernels of one variant, instantiated against an arena's memory. */
export class WasmKernels extends ArenaKernels {
  readonly name: string;
  readonly variant: WasmVariant;
  /** Bytes of GEMM scratch each instance needs. */
  readonly scratchBytes: number;

  /** `scratch`: byte offset of this instance's GEMM scratch; allocated from the arena when omitted. */
  constructor(arena: Arena, variant: WasmVariant, scratch?: number) {
    const module = kernelModule(variant);
    if (!module) throw new Error(`wasm kernels: this Node.js (${process.version}) cannot compile the ${variant} variant`);
    const exports = new WebAssembly.Instance(module, { env: { memory: arena.memory } }).exports as unknown as KernelExports;
    const scratchBytes = exports.gemmScratchBytes();
    const at = scratch ?? arena.allocBytes(scratchBytes);
    const wasmGemm = exports.gemm;
    super(arena, {
      ...exports,
      gemm: (form, m, n, k, a, lda, b, ldb, c, ldc, accumulate) => wasmGemm(form, m, n, k, a, lda, b, ldb, c, ldc, accumulate, at),
    });
    this.variant = variant;
    this.name = `wasm-${variant}`;
    this.scratchBytes = scratchBytes;
  }

  workerSpec(): KernelSpec {
    return { backend: 'wasm', variant: this.variant, scratch: this.arena.allocBytes(this.scratchBytes) };
  }
}

/**
 * The variant to run: relaxed SIMD wherever this Node compiles it and the CPU fuses multiply-add
 * (every arm64 CPU; x86-64 with FMA3, read from /proc/cpuinfo on Linux), else plain SIMD.
 * Measured on this project's Ice Lake machines, FMA runs GEMM 1.5–1.6× faster (docs/kernels.md);
 * without FMA, V8 lowers relaxed_madd to a multiply and an add, no faster than plain SIMD.
 * Decided from the machine, not by timing it, so every run on a machine rounds the same way
 * (a run's loss curve is reproducible) however busy the machine is. SWITCHYARD_WASM_VARIANT overrides.
 */
export function fastestVariant(): WasmVariant {
  const forced = process.env.SWITCHYARD_WASM_VARIANT;
  if (forced !== undefined && forced !== '') {
    if (!(WASM_VARIANTS as readonly string[]).includes(forced)) {
      throw new Error(`SWITCHYARD_WASM_VARIANT=${forced}: use one of ${WASM_VARIANTS.join(', ')}`);
    }
    return forced as WasmVariant;
  }
  return kernelModule('relaxed-simd') && cpuHasFma() ? 'relaxed-simd' : 'simd';
}

function cpuHasFma(): boolean {
  if (process.arch === 'arm64') return true;
  if (process.arch !== 'x64') return false;
  try {
    return /^flags\s*:.*\bfma\b/m.test(readFileSync('/proc/cpuinfo', 'utf8'));
  } catch {
    return true; // not Linux: every x86-64 Mac and current PC CPU has FMA3
  }
}
