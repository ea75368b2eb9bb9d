// Which gpu.js modes this machine has. gpu.js itself is loaded only when asked for, and its GPU
// modes rest on native bindings that may be missing or fail to load (no GPU; the `webgpu` binary
// needs a newer libstdc++ than Debian 12's): each failure becomes a reason in one line, never a
// crash, and the CPU modes (webasm, cpu) are always there.
import { createRequire } from 'node:module';

/** gpu.js's modes we run the expert FFN in: two on a GPU, two on the CPU. */
export const GPUJS_MODES = ['webgpu', 'headlessgl', 'webasm', 'cpu'] as const;
export type GpujsMode = (typeof GPUJS_MODES)[number];
export const isGpuMode = (mode: GpujsMode): boolean => mode === 'webgpu' || mode === 'headlessgl';

export type GpujsModule = typeof import('gpu.js');

export interface GpujsProbe {
  /** Modes that work here, fastest kind first (GPU modes before CPU modes). */
  modes: GpujsMode[];
  /** Why each GPU mode is missing, e.g. "webgpu: libstdc++.so.6: version `GLIBCXX_3.4.32' not found". */
  missing: string[];
}

let loaded: Promise<{ gpujs: GpujsModule; probe: GpujsProbe }> | undefined;

/** gpu.js, with WebGPU installed into this thread's globals where the `webgpu` binding loads. */
export function loadGpujs(): Promise<{ gpujs: GpujsModule; probe: GpujsProbe }> {
  loaded ??= load();
  return loaded;
}

async function load(): Promise<{ gpujs: GpujsModule; probe: GpujsProbe }> {
  const missing: string[] = [];
  const webgpu = await installWebGpu().catch((error: Error) => { missing.push(`webgpu: ${firstLine(error)}`); return false; });
  const gpujs = await import('gpu.js');
  const { GPU } = gpujs;
  const modes: GpujsMode[] = [];
  if (webgpu) {
    if (await GPU.isWebGPUAvailable()) modes.push('webgpu');
    else missing.push('webgpu: the binding loaded but no adapter answered');
  }
  if (GPU.isHeadlessGLSupported) modes.push('headlessgl');
  else missing.push(`headless-gl: ${headlessGlReason()}`);
  if (GPU.isWebAssemblySupported) modes.push('webasm');
  modes.push('cpu');
  return { gpujs, probe: { modes, missing } };
}

async function installWebGpu(): Promise<boolean> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (g.navigator?.gpu) return true;
  const { create, globals } = await import('webgpu');
  Object.assign(globalThis, globals);
  const gpu = create([]);
  if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
  else g.navigator = { gpu };
  return true;
}

function headlessGlReason(): string {
  try {
    createRequire(import.meta.url)('gl');
    return 'the gl package loaded but made no context';
  } catch (error) {
    return (error as { code?: string }).code === 'MODULE_NOT_FOUND'
      ? 'the optional gl package is not installed (it builds from source and needs a GPU driver)' : firstLine(error as Error);
  }
}

const firstLine = (error: Error): string => error.message.split('\n')[0]!.replace(/ \(required by [^)]*\)/, '');

/** One line for the log: what gpu.js can use here and, without a GPU mode, why not. */
export function describeProbe(probe: GpujsProbe): string {
  const gpu = probe.modes.filter(isGpuMode);
  return gpu.length > 0
    ? `gpu.js: GPU mode${gpu.length > 1 ? 's' : ''} ${gpu.join(', ')} available`
    : `gpu.js: no GPU mode here (${probe.missing.join('; ')}); CPU modes ${probe.modes.join(', ')} only`;
}
