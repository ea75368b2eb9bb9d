// Files that must never be half-written.
import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, openSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';

/** Replaces `path` so that a crash or error leaves either the old file or the new one, never a mix. */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  writeFileAtomicWith(path, (fd) => writeFileSync(fd, data));
}

/** writeFileAtomic for a file written in parts: `write` gets the new file's descriptor. */
export function writeFileAtomicWith(path: string, write: (fd: number) => void): void {
  const dir = dirname(path);
  const temp = join(dir, `.${basename(path)}.${process.pid}.${randomBytes(6).toString('hex')}.tmp`);
  let fd: number | undefined;
  try {
    fd = openSync(temp, 'wx');
    write(fd);
    fsyncSync(fd);
    closeSync(fd);
    fd = undefined;
    renameSync(temp, path);
    // The rename itself is durable only once the directory entry is on disk.
    const dirFd = openSync(dir, 'r');
    try { fsyncSync(dirFd); } finally { closeSync(dirFd); }
  } catch (e) {
    if (fd !== undefined) try { closeSync(fd); } catch { /* the write error is the one to report */ }
    try { unlinkSync(temp); } catch { /* never created, or already renamed */ }
    throw new Error(`${path}: cannot write (${e instanceof Error ? e.message : String(e)})`, { cause: e });
  }
}

