// What `switchyard info` reports about the kernels: the CPU, which kernels run and why.
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus } from 'node:os';
import { type NativeBuildStatus, type NativeIsa, buildStatus, loadNative, nativeIsa } from './native/backend.js';
import { WASM_VARIANTS, type WasmVariant, fastestVariant, kernelModule } from './wasm/backend.js';

export interface KernelInfo {
  node: string;
  platform: string;
  arch: string;
  cpu: { model: string; cores: number; features: string[] };
  /**
   * What createKernels() runs here: native-avx512, native-avx2, native-neon, native-portable,
   * wasm-relaxed-simd or wasm-simd; 'none' where an environment variable forces what cannot run.
   */
  kernels: string;
  /** Why those kernels. */
  why: string;
  native: {
    loaded: boolean;
    /** Why the addon is not used, where it is not. */
    reason?: string;
    file: string;
    /** The ISA builds this CPU runs, fastest first, and the one chosen. */
    isas?: NativeIsa[];
    isa?: NativeIsa;
    build?: NativeBuildStatus;
  };
  wasm: { variant: WasmVariant; variants: WasmVariant[] };
}

/** Never throws: a bad environment variable is reported as the reason. */
export function kernelInfo(): KernelInfo {
  const load = loadNative();
  const build = buildStatus(load.file);
  const native: KernelInfo['native'] = { loaded: load.ok, file: load.file, ...(build && { build }) };
  if (!load.ok) native.reason = load.reason;
  const variants = WASM_VARIANTS.filter((v) => kernelModule(v));
  const variant = attempt(fastestVariant) ?? 'simd';
  const forcedVariant = process.env.SWITCHYARD_WASM_VARIANT;
  const wasmWhy = forcedVariant ? `SWITCHYARD_WASM_VARIANT=${forcedVariant}`
    : variant === 'relaxed-simd' ? 'relaxed SIMD: this CPU fuses multiply-add' : 'plain SIMD: no fused multiply-add on this CPU (or Node)';
  let kernels = `wasm-${variant}`, why = '';
  const forced = process.env.SWITCHYARD_KERNELS;
  if (load.ok) {
    native.isas = load.addon.isas();
    const isa = attempt(() => nativeIsa(load.addon));
    if (isa) native.isa = isa;
    else native.reason = attemptError(() => nativeIsa(load.addon));
  }
  if (forced === 'wasm') {
    why = `SWITCHYARD_KERNELS=wasm; ${wasmWhy}`;
  } else if (native.isa) {
    kernels = `native-${native.isa}`;
    why = `${forced === 'native' ? 'SWITCHYARD_KERNELS=native' : 'the native addon loaded'}; ${process.env.SWITCHYARD_NATIVE_ISA
      ? `SWITCHYARD_NATIVE_ISA=${native.isa}` : `the fastest build this CPU runs (of ${native.isas!.join(', ')})`}`;
  } else if (forced === 'native' || load.ok) {
    // Forced to native, or forced to an ISA build this CPU cannot run: createKernels() throws.
    kernels = 'none';
    why = forced === 'native' ? `SWITCHYARD_KERNELS=native, but ${native.reason}` : native.reason!;
  } else {
    why = `native kernels not used: ${native.reason}; ${wasmWhy}`;
  }
  return {
    node: process.version,
    platform: process.platform,
    arch: process.arch,
    cpu: { model: cpus()[0]?.model ?? 'unknown', cores: availableParallelism(), features: load.ok ? load.addon.cpuFeatures() : cpuFlags() },
    kernels,
    why,
    native,
    wasm: { variant, variants },
  };
}

/** The text `switchyard info` prints. */
export function formatKernelInfo(info: KernelInfo): string {
  const build = info.native.build;
  return [
    `kernels:  ${info.kernels} (${info.why})`,
    `cpu:      ${info.cpu.model}, ${info.cpu.cores} cores; ${info.cpu.features.join(' ') || 'no SIMD features the kernels use'}`,
    `native:   ${info.native.loaded ? `loaded ${info.native.file}; runs ${info.native.isas!.join(', ')}` : `not used: ${info.native.reason}`}`,
    ...(build ? [`          build: ${build.built ? `built ${build.at ?? ''} with ${build.compiler ?? 'cc'}` : `failed: ${build.reason ?? '?'}`}`] : []),
    `wasm:     ${info.wasm.variant} (this Node runs ${info.wasm.variants.join(', ')})`,
    `node:     ${info.node} ${info.platform}-${info.arch}`,
  ].join('\n');
}

/** Where the addon is not loaded: the relevant flags from /proc/cpuinfo (Linux), else none. */
function cpuFlags(): string[] {
  try {
    const flags = /^(?:flags|Features)\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1]?.trim().split(/\s+/) ?? [];
    const wanted = ['sse4_2', 'avx', 'fma', 'avx2', 'avx512f', 'avx512vl', 'avx512bw', 'avx512dq', 'asimd', 'fphp'];
    return flags.filter((f) => wanted.includes(f));
  } catch {
    return [];
  }
}

function attempt<T>(f: () => T): T | undefined {
  try {
    return f();
  } catch {
    return undefined;
  }
}

function attemptError(f: () => unknown): string {
  try {
    f();
    return '';
  } catch (error) {
    return error instanceof Error ? error.message : String(error);
  }
}
