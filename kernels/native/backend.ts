// The native backend: the C kernels in ./src, compiled at install into a Node-API addon
// (./build/switchyard.node, by ./build.mjs), computing in place in an Arena's shared memory.
// Each thread loads the addon and binds it to the memory; calls pass byte offsets, like the
// WebAssembly exports, and give the same bits as the WebAssembly variant of the same rounding
// (docs/kernels.md).
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import type { Arena } from '../arena.js';
import { ArenaKernels, type KernelSpec, type OffsetKernels } from '../arena-kernels.js';

export type NativeIsa = 'avx512' | 'avx2' | 'neon' | 'portable';
export const NATIVE_ISAS: readonly NativeIsa[] = ['avx512', 'avx2', 'neon', 'portable'];

/** The addon's functions bound to one memory (addon.c). */
interface NativeBinding extends OffsetKernels {
  /** Re-registers the memory after it grew; returns its length in bytes. */
  register(view: Uint8Array): number;
}

export interface NativeAddon {
  /** The ISA builds this CPU runs, fastest first. */
  isas(): NativeIsa[];
  /** The SIMD features the dispatch looks at that this CPU has. */
  cpuFeatures(): string[];
  /** The kernels built for `isa`, bound to the memory under `view` (a Uint8Array over all of it). */
  bind(isa: NativeIsa, view: Uint8Array): NativeBinding;
}

/** What the build left beside the addon (build.mjs). */
export interface NativeBuildStatus { built: boolean; reason?: string; compiler?: string; isas?: string[]; at?: string }

export type NativeLoad =
  | { ok: true; addon: NativeAddon; file: string }
  | { ok: false; reason: string; file: string };

const DEFAULT_ADDON = fileURLToPath(new URL('./build/switchyard.node', import.meta.url));
const loads = new Map<string, NativeLoad>();

/**
 * Loads the addon once per file and thread: `file`, else SWITCHYARD_NATIVE_ADDON, else the
 * build's output. Never throws: a missing, corrupt or foreign file is a reason, for the notice.
 */
export function loadNative(file = process.env.SWITCHYARD_NATIVE_ADDON || DEFAULT_ADDON): NativeLoad {
  let load = loads.get(file);
  if (!load) {
    load = tryLoad(file);
    loads.set(file, load);
  }
  return load;
}

function tryLoad(file: string): NativeLoad {
  if (!existsSync(file)) {
    const status = buildStatus(file);
    const why = status?.built === false && status.reason ? `not built: ${status.reason}` : `${file} is missing; run \`npm run build\``;
    return { ok: false, reason: why, file };
  }
  try {
    const addon = createRequire(import.meta.url)(file) as NativeAddon;
    if (typeof addon.bind !== 'function' || typeof addon.isas !== 'function') throw new Error('it is not the switchyard kernels addon');
    return { ok: true, addon, file };
  } catch (error) {
    const message = (error instanceof Error ? error.message : String(error)).split('\n')[0];
    return { ok: false, reason: `cannot load ${file}: ${message}`, file };
  }
}

/** The build's status.json beside the addon, if any. */
export function buildStatus(file = process.env.SWITCHYARD_NATIVE_ADDON || DEFAULT_ADDON): NativeBuildStatus | undefined {
  try {
    return JSON.parse(readFileSync(new URL('./status.json', `file://${file}`), 'utf8')) as NativeBuildStatus;
  } catch {
    return undefined;
  }
}

/**
 * The ISA to run: SWITCHYARD_NATIVE_ISA where set (a lower one, to test or compare it; one this
 * CPU cannot run is an error), else the fastest this CPU runs.
 */
export function nativeIsa(addon: NativeAddon): NativeIsa {
  const runs = addon.isas();
  const forced = process.env.SWITCHYARD_NATIVE_ISA;
  if (forced !== undefined && forced !== '') {
    if (!(NATIVE_ISAS as readonly string[]).includes(forced)) {
      throw new Error(`SWITCHYARD_NATIVE_ISA=${forced}: use one of ${NATIVE_ISAS.join(', ')}`);
    }
    if (!runs.includes(forced as NativeIsa)) {
      throw new Error(`SWITCHYARD_NATIVE_ISA=${forced}: this CPU runs only ${runs.join(', ')}`);
    }
    return forced as NativeIsa;
  }
  return runs[0]!;
}

/** The native kernels of one ISA build, bound to an arena's memory in this thread. */
export class NativeKernels extends ArenaKernels {
  readonly name: string;
  readonly isa: NativeIsa;
  private readonly binding: NativeBinding;
  /** The memory's length when this thread last registered it. */
  private registered: number;

  /** Throws, naming the reason, where the addon does not load or this CPU cannot run `isa`. */
  constructor(arena: Arena, isa?: NativeIsa, addonFile?: string) {
    const load = loadNative(addonFile);
    if (!load.ok) throw new Error(`native kernels: ${load.reason}`);
    // A shared memory's buffer never moves or detaches; a plain one's does when it grows.
    if (!(arena.memory.buffer instanceof SharedArrayBuffer)) throw new Error('native kernels: the arena\'s memory must be shared');
    const chosen = isa ?? nativeIsa(load.addon);
    const view = new Uint8Array(arena.memory.buffer);
    const binding = load.addon.bind(chosen, view);
    super(arena, binding);
    this.binding = binding;
    this.registered = view.byteLength;
    this.isa = chosen;
    this.name = `native-${chosen}`;
  }

  workerSpec(): KernelSpec {
    return { backend: 'native', isa: this.isa };
  }

  /** Offsets past the registered length mean the memory grew since: register its new buffer first. */
  protected override ptr(kernel: string, arg: string, array: Float32Array | Int32Array): number {
    const at = super.ptr(kernel, arg, array);
    if (at + array.byteLength > this.registered) this.registered = this.binding.register(new Uint8Array(this.arena.memory.buffer));
    return at;
  }
}
