// Compiles the AssemblyScript kernels into the two module variants (plain SIMD, relaxed SIMD)
// and places them beside both the TypeScript sources and the compiled output in dist/.
import asc from 'assemblyscript/asc';
import { cpSync, mkdirSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const here = (path) => fileURLToPath(new URL(path, import.meta.url));
const common = [
  here('./assembly/index.ts'),
  '-O3', '--noAssert', '--runtime', 'stub',
  // The memory is the Arena's: imported, shared, up to 4 GiB (65536 pages).
  '--importMemory', '--sharedMemory', '--initialMemory', '1', '--maximumMemory', '65536',
  '--enable', 'simd', '--enable', 'threads',
];
const variants = { simd: [], relaxed: ['--enable', 'relaxed-simd'] };

mkdirSync(here('./build'), { recursive: true });
for (const [name, flags] of Object.entries(variants)) {
  const { error, stderr } = await asc.main([...common, ...flags, '-o', here(`./build/kernels-${name}.wasm`)]);
  if (error) {
    console.error(stderr.toString());
    throw new Error(`AssemblyScript build of the ${name} kernels failed: ${error.message}`);
  }
}
cpSync(here('./build'), here('../../dist/kernels/wasm/build'), { recursive: true });
console.log('wasm kernels built: kernels-simd.wasm, kernels-relaxed.wasm');
