// `node dist/kernels/print-info.js [--json]`: what `switchyard info` will print about the kernels.
import { formatKernelInfo, kernelInfo } from './info.js';

const info = kernelInfo();
console.log(process.argv.includes('--json') ? JSON.stringify(info, null, 2) : formatKernelInfo(info));
