// Which worker computes which expert. An expert's weights live in shared memory, so moving it
// to another worker costs nothing: the placement can follow the load as often as we like.

export class Placement {
  /** owner[e] = the worker that computes expert e. */
  readonly owner: Int32Array;
  private steps = 0;

  /**
   * `rebalanceEvery`: re-place from the observed load every N steps (0: never, a fixed
   * round-robin placement). `speeds`: each worker's relative throughput (default: equal).
   */
  constructor(readonly numExperts: number, readonly workers: number, readonly rebalanceEvery: number,
    readonly speeds: readonly number[] = new Array<number>(workers).fill(1)) {
    if (!Number.isInteger(workers) || workers < 1) throw new RangeError(`workers must be a positive integer, got ${workers}`);
    if (!Number.isInteger(rebalanceEvery) || rebalanceEvery < 0) {
      throw new RangeError(`rebalanceEvery must be a whole number of steps (0 = never), got ${rebalanceEvery}`);
    }
    if (speeds.length !== workers || speeds.some((v) => !(v > 0))) throw new RangeError(`speeds must be ${workers} positive numbers, got [${speeds.join(', ')}]`);
    this.owner = Int32Array.from({ length: numExperts }, (_, e) => e % workers);
  }

  /**
   * Called once per step with each expert's token count (known as soon as the router has run,
   * before any expert computes). Longest-processing-time-first: experts by load, heaviest first,
   * each to the worker that would finish it soonest (load so far plus this expert, over the
   * worker's speed); ties go to the lower index.
   */
  observe(load: ArrayLike<number>): void {
    const due = this.rebalanceEvery > 0 && this.steps % this.rebalanceEvery === 0;
    this.steps++;
    if (!due) return;
    const order = Array.from({ length: this.numExperts }, (_, e) => e).sort((a, b) => load[b]! - load[a]! || a - b);
    const total = new Array<number>(this.workers).fill(0);
    for (const e of order) {
      let best = 0;
      const finish = (w: number) => (total[w]! + load[e]!) / this.speeds[w]!;
      for (let w = 1; w < this.workers; w++) if (finish(w) < finish(best)) best = w;
      this.owner[e] = best;
      total[best]! += load[e]!;
    }
  }

  /** The experts each worker computes. */
  shards(): number[][] {
    const shards = Array.from({ length: this.workers }, () => [] as number[]);
    this.owner.forEach((w, e) => shards[w]!.push(e));
    return shards;
  }
}
