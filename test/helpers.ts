// What several test files share: the reference cases' comparison (test/reference/FORMAT.md), and
// the engine's faults, injected through wrapped thread scripts (test/fixtures/).
import { fileURLToPath } from 'node:url';
import { setEnvironmentData } from 'node:worker_threads';

export { relativeError } from '../app/reference-case.js';

/** The expert worker with injectable faults: pass as the engine's `workerScript`. */
export const FAULTY_WORKER = fileURLToPath(new URL('./fixtures/faulty-worker.mjs', import.meta.url));

/** The engine's own thread (createEngine), dying on its third request. */
export const DYING_HOST = fileURLToPath(new URL('./fixtures/dying-host.mjs', import.meta.url));

export type Fault = 'throw' | 'exit' | 'hang' | 'slow';
const CODES: Record<Fault, number> = { throw: 1, exit: 2, hang: 3, slow: 4 };
// Threads started after this see the table (worker_threads environment data is copied to new threads).
const faults = new Int32Array(new SharedArrayBuffer(4 * 64));
setEnvironmentData('switchyard:test-faults', faults.buffer);

/** Worker w fails its next message this way (workers started from FAULTY_WORKER). */
export function injectFault(w: number, fault: Fault): void {
  Atomics.store(faults, w, CODES[fault]);
}
