// `switchyard info [--json] [--measure]`: what this machine runs and why: the CPU kernels (native
// ISA build or WebAssembly variant), gpu.js's modes, and what `--backend auto` would place where.
import { deviceReport } from '../engine/devices.js';
import { formatKernelInfo, kernelInfo } from '../kernels/index.js';

export async function infoCommand(o: { json?: boolean; measure?: boolean }): Promise<void> {
  const kernels = kernelInfo();
  const devices = await deviceReport({ measure: o.measure ?? false });
  if (o.json) {
    console.log(JSON.stringify({ ...kernels, devices }, null, 2));
    return;
  }
  console.log(formatKernelInfo(kernels));
  console.log(`gpu:      ${devices.summary}`);
  console.log(`auto:     ${'line' in devices.auto ? devices.auto.line.replace(/^auto: /, '') : devices.auto.notCalibrated}`
    + ('line' in devices.auto || o.measure ? '' : ' (add --measure to calibrate now)'));
}
