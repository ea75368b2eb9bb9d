// How the main thread and the expert workers wake each other: counters in one SharedArrayBuffer,
// waited on with Atomics. A step's messages themselves travel over each worker's MessagePort.
//
// Why not one Piscina task per message: on this project's 2-core VMs a Piscina round trip of an
// empty task costs ~0.22 ms and a raw Atomics round trip ~0.11 ms, and when the main thread wakes
// two workers itself, 5–10% of the time the scheduler queues both on one core for a 2–4 ms slice.
// Here the main thread wakes one worker, that worker wakes the others (while the main thread
// sleeps, so a core is free for each), and the main thread sleeps in Atomics.wait on `done` rather
// than in its event loop (docs/engine.md).
//
// Words (Int32): 0: done, bumped by every worker that finishes a request; then per worker w at
// 1 + 3w: requested (the sequence number of its latest request), started, finished. After them,
// per worker, its last request's busy milliseconds (Float64; NaN when it failed).

const DONE = 0;

export class Doorbell {
  readonly buffer: SharedArrayBuffer;
  private readonly words: Int32Array;
  private readonly busy: Float64Array;

  constructor(readonly workers: number, buffer?: SharedArrayBuffer) {
    const wordBytes = Math.ceil((4 * (1 + 3 * workers)) / 8) * 8;
    this.buffer = buffer ?? new SharedArrayBuffer(wordBytes + 8 * workers);
    this.words = new Int32Array(this.buffer, 0, 1 + 3 * workers);
    this.busy = new Float64Array(this.buffer, wordBytes, workers);
  }

  requested(w: number): number { return Atomics.load(this.words, 1 + 3 * w); }
  started(w: number): number { return Atomics.load(this.words, 2 + 3 * w); }
  finished(w: number): number { return Atomics.load(this.words, 3 + 3 * w); }
  busyMs(w: number): number { return this.busy[w]!; }
  done(): number { return Atomics.load(this.words, DONE); }

  // Main thread.

  /** Records request `seq` for worker w without waking it. */
  request(w: number, seq: number): void { Atomics.store(this.words, 1 + 3 * w, seq); }

  ring(w: number): void { Atomics.notify(this.words, 1 + 3 * w); }

  /** Sleeps until some worker finishes a request after `done` was `seen`, or `ms` pass. */
  waitForDone(seen: number, ms: number): void { Atomics.wait(this.words, DONE, seen, ms); }

  // Worker w.

  /** Sleeps until worker w has a request newer than `seen`; returns its sequence number. */
  waitForRequest(w: number, seen: number): number {
    for (;;) {
      const seq = Atomics.load(this.words, 1 + 3 * w);
      if (seq !== seen) return seq;
      Atomics.wait(this.words, 1 + 3 * w, seen);
    }
  }

  /** Worker w began request `seq`: it wakes every other worker with a request not yet begun. */
  begin(w: number, seq: number): void {
    Atomics.store(this.words, 2 + 3 * w, seq);
    for (let v = 0; v < this.workers; v++) if (v !== w && this.requested(v) !== this.started(v)) this.ring(v);
  }

  /** Worker w ended request `seq` after `busyMs` (NaN: it failed), and wakes the main thread. */
  end(w: number, seq: number, busyMs: number): void {
    this.busy[w] = busyMs;
    Atomics.store(this.words, 3 + 3 * w, seq);
    Atomics.add(this.words, DONE, 1);
    Atomics.notify(this.words, DONE);
  }
}
