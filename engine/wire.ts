// What crosses between threads: byte offsets into the shared memory and a few numbers, never the
// contents of an array. Every set of arrays crosses the same way: the sender replaces each array
// in the kernels' memory by a Ref (toWire), the receiver turns each Ref back into a view of the same
// bytes (fromWire). Both threads then hold an object of the same shape, and the worker calls the
// same model function the main thread would have called, with nothing marshalled by hand.
import type { Arena } from '../kernels/arena.js';

/** An array in the shared memory: its byte offset and its length in elements. */
export type Ref = { f32: number; n: number } | { i32: number; n: number };

/** T with every Float32Array and Int32Array replaced by its Ref. */
export type Wire<T> = T extends Float32Array | Int32Array ? Ref
  : T extends readonly (infer U)[] ? Wire<U>[]
  : T extends object ? { [K in keyof T]: Wire<T[K]> }
  : T;

export function toWire<T>(arena: Arena, value: T): Wire<T> {
  if (value instanceof Float32Array || value instanceof Int32Array) {
    if (!arena.owns(value)) throw new Error(`engine: an array of ${value.length} crossing threads is not in the shared memory`);
    const at = value.byteOffset, n = value.length;
    return (value instanceof Float32Array ? { f32: at, n } : { i32: at, n }) as Wire<T>;
  }
  if (Array.isArray(value)) return value.map((v: unknown) => toWire(arena, v)) as Wire<T>;
  if (typeof value === 'object' && value !== null) {
    return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toWire(arena, v)])) as Wire<T>;
  }
  return value as Wire<T>;
}

export function fromWire<T>(arena: Arena, wire: Wire<T>): T {
  if (Array.isArray(wire)) return wire.map((v: unknown) => fromWire(arena, v as Wire<unknown>)) as T;
  if (typeof wire === 'object' && wire !== null) {
    const ref = wire as Partial<{ f32: number; i32: number; n: number }>;
    if (ref.f32 !== undefined) return arena.f32At(ref.f32, ref.n!) as T;
    if (ref.i32 !== undefined) return arena.i32At(ref.i32, ref.n!) as T;
    return Object.fromEntries(Object.entries(wire).map(([k, v]) => [k, fromWire(arena, v as Wire<unknown>)])) as T;
  }
  return wire as T;
}
