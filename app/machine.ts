// The machine a figure was measured on, stamped on every benchmark row and report.
import { cpus } from 'node:os';

export function machine(): Record<string, string | number> {
  return { cpu: cpus()[0]?.model ?? 'unknown', cores: cpus().length, node: process.version };
}
