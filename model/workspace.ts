// Per-step buffers of a layer: allocated from the kernels' memory during forward, kept for
// backward, released together when the next forward starts.
import type { Kernels } from '../kernels/index.js';

export class Workspace {
  private readonly live: (Float32Array | Int32Array)[] = [];

  constructor(readonly kernels: Kernels) {}

  f32(length: number): Float32Array {
    const a = this.kernels.allocF32(length);
    this.live.push(a);
    return a.fill(0);
  }

  /** Not zeroed: for buffers whose every element is written before it is read. */
  scratch(length: number): Float32Array {
    const a = this.kernels.allocF32(length);
    this.live.push(a);
    return a;
  }

  i32(length: number): Int32Array {
    const a = this.kernels.allocI32(length);
    this.live.push(a);
    return a.fill(0);
  }

  /** A copy of `source` in the kernels' memory. */
  copy(source: ArrayLike<number>): Float32Array {
    const a = this.scratch(source.length);
    a.set(source);
    return a;
  }

  release(): void {
    for (const a of this.live) this.kernels.free(a);
    this.live.length = 0;
  }
}
