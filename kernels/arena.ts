// One shared WebAssembly.Memory and a first-fit allocator over it.
//
// The memory is created `shared`, so its buffer is a SharedArrayBuffer: every worker that
// instantiates the kernel module against it sees the same tensors, and a step moves offsets, not
// data. Growing a shared memory never detaches existing views, so handed-out arrays stay valid.
// Allocation is single-owner: the thread that created the arena allocates; others only compute.

const PAGE = 65536;
const ALIGN = 64; // a cache line: packed panels and SIMD rows never straddle one needlessly
/** The first page holds the kernel module's constants; allocations start above it. */
const RESERVED = PAGE;
const MAX_PAGES = 65536; // 4 GiB, the most a 32-bit memory can address

interface Block { offset: number; bytes: number }

export class Arena {
  readonly memory: WebAssembly.Memory;
  /** False for an arena attached in another thread: it computes in the memory but never allocates. */
  readonly owner: boolean;
  /** Free blocks sorted by offset, adjacent ones merged. */
  private freeList: Block[] = [];
  private top = RESERVED;
  private readonly sizes = new Map<number, number>();
  /** Every SharedArrayBuffer object this memory has shown: one per growth. */
  private readonly buffers = new Set<ArrayBufferLike>();

  constructor(initialBytes = 16 * 1024 * 1024, memory?: WebAssembly.Memory) {
    this.owner = memory === undefined;
    this.memory = memory ?? new WebAssembly.Memory({
      initial: Math.ceil((initialBytes + RESERVED) / PAGE), maximum: MAX_PAGES, shared: true,
    });
    this.buffers.add(this.memory.buffer);
  }

  /** Another thread's view of an arena's memory (posted to it as a WebAssembly.Memory). */
  static attach(memory: WebAssembly.Memory): Arena {
    return new Arena(0, memory);
  }

  /** Whether `array` is a view into this arena's memory. */
  owns(array: ArrayBufferView): boolean {
    if (this.buffers.has(array.buffer)) return true;
    // The owner may have grown the memory since this thread last looked.
    this.buffers.add(this.memory.buffer);
    return this.buffers.has(array.buffer);
  }

  /** A Float32Array view of `length` floats at byte `offset`: how a worker sees what it is sent. */
  f32At(offset: number, length: number): Float32Array {
    return new Float32Array(this.memory.buffer, offset, length);
  }

  i32At(offset: number, length: number): Int32Array {
    return new Int32Array(this.memory.buffer, offset, length);
  }

  allocBytes(bytes: number): number {
    if (!this.owner) throw new Error('arena: only the thread that created the arena allocates; this one is attached');
    if (!Number.isInteger(bytes) || bytes < 0) throw new RangeError(`arena: cannot allocate ${bytes} bytes`);
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const fit = this.freeList.findIndex((b) => b.bytes >= size);
    let offset: number;
    if (fit >= 0) {
      const block = this.freeList[fit]!;
      offset = block.offset;
      if (block.bytes === size) this.freeList.splice(fit, 1);
      else { block.offset += size; block.bytes -= size; }
    } else {
      offset = this.top;
      this.ensure(offset + size);
      this.top += size;
    }
    this.sizes.set(offset, size);
    return offset;
  }

  freeBytes(offset: number): void {
    const bytes = this.sizes.get(offset);
    if (bytes === undefined) throw new Error(`arena: offset ${offset} was not allocated here or is already free`);
    this.sizes.delete(offset);
    let i = this.freeList.findIndex((b) => b.offset > offset);
    if (i < 0) i = this.freeList.length;
    this.freeList.splice(i, 0, { offset, bytes });
    this.mergeAround(i);
  }

  allocF32(length: number): Float32Array {
    const offset = this.allocBytes(length * 4); // may grow the memory, so read .buffer after it
    return new Float32Array(this.memory.buffer, offset, length);
  }

  allocI32(length: number): Int32Array {
    const offset = this.allocBytes(length * 4);
    return new Int32Array(this.memory.buffer, offset, length);
  }

  free(array: Float32Array | Int32Array): void {
    if (!this.owns(array)) throw new Error('arena: array is not a view into this arena');
    this.freeBytes(array.byteOffset);
  }

  /** Bytes handed out and not yet freed. */
  get bytesInUse(): number {
    let total = 0;
    for (const bytes of this.sizes.values()) total += bytes;
    return total;
  }

  private ensure(end: number): void {
    const have = this.memory.buffer.byteLength;
    if (end <= have) return;
    const pages = Math.ceil((end - have) / PAGE);
    if (have / PAGE + pages > MAX_PAGES) {
      throw new RangeError(`arena: out of memory: ${end} bytes exceed the 4 GiB a 32-bit WebAssembly memory holds`);
    }
    this.memory.grow(pages);
    this.buffers.add(this.memory.buffer);
  }

  private mergeAround(i: number): void {
    const block = this.freeList[i]!;
    const next = this.freeList[i + 1];
    if (next && block.offset + block.bytes === next.offset) {
      block.bytes += next.bytes;
      this.freeList.splice(i + 1, 1);
    }
    const prev = this.freeList[i - 1];
    if (prev && prev.offset + prev.bytes === block.offset) {
      prev.bytes += block.bytes;
      this.freeList.splice(i, 1);
    }
    // A free block at the top returns to the bump region, so the free list stays short.
    const last = this.freeList[this.freeList.length - 1];
    if (last && last.offset + last.bytes === this.top) {
      this.top = last.offset;
      this.freeList.pop();
    }
  }
}
