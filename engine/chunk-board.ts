// How the expert workers share one phase's work. Each expert's tokens are cut into chunks
// (ROW_BLOCK in model/expert.ts). An expert's owner (engine/placement.ts) claims its chunks from
// the front; a worker that has finished its own experts takes single chunks from the back of
// whichever expert has the most left. So a worker slowed by anything (a neighbour on its core, a
// heavier expert than the placement foresaw) hands its tail to one that is free, and when the
// load is even every expert stays with its owner, in one piece.
//
// An expert's weight gradients sum over its tokens. The owner's chunks are a prefix, which it
// adds into the gradients in chunk order. A stolen chunk j > 0 writes its share into one of the
// thief's partial slots; the main thread adds the slots after the phase, in chunk order, which
// gives the same bits as one pass (model/expert.ts). A stolen chunk 0 means the owner computes
// none of that expert, so the thief writes the gradients itself.
//
// Int32 words, in the kernels' shared memory: 0: workers that have run out of their own work;
// 1 + i: job i's claims, front | back << 16 (chunks [front, back) are unclaimed); then per partial
// slot, the job and chunk it holds (i << 16 | j, or −1); then per worker, tokens computed and
// chunks taken from other workers' experts.

const IDLE = 0;

export class ChunkBoard {
  /** Int32 words the board needs. */
  static words(jobs: number, slots: number, workers: number): number {
    return 1 + jobs + slots + 2 * workers;
  }

  constructor(private readonly view: Int32Array, readonly jobs: number, readonly slots: number, readonly workers: number) {
    if (view.length < ChunkBoard.words(jobs, slots, workers)) throw new RangeError('chunk board: view too short');
  }

  // Main thread, before the phase.

  /** Every job's chunks unclaimed, every slot empty, every count 0. */
  reset(chunks: readonly number[]): void {
    if (chunks.some((c) => c > 0xffff)) throw new RangeError('chunk board: more than 65535 chunks in one expert');
    this.view[IDLE] = 0;
    chunks.forEach((c, i) => { this.view[1 + i] = c << 16; });
    this.view.fill(-1, 1 + this.jobs, 1 + this.jobs + this.slots);
    this.view.fill(0, 1 + this.jobs + this.slots, ChunkBoard.words(this.jobs, this.slots, this.workers));
  }

  // Main thread, after the phase.

  /** The filled partial slots as [slot, job, chunk], in job then chunk order: the order to add them in. */
  filledSlots(): [number, number, number][] {
    const filled: [number, number, number][] = [];
    for (let s = 0; s < this.slots; s++) {
      const v = this.view[1 + this.jobs + s]!;
      if (v >= 0) filled.push([s, v >>> 16, v & 0xffff]);
    }
    return filled.sort((a, b) => a[1] - b[1] || a[2] - b[2]);
  }

  tokens(w: number): number { return this.view[1 + this.jobs + this.slots + 2 * w]!; }
  stolen(w: number): number { return this.view[2 + this.jobs + this.slots + 2 * w]!; }

  // Workers.

  /** Whether some worker has run out of its own work (then owners claim one chunk at a time). */
  anyIdle(): boolean { return Atomics.load(this.view, IDLE) > 0; }

  becomeIdle(): void { Atomics.add(this.view, IDLE, 1); }

  /** The owner of job i claims up to `most` chunks from the front: [first, end), or undefined when none are left. */
  claimFront(i: number, most: number): [number, number] | undefined {
    for (;;) {
      const v = Atomics.load(this.view, 1 + i);
      const front = v & 0xffff, back = v >>> 16;
      if (front >= back) return undefined;
      const end = Math.min(back, front + most);
      if (Atomics.compareExchange(this.view, 1 + i, v, end | (back << 16)) === v) return [front, end];
    }
  }

  /** Takes the last unclaimed chunk of the job with the most left: [job, chunk], or undefined when no chunk is left anywhere. */
  claimBack(): [number, number] | undefined {
    for (;;) {
      let best = -1, left = 0;
      for (let i = 0; i < this.jobs; i++) {
        const v = Atomics.load(this.view, 1 + i);
        const n = (v >>> 16) - (v & 0xffff);
        if (n > left) { best = i; left = n; }
      }
      if (best < 0) return undefined;
      const v = Atomics.load(this.view, 1 + best);
      const front = v & 0xffff, back = v >>> 16;
      if (front >= back) continue;
      if (Atomics.compareExchange(this.view, 1 + best, v, front | ((back - 1) << 16)) === v) return [best, back - 1];
    }
  }

  /** Records that partial slot s holds job i's chunk j. */
  fillSlot(s: number, i: number, j: number): void { Atomics.store(this.view, 1 + this.jobs + s, (i << 16) | j); }

  /** Worker w computed `tokens` rows, `stolen` of them from another worker's expert (as one chunk). */
  count(w: number, tokens: number, stolen: boolean): void {
    Atomics.add(this.view, 1 + this.jobs + this.slots + 2 * w, tokens);
    if (stolen) Atomics.add(this.view, 2 + this.jobs + this.slots + 2 * w, 1);
  }
}
