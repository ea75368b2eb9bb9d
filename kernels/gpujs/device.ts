// Which gpu.js modes this machine has. gpu.js itself is loaded only when asked for, and its GPU
// modes rest on native bindings that may be missing or fail to load (no GPU, no X display, a
// binary built against a newer libstdc++): each failure becomes a reason in one line, never a
// crash, and the CPU modes (webasm, cpu) are always there.
//
// - webgpu: Dawn's `webgpu` package (our optional dependency, 0.6.2: the newest whose Linux binary
//   loads with Debian 12's libstdc++; docs/gpujs.md), installed into this thread's globals.
// - headlessgl: the `gl` package (gpu.js's optional dependency, built from source), which needs an
//   X display (Xvfb will do). Its native module registers itself once per process, so a second
//   thread that loads it gets "Module did not self-register"; every thread after the first loads
//   its own copy of the binary instead (ownCopyOnReload below).
import { copyFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

/** gpu.js's modes we run the expert FFN in: two on a GPU, two on the CPU. */
export const GPUJS_MODES = ['webgpu', 'headlessgl', 'webasm', 'cpu'] as const;
export type GpujsMode = (typeof GPUJS_MODES)[number];
export const isGpuMode = (mode: GpujsMode): boolean => mode === 'webgpu' || mode === 'headlessgl';

export type GpujsModule = typeof import('gpu.js');

export interface GpujsProbe {
  /** Modes that work here, fastest kind first (GPU modes before CPU modes). */
  modes: GpujsMode[];
  /** Why each GPU mode is missing, e.g. "headless-gl: no X display (DISPLAY is unset; run under Xvfb: xvfb-run -a …)". */
  missing: string[];
  /**
   * What each GPU mode here runs on, e.g. webgpu: "llvmpipe: Mesa 25.0.7-2~bpo12+1 (LLVM 15.0.6)
   * 0.0.1, mesa software, Dawn from webgpu 0.6.2" (headless-gl's ANGLE does not say which GL driver
   * is under it).
   */
  found: Partial<Record<GpujsMode, string>>;
}

let loaded: Promise<{ gpujs: GpujsModule; probe: GpujsProbe }> | undefined;

/** gpu.js, with WebGPU installed into this thread's globals where the `webgpu` binding loads. */
export function loadGpujs(): Promise<{ gpujs: GpujsModule; probe: GpujsProbe }> {
  loaded ??= load();
  return loaded;
}

const require = createRequire(import.meta.url);

async function load(): Promise<{ gpujs: GpujsModule; probe: GpujsProbe }> {
  const missing: string[] = [], found: GpujsProbe['found'] = {};
  const modes: GpujsMode[] = [];
  // gpu.js loads `gl` as it loads (and keeps null where that fails), so this is headless-gl's only chance.
  const gpujs = await ownCopyOnReload(() => import('gpu.js'));
  const { GPU } = gpujs;
  // headless-gl before Dawn: with Debian 12's lavapipe, which Dawn turns down, a GL context made
  // just after Dawn's adapter request failed about one time in three.
  const headlessGl = GPU.isHeadlessGLSupported;
  const webgpu = await installWebGpu().catch((error: Error) => { missing.push(`webgpu: ${firstLine(error)}`); return undefined; });
  if (webgpu) {
    const adapter = await webgpu.requestAdapter().catch(() => null);
    if (adapter && await GPU.isWebGPUAvailable()) {
      modes.push('webgpu');
      const { description, vendor, architecture } = adapter.info;
      found.webgpu = [description, [vendor, architecture].filter(Boolean).join(' '), `Dawn from webgpu ${version('webgpu')}`].filter(Boolean).join(', ');
    } else {
      missing.push(`webgpu: Dawn (webgpu ${version('webgpu')}) loaded but found no adapter (it printed why on stderr; `
        + 'without a GPU, Mesa 25\'s lavapipe will do, 22.3\'s will not: docs/gpujs.md)');
    }
  }
  if (headlessGl) {
    modes.push('headlessgl');
    found.headlessgl = `WebGL 1 through ANGLE on the X server, gl ${version('gl')}`;
  } else {
    missing.push(`headless-gl: ${headlessGlReason()}`);
  }
  if (GPU.isWebAssemblySupported) modes.push('webasm');
  modes.push('cpu');
  return { gpujs, probe: { modes, missing, found } };
}

async function installWebGpu(): Promise<{ requestAdapter(): Promise<{ info: Record<string, string> } | null> }> {
  const g = globalThis as { navigator?: { gpu?: unknown } };
  if (!g.navigator?.gpu) {
    const { create, globals } = await import('webgpu');
    Object.assign(globalThis, globals);
    const gpu = create([]);
    if (g.navigator) Object.defineProperty(g.navigator, 'gpu', { value: gpu, configurable: true });
    else g.navigator = { gpu };
  }
  return g.navigator!.gpu as Awaited<ReturnType<typeof installWebGpu>>;
}

function headlessGlReason(): string {
  let gl: (width: number, height: number) => unknown;
  try {
    gl = require('gl') as typeof gl;
  } catch (error) {
    return (error as { code?: string }).code === 'MODULE_NOT_FOUND'
      ? 'the optional gl package is not installed (it builds from source with X and Mesa development headers, docs/gpujs.md)'
      : firstLine(error as Error);
  }
  if (!process.env.DISPLAY) return 'no X display (DISPLAY is unset; run under Xvfb: xvfb-run -a …)';
  return gl(1, 1) ? 'gl made a context but gpu.js found it lacking (it needs OES_texture_float)'
    : `the gl package made no context on X display ${process.env.DISPLAY}`;
}

/**
 * Runs `load` with Node's native-module loader changed in one way: a module that answers "did not
 * self-register" (already loaded by another thread of this process, and not made for threads) is
 * loaded again from a private copy of its file, which the dynamic linker treats as a new library.
 */
async function ownCopyOnReload<T>(load: () => Promise<T>): Promise<T> {
  const dlopen = process.dlopen;
  process.dlopen = (module, filename, ...flags) => {
    try {
      return dlopen.call(process, module, filename, ...flags);
    } catch (error) {
      if (!/did not self-register/.test((error as Error).message)) throw error;
      const dir = mkdtempSync(join(tmpdir(), 'switchyard-native-'));
      try {
        const copy = join(dir, filename.split('/').pop()!);
        copyFileSync(filename, copy);
        return dlopen.call(process, module, copy, ...flags);
      } finally {
        rmSync(dir, { recursive: true, force: true }); // the mapping outlives the file
      }
    }
  };
  try {
    return await load();
  } finally {
    process.dlopen = dlopen;
  }
}

function version(pkg: string): string {
  try {
    return (require(`${pkg}/package.json`) as { version: string }).version;
  } catch {
    return '?';
  }
}

const firstLine = (error: Error): string => error.message.split('\n')[0]!.replace(/ \(required by [^)]*\)/, '');

/** One line for the log: what gpu.js can use here and, without a GPU mode, why not. */
export function describeProbe(probe: GpujsProbe): string {
  const gpu = probe.modes.filter(isGpuMode);
  return gpu.length > 0
    ? `gpu.js: GPU mode${gpu.length > 1 ? 's' : ''} ${gpu.map((m) => `${m} (${probe.found[m]})`).join(', ')}`
      + (probe.missing.length > 0 ? `; not here: ${probe.missing.join('; ')}` : '')
    : `gpu.js: no GPU mode here (${probe.missing.join('; ')}); CPU modes ${probe.modes.join(', ')} only`;
}
