// vitest's global set-up: which optional oracles this run has, and which of gpu.js's GPU modes
// (headless-gl under an X server, WebGPU where Dawn finds an adapter), printed before the tests.
import { isGpuMode, loadGpujs } from '../kernels/gpujs/device.js';
import { ORACLES } from './oracles.js';

export default async function setup(): Promise<void> {
  const lines = Object.values(ORACLES).map((o) => `  ${o.path ? 'runs   ' : 'skipped'}  ${o.name}: ${o.detail}`);
  const { probe } = await loadGpujs();
  const gpu = [
    ...probe.modes.filter(isGpuMode).map((m) => `  runs     gpu.js ${m}: ${probe.found[m]}`),
    ...probe.missing.map((why) => `  skipped  gpu.js ${why}`),
  ];
  console.log(`Optional oracles:\n${lines.join('\n')}\nOptional devices:\n${gpu.join('\n')}\n`);
}
