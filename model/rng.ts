// Seeded randomness. Every draw in Switchyard comes from a generator keyed by what it is for
// (seed, step, layer, purpose, …), never from Math.random, so a run reproduces exactly, whatever
// the number of worker threads and whatever order they run in.

/** One round of splitmix32's finaliser: a 32-bit avalanche mix. */
function mix32(h: number): number {
  h = Math.imul(h ^ (h >>> 16), 0x85ebca6b);
  h = Math.imul(h ^ (h >>> 13), 0xc2b2ae35);
  return (h ^ (h >>> 16)) >>> 0;
}

function hashString(s: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

/** xoshiro128** over a state derived from the key. */
export class Rng {
  private s0: number; private s1: number; private s2: number; private s3: number;

  constructor(...key: (number | string)[]) {
    let h = 0x9e3779b9;
    for (const part of key) {
      const v = typeof part === 'string' ? hashString(part) : part;
      if (typeof part === 'number' && !Number.isSafeInteger(part)) throw new RangeError(`Rng: key part ${part} is not an integer`);
      // Split numbers into 32-bit halves so large seeds and steps do not collide.
      h = mix32(h ^ (v >>> 0)) ^ mix32(h + Math.floor(v / 2 ** 32) + 0x632be5ab);
    }
    this.s0 = mix32(h + 0x243f6a88); this.s1 = mix32(h + 0x85a308d3);
    this.s2 = mix32(h + 0x13198a2e); this.s3 = mix32(h + 0x03707344) | 1;
  }

  /** A uniform 32-bit unsigned integer. */
  nextU32(): number {
    const result = Math.imul(rotl(Math.imul(this.s1, 5), 7), 9) >>> 0;
    const t = this.s1 << 9;
    this.s2 ^= this.s0; this.s3 ^= this.s1; this.s1 ^= this.s2; this.s0 ^= this.s3;
    this.s2 ^= t; this.s3 = rotl(this.s3, 11);
    return result;
  }

  /** Uniform in [0, 1). */
  uniform(): number {
    return this.nextU32() / 2 ** 32;
  }

  /** Standard normal (Box–Muller). */
  normal(): number {
    const u = 1 - this.uniform(); // (0, 1]: log stays finite
    return Math.sqrt(-2 * Math.log(u)) * Math.cos(2 * Math.PI * this.uniform());
  }

  /** Normal(0, std²) redrawn until within two standard deviations, as TensorFlow's truncated_normal. */
  truncatedNormal(std: number): number {
    for (;;) {
      const z = this.normal();
      if (Math.abs(z) <= 2) return z * std;
    }
  }

  fillUniform(out: Float32Array, low: number, high: number): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = low + (high - low) * this.uniform();
    return out;
  }

  fillNormal(out: Float32Array, std = 1): Float32Array {
    for (let i = 0; i < out.length; i++) out[i] = std * this.normal();
    return out;
  }
}

function rotl(x: number, k: number): number {
  return (x << k) | (x >>> (32 - k));
}
