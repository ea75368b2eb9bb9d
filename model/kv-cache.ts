// One sequence's keys and values, every layer's, so that generation computes each token once:
// a prefill runs the prompt and leaves its keys and values here, then each decode step adds one
// position (model/transformer.ts). Keys are stored after rotary positions, as attention reads them.
import type { Kernels } from '../kernels/index.js';

export class KvCache {
  /** Positions held: the next token goes at position `length`. */
  length = 0;
  /** Per layer, [context × d]: row t holds every head's key (value) at position t, heads side by side. */
  readonly keys: Float32Array[] = [];
  readonly values: Float32Array[] = [];
  private freed = false;

  constructor(private readonly kernels: Kernels, layers: number, readonly context: number, readonly d: number) {
    for (let i = 0; i < layers; i++) {
      this.keys.push(kernels.allocF32(context * d));
      this.values.push(kernels.allocF32(context * d));
    }
  }

  /** Positions left before the context is full. */
  get room(): number {
    return this.context - this.length;
  }

  /** Returns the memory to the kernels' arena; the cache cannot be used after. */
  free(): void {
    if (this.freed) return;
    this.freed = true;
    for (const a of [...this.keys, ...this.values]) this.kernels.free(a);
    this.keys.length = 0;
    this.values.length = 0;
  }

  /** Throws unless the cache can take `tokens` more positions. */
  requireRoom(tokens: number): void {
    if (this.freed) throw new Error('kv cache: used after free()');
    if (tokens > this.room) {
      throw new RangeError(`kv cache: ${tokens} more token(s) do not fit: ${this.length} of the context's ${this.context} positions are taken`);
    }
  }
}
