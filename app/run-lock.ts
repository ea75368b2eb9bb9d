// One writer per run folder. Training, resuming and importing take the folder's lock before they
// write anything; a second writer is refused at once, told who holds it. Readers (eval, generate,
// report) never need it: every file is replaced atomically.
//
// proper-lockfile holds the lock as a directory whose mtime it refreshes; a holder that stops
// refreshing (killed, frozen) goes stale after STALE_MS. Beside it a small file names the holder,
// which also lets a lock left by a process that no longer runs on this host be taken at once.
import { readFileSync, rmSync } from 'node:fs';
import { hostname } from 'node:os';
import { join } from 'node:path';
import lockfile from 'proper-lockfile';
import { writeFileAtomic } from './files.js';

const STALE_MS = 30_000;

interface Holder { pid: number; host: string; command: string; since: string }

export interface RunLock { release(): Promise<void> }

const paths = (dir: string) => ({ lock: join(dir, '.writer.lock'), holder: join(dir, '.writer.json') });

/** Takes `dir`'s writer lock (the folder must exist) for `command` ('train', 'import', …). */
export async function lockRun(dir: string, command: string): Promise<RunLock> {
  const p = paths(dir);
  const take = () => lockfile.lock(dir, {
    lockfilePath: p.lock, realpath: false, stale: STALE_MS, update: STALE_MS / 6,
    onCompromised: (error) => console.error(`switchyard: the lock on ${dir} was lost (${error.message}); another writer may start`),
  });
  let release: () => Promise<void>;
  try {
    release = await take();
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== 'ELOCKED') throw new Error(`${dir}: cannot lock the run folder (${(error as Error).message})`, { cause: error });
    const holder = readHolder(p.holder);
    if (!holder || holder.host !== hostname() || alive(holder.pid)) throw new Error(`${dir} is being written by ${describe(holder)}; wait for it to finish or stop it, or choose another --out`);
    rmSync(p.lock, { recursive: true, force: true }); // its holder is gone from this host: the lock is stale
    release = await take();
  }
  writeFileAtomic(p.holder, JSON.stringify({ pid: process.pid, host: hostname(), command, since: new Date().toISOString() } satisfies Holder) + '\n');
  return {
    release: async () => {
      rmSync(p.holder, { force: true });
      await release();
    },
  };
}

function readHolder(file: string): Holder | undefined {
  try {
    return JSON.parse(readFileSync(file, 'utf8')) as Holder;
  } catch {
    return undefined; // taken a moment ago, before its holder was written
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM'; // it exists, as another user's
  }
}

const describe = (h: Holder | undefined) =>
  (h ? `\`switchyard ${h.command}\` (pid ${h.pid} on ${h.host}, since ${h.since})` : 'another switchyard process');
