// Where `auto` keeps what it measured (engine/devices.ts): one JSON file per user, so a machine
// and shape are timed once, not at every start.
import { mkdirSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import type { CalibrationStore } from '../engine/devices.js';
import { writeFileAtomic } from './files.js';

/** $SWITCHYARD_CACHE, else ~/.cache/switchyard. */
export const defaultCacheDir = (): string => process.env.SWITCHYARD_CACHE ?? join(homedir(), '.cache', 'switchyard');

export function calibrationFile(dir = defaultCacheDir()): CalibrationStore {
  const file = join(dir, 'calibration.json');
  return {
    read: () => {
      try {
        return JSON.parse(readFileSync(file, 'utf8')) as ReturnType<CalibrationStore['read']>;
      } catch {
        return {}; // no cache yet, or an unreadable one: measure again and rewrite it
      }
    },
    write: (all) => {
      try {
        mkdirSync(dirname(file), { recursive: true });
        writeFileAtomic(file, `${JSON.stringify(all, null, 2)}\n`); // a crash never leaves half a cache
      } catch {
        // A read-only home only costs a new calibration next time.
      }
    },
  };
}
