// Compiles the native kernels (./src) into a Node-API addon with the machine's C compiler, called
// directly (no node-gyp: its header download needs the network; the headers come from the
// node-api-headers package). Each ISA's kernels are compiled with that ISA's flags only, so the
// addon runs on any CPU of the architecture and picks at run time (addon.c); never -march=native.
//
// A failed build is not a failed install: the WebAssembly kernels run instead. Whatever happens,
// build/status.json records it, and the loader reports its reason at start-up.
// CC picks the compiler (default cc). Unchanged sources and flags skip the compile.
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cpSync, existsSync, mkdirSync, readFileSync, readdirSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { availableParallelism } from 'node:os';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const src = here('./src/'), out = here('./build/'), dist = here('../../dist/kernels/native/build/');
const ADDON = 'switchyard.node';

// -ffp-contract=off: only the FMAs the WebAssembly kernels have (fmaf, intrinsics) may fuse, or
// results would differ from wasm in the last bit. -fno-math-errno, -fno-trapping-math let loops
// over sqrtf and selects vectorise and change no value; nothing like -ffast-math, which would.
const COMMON = ['-std=gnu11', '-O3', '-fPIC', '-fvisibility=hidden', '-ffp-contract=off', '-fno-math-errno',
  '-fno-trapping-math', '-Wall', '-Wextra', '-Wno-unused-parameter'];
const KERNEL_FILES = ['activations.c', 'checks.c', 'elementwise.c', 'norms.c', 'optim.c', 'rope.c', 'rows.c', 'table.c'];

/** The ISA builds for this architecture: flags, FMA or not, and the GEMM's micro-kernel file. */
function isaBuilds(arch) {
  const portable = { isa: 'portable', flags: [], fma: 0, gemm: 'gemm_generic.c' };
  if (arch === 'x64') {
    return [
      { isa: 'avx512', flags: ['-mavx512f', '-mavx512vl', '-mavx512bw', '-mavx512dq', '-mavx2', '-mfma', '-mprefer-vector-width=512'], fma: 1, gemm: 'gemm_avx512.c' },
      { isa: 'avx2', flags: ['-mavx2', '-mfma'], fma: 1, gemm: 'gemm_avx2.c' },
      { ...portable, gemm: 'gemm_sse2.c' }, // SSE2 is x86-64's baseline
    ];
  }
  if (arch === 'arm64') return [{ isa: 'neon', flags: [], fma: 1, gemm: 'gemm_generic.c' }, portable];
  return [portable];
}

/** Every compile: [object name, source, flags]. */
function compileJobs(arch, include) {
  const base = [...COMMON, `-I${include}`];
  const jobs = [['addon.o', 'addon.c', base], ['logf.o', 'logf.c', base]];
  for (const b of isaBuilds(arch)) {
    const flags = [...base, ...b.flags, `-DISA=${b.isa}`, `-DHAS_FMA=${b.fma}`];
    for (const file of [...KERNEL_FILES, b.gemm]) jobs.push([`${b.isa}_${file.replace(/\.c$/, '.o')}`, file, flags]);
  }
  return jobs;
}

async function compilerVersion(cc) {
  try {
    const { stdout } = await run(cc, ['--version']);
    return stdout.split('\n')[0].trim();
  } catch (cause) {
    throw new Error(`no C compiler: \`${cc} --version\` failed (${cause.code === 'ENOENT' ? 'not found' : cause.message.split('\n')[0]})`);
  }
}

/** Runs the jobs a few at a time; the first failure rejects with the compiler's message. */
async function compileAll(cc, jobs, dir) {
  const queue = [...jobs];
  const worker = async () => {
    for (let job = queue.shift(); job; job = queue.shift()) {
      const [object, source, flags] = job;
      try {
        await run(cc, [...flags, '-c', `${src}${source}`, '-o', `${dir}${object}`]);
      } catch (cause) {
        throw new Error(`compiling ${source}: ${(cause.stderr || cause.message).trim().split('\n').slice(0, 6).join(' | ')}`);
      }
    }
  };
  await Promise.all(Array.from({ length: Math.max(1, availableParallelism()) }, worker));
}

async function build() {
  const cc = process.env.CC || 'cc';
  const arch = process.arch;
  const status = { built: false, arch, compiler: cc, isas: isaBuilds(arch).map((b) => b.isa), at: new Date().toISOString() };
  try {
    if (process.platform === 'win32') throw new Error('Windows needs node.lib to link an addon; this build script calls a Unix C compiler only');
    const include = createRequire(import.meta.url)('node-api-headers').include_dir;
    status.compiler = `${cc}: ${await compilerVersion(cc)}`;
    const jobs = compileJobs(arch, include);
    // The inputs that decide the output: skip the compile when none changed.
    const hash = createHash('sha256').update(JSON.stringify([status.compiler, jobs, process.versions.napi]));
    for (const file of readdirSync(src).sort()) hash.update(file).update(readFileSync(`${src}${file}`));
    status.inputs = hash.digest('hex').slice(0, 16);
    const previous = existsSync(`${out}status.json`) ? JSON.parse(readFileSync(`${out}status.json`, 'utf8')) : undefined;
    if (previous?.built && previous.inputs === status.inputs && existsSync(`${out}${ADDON}`)) {
      return { ...previous, skipped: true };
    }
    rmSync(out, { recursive: true, force: true });
    const objects = `${out}objects/`;
    mkdirSync(objects, { recursive: true });
    await compileAll(cc, jobs, objects);
    const link = ['-shared', '-o', `${out}${ADDON}.tmp`, ...jobs.map(([object]) => `${objects}${object}`), '-lm'];
    if (process.platform === 'darwin') link.push('-undefined', 'dynamic_lookup');
    try {
      await run(cc, link);
    } catch (cause) {
      throw new Error(`linking: ${(cause.stderr || cause.message).trim().split('\n').slice(0, 6).join(' | ')}`);
    }
    renameSync(`${out}${ADDON}.tmp`, `${out}${ADDON}`);
    rmSync(objects, { recursive: true, force: true });
    return { ...status, built: true };
  } catch (error) {
    return { ...status, reason: error instanceof Error ? error.message : String(error) };
  }
}

const status = await build();
mkdirSync(out, { recursive: true });
if (!status.built) rmSync(`${out}${ADDON}`, { force: true }); // never leave a stale addon beside a failure
const { skipped, ...record } = status;
writeFileSync(`${out}status.json`, `${JSON.stringify(record, null, 2)}\n`);
rmSync(dist, { recursive: true, force: true });
cpSync(out, dist, { recursive: true });
console.log(status.built
  ? `native kernels ${skipped ? 'up to date' : 'built'}: ${ADDON} (${status.isas.join(', ')}; ${status.compiler})`
  : `native kernels not built: ${status.reason}; the WebAssembly kernels will run`);
