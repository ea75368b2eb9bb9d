// Checkpoints in Hugging Face's safetensors format, so that other tools (the Python `safetensors`
// library, torch, numpy) read what we write. Every error names the file and what is wrong with it.

import { createHash } from 'node:crypto';
import { closeSync, fstatSync, openSync, readFileSync, readSync, writeSync } from 'node:fs';
import { bf16Bits } from '../model/precision.js';
import { writeFileAtomic, writeFileAtomicWith } from './files.js';

export type DType = 'F32' | 'BF16' | 'I32';
export interface Tensor { dtype: DType; shape: number[]; data: Float32Array | Int32Array }
export interface SafetensorsFile { tensors: Record<string, Tensor>; metadata: Record<string, string> }

const BYTES: Record<DType, number> = { F32: 4, BF16: 2, I32: 4 };
// The integrity key is ours: written on encode, verified and removed on decode. Its value is
// `file:` and the sha256 of the header (without this key) and the data, so a changed byte anywhere
// is refused; files from before the header was covered hold the data's sha256 alone.
const HASH_KEY = 'sha256';
const FILE_HASH = 'file:';
const HASH_LENGTH = FILE_HASH.length + 64;

/** What the checksum covers of the header: its JSON without the checksum, entries in file header order. */
const hashedHeader = (header: object, metadata: Record<string, string>) => JSON.stringify({ ...header, __metadata__: metadata });

// The format is little-endian and tensor bytes are copied as they lie in memory.
if (new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) throw new Error('checkpoint: big-endian platforms are not supported');

const fail = (source: string, problem: string): never => { throw new Error(`${source}: ${problem}`); };
const showShape = (shape: readonly number[]) => `[${shape.join('×')}]`;
const count = (shape: readonly number[]) => shape.reduce((a, b) => a * b, 1);
const isCount = (v: unknown): v is number => Number.isSafeInteger(v) && (v as number) >= 0;

function tensorBytes(source: string, name: string, t: Tensor): Uint8Array {
  if (!Object.hasOwn(BYTES, t.dtype)) fail(source, `unsupported dtype "${String(t.dtype)}" of tensor "${name}"`);
  if (!Array.isArray(t.shape) || !t.shape.every(isCount)) fail(source, `tensor "${name}" has an invalid shape ${JSON.stringify(t.shape)}`);
  const wantInt = t.dtype === 'I32';
  if (wantInt ? !(t.data instanceof Int32Array) : !(t.data instanceof Float32Array)) {
    fail(source, `tensor "${name}" of ${t.dtype} needs ${wantInt ? 'an Int32Array' : 'a Float32Array'}`);
  }
  if (t.data.length !== count(t.shape)) fail(source, `tensor "${name}" has ${t.data.length} values but shape ${showShape(t.shape)}`);
  if (t.dtype !== 'BF16') return new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  const bits = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.length);
  const half = new Uint16Array(bits.length);
  for (let i = 0; i < bits.length; i++) half[i] = bf16Bits(bits[i]!);
  return new Uint8Array(half.buffer);
}

interface Part { name: string; dtype: DType; shape: number[]; offsets: [number, number] }

/**
 * Where each tensor goes: wider dtypes first, as the reference writer does, so every tensor starts
 * at a multiple of its element size (torch refuses to view unaligned bytes as float32); the sort is
 * stable, so the given order holds within each width. Returns the parts in file order.
 */
function layout(source: string, items: { name: string; dtype: DType; shape: number[] }[], metadata: Record<string, string>): Part[] {
  if (Object.hasOwn(metadata, HASH_KEY)) fail(source, `metadata key "${HASH_KEY}" is reserved for the checksum`);
  for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') fail(source, `metadata "${k}" is not a string`);
  for (const { name } of items) if (name === '__metadata__' || name === '') fail(source, `invalid tensor name "${name}"`);
  const parts = items.map(({ name, dtype, shape }): Part => ({ name, dtype, shape, offsets: [0, 0] }));
  let offset = 0;
  for (const p of [...parts].sort((x, y) => BYTES[y.dtype] - BYTES[x.dtype])) {
    const bytes = count(p.shape) * BYTES[p.dtype];
    p.offsets = [offset, offset + bytes];
    offset += bytes;
  }
  return parts;
}

/** The header's tensor entries, in the given tensor order. */
const entriesOf = (parts: Part[]) => Object.fromEntries(parts.map(({ name, dtype, shape, offsets }) => [name, { dtype, shape, data_offsets: offsets }]));

/** A checksum over the header (without it) and the data, fed in file order. */
function fileHash(parts: Part[], metadata: Record<string, string>) {
  const hash = createHash('sha256').update(hashedHeader({ __metadata__: metadata, ...entriesOf(parts) }, metadata));
  return { update: (bytes: Uint8Array) => { hash.update(bytes); }, value: () => FILE_HASH + hash.digest('hex') };
}

/** The 8-byte length and the JSON header (in the given tensor order), padded to 8 with spaces as the reference implementation does. */
function header(parts: Part[], metadata: Record<string, string>, hash: string): Uint8Array {
  const raw = new TextEncoder().encode(JSON.stringify({ __metadata__: { ...metadata, [HASH_KEY]: hash }, ...entriesOf(parts) }));
  const headerLength = Math.ceil(raw.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength).fill(0x20);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(raw, 8);
  return out;
}

const inFileOrder = (parts: Part[]) => [...parts].sort((x, y) => x.offsets[0] - y.offsets[0]);

function encode(source: string, tensors: Record<string, Tensor>, metadata: Record<string, string>): Uint8Array {
  const parts = layout(source, Object.entries(tensors).map(([name, t]) => {
    if (!Object.hasOwn(BYTES, t.dtype)) fail(source, `unsupported dtype "${String(t.dtype)}" of tensor "${name}"`);
    return { name, dtype: t.dtype, shape: t.shape };
  }), metadata);
  const data = inFileOrder(parts).map((p) => tensorBytes(source, p.name, tensors[p.name]!));
  const hash = fileHash(parts, metadata);
  for (const bytes of data) hash.update(bytes);
  const head = header(parts, metadata, hash.value());
  const out = new Uint8Array(head.length + data.reduce((n, b) => n + b.length, 0));
  out.set(head);
  let at = head.length;
  for (const bytes of data) { out.set(bytes, at); at += bytes.length; }
  return out;
}

export function encodeSafetensors(tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): Uint8Array {
  return encode('safetensors', tensors, metadata);
}

export function decodeSafetensors(bytes: Uint8Array, source: string): SafetensorsFile {
  if (bytes.length < 8) fail(source, `truncated: ${bytes.length} bytes, too short for the 8-byte header length`);
  const headerLength = new DataView(bytes.buffer, bytes.byteOffset, 8).getBigUint64(0, true);
  if (headerLength > BigInt(bytes.length - 8)) fail(source, `truncated: header says ${headerLength} bytes but the file has ${bytes.length - 8} after the length`);
  const dataStart = 8 + Number(headerLength);
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(8, dataStart)));
  } catch {
    fail(source, 'not a safetensors file: header is not valid JSON');
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) fail(source, 'not a safetensors file: header is not a JSON object');
  const { __metadata__: meta = {}, ...entries } = header as Record<string, unknown>;
  if (typeof meta !== 'object' || meta === null || Array.isArray(meta) || !Object.values(meta).every((v) => typeof v === 'string')) {
    fail(source, '__metadata__ must map names to strings');
  }
  const { [HASH_KEY]: expectedHash, ...metadata } = meta as Record<string, string>;

  const dataLength = bytes.length - dataStart;
  const spans: { name: string; dtype: DType; shape: number[]; begin: number; end: number }[] = [];
  for (const [name, entry] of Object.entries(entries)) {
    const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !Array.isArray(shape) || !Array.isArray(offsets)) fail(source, `tensor "${name}" needs dtype, shape and data_offsets`);
    if (!Object.hasOwn(BYTES, dtype as string)) fail(source, `unsupported dtype "${String(dtype)}" of tensor "${name}"`);
    if (!(shape as unknown[]).every(isCount)) fail(source, `tensor "${name}" has an invalid shape ${JSON.stringify(shape)}`);
    const [begin, end] = offsets as unknown[];
    if ((offsets as unknown[]).length !== 2 || !isCount(begin) || !isCount(end) || begin > end) {
      fail(source, `tensor "${name}" has invalid data_offsets ${JSON.stringify(offsets)}`);
    }
    const [b, e] = [begin as number, end as number];
    if (e > dataLength) fail(source, `tensor "${name}" data_offsets [${b}, ${e}] run past the data section (${dataLength} bytes)`);
    const n = count(shape as number[]);
    if (n * BYTES[dtype as DType] !== e - b) fail(source, `tensor "${name}" has ${n} values of ${String(dtype)} but data_offsets cover ${e - b} bytes`);
    spans.push({ name, dtype: dtype as DType, shape: shape as number[], begin: b, end: e });
  }
  // Like the reference loader: the tensors must tile the data section exactly, in any header order.
  const sorted = [...spans].sort((x, y) => x.begin - y.begin || x.end - y.end);
  let covered = 0;
  for (const s of sorted) { if (s.begin !== covered) fail(source, 'tensors overlap or leave gaps'); covered = s.end; }
  if (covered !== dataLength) fail(source, 'tensors overlap or leave gaps');

  if (expectedHash !== undefined) {
    const data = bytes.subarray(dataStart);
    const hash = createHash('sha256');
    if (expectedHash.startsWith(FILE_HASH)) hash.update(hashedHeader(header as object, metadata));
    const actual = (expectedHash.startsWith(FILE_HASH) ? FILE_HASH : '') + hash.update(data).digest('hex');
    if (actual !== expectedHash) fail(source, 'data was modified: sha256 mismatch');
  }

  // Copying (ArrayBuffer.slice) gives every tensor its own aligned buffer, independent of `bytes`.
  const tensors = Object.fromEntries(spans.map(({ name, dtype, shape, begin, end }): [string, Tensor] => {
    const copy = bytes.buffer.slice(bytes.byteOffset + dataStart + begin, bytes.byteOffset + dataStart + end);
    if (dtype === 'I32') return [name, { dtype, shape, data: new Int32Array(copy) }];
    if (dtype === 'F32') return [name, { dtype, shape, data: new Float32Array(copy) }];
    const half = new Uint16Array(copy);
    const data = new Float32Array(half.length);
    const bits = new Uint32Array(data.buffer);
    for (let i = 0; i < half.length; i++) bits[i] = half[i]! << 16;
    return [name, { dtype, shape, data }];
  }));
  return { tensors, metadata };
}

export function saveSafetensors(path: string, tensors: Record<string, Tensor>, metadata: Record<string, string> = {}): void {
  writeFileAtomic(path, encode(path, tensors, metadata));
}

/** A tensor whose values are made when the writer reaches it, so that a file may be larger than what fits in memory at once. */
export interface LazyTensor { dtype: DType; shape: number[]; data: () => Float32Array | Int32Array }

/**
 * saveSafetensors for files of any size: the same bytes, written tensor by tensor (each `data()` is
 * called once, in file order), the checksum patched into the header at the end; atomic as saveSafetensors.
 */
export function writeSafetensors(path: string, tensors: Record<string, LazyTensor>, metadata: Record<string, string> = {}): void {
  const parts = layout(path, Object.entries(tensors).map(([name, t]) => {
    if (!Object.hasOwn(BYTES, t.dtype)) fail(path, `unsupported dtype "${String(t.dtype)}" of tensor "${name}"`);
    return { name, dtype: t.dtype, shape: t.shape };
  }), metadata);
  writeFileAtomicWith(path, (fd) => {
    const placeholder = header(parts, metadata, '0'.repeat(HASH_LENGTH));
    let at = placeholder.length;
    writeAll(fd, placeholder, 0);
    const hash = fileHash(parts, metadata);
    for (const p of inFileOrder(parts)) {
      const t = tensors[p.name]!;
      const bytes = tensorBytes(path, p.name, { dtype: t.dtype, shape: t.shape, data: t.data() });
      hash.update(bytes);
      writeAll(fd, bytes, at);
      at += bytes.length;
    }
    writeAll(fd, header(parts, metadata, hash.value()), 0); // as long as the placeholder
  });
}

function writeAll(fd: number, bytes: Uint8Array, position: number): void {
  for (let done = 0; done < bytes.length;) done += writeSync(fd, bytes, done, Math.min(bytes.length - done, 1 << 30), position + done);
}

export type StoredDType = DType | 'F16';
export interface StoredTensor { dtype: string; shape: number[]; begin: number; end: number }

/**
 * A safetensors file read by position: the header at open, each tensor when asked, so files of any
 * size (readFileSync stops at 2 GiB) and any number of them (a sharded checkpoint) cost only what is read.
 */
export class SafetensorsReader {
  readonly tensors: Record<string, StoredTensor> = {};
  readonly metadata: Record<string, string>;
  private readonly fd: number;
  private readonly dataStart: number;
  private readonly expectedHash: string | undefined;
  /** What the checksum covers of the header, where it covers the header. */
  private readonly header: string;

  constructor(readonly path: string) {
    let fd: number;
    try {
      fd = openSync(path, 'r');
    } catch (e) {
      throw new Error(`${path}: cannot read (${e instanceof Error ? e.message : String(e)})`, { cause: e });
    }
    this.fd = fd;
    const bad: (problem: string) => never = (problem) => { closeSync(fd); return fail(path, problem); };
    const size = fstatSync(fd).size;
    if (size < 8) bad(`truncated: ${size} bytes, too short for the 8-byte header length`);
    const headerLength = Number(new DataView(this.bytes(0, 8).buffer).getBigUint64(0, true));
    if (headerLength > size - 8 || headerLength > 100_000_000) bad(`not a safetensors file: a header of ${headerLength} bytes in a file of ${size}`);
    this.dataStart = 8 + headerLength;
    let parsed: unknown;
    try {
      parsed = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(this.bytes(8, headerLength)));
    } catch {
      bad('not a safetensors file: header is not valid JSON');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) bad('not a safetensors file: header is not a JSON object');
    const { __metadata__: meta = {}, ...entries } = parsed as Record<string, unknown>;
    const { [HASH_KEY]: expectedHash, ...metadata } = (meta ?? {}) as Record<string, string>;
    this.metadata = metadata;
    this.expectedHash = expectedHash;
    this.header = hashedHeader(parsed as object, metadata);
    const dataLength = size - this.dataStart;
    for (const [name, entry] of Object.entries(entries)) {
      const { dtype, shape, data_offsets: offsets } = (entry ?? {}) as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
      if (typeof dtype !== 'string' || !Array.isArray(shape) || !shape.every(isCount) || !Array.isArray(offsets) || offsets.length !== 2
        || !isCount(offsets[0]) || !isCount(offsets[1]) || offsets[0] > offsets[1]) {
        bad(`tensor "${name}" needs dtype, shape and data_offsets`);
      }
      const [begin, end] = offsets as [number, number];
      if (end > dataLength) bad(`tensor "${name}" data_offsets [${begin}, ${end}] run past the data section (${dataLength} bytes): truncated?`);
      this.tensors[name] = { dtype: dtype as string, shape: shape as number[], begin, end };
    }
  }

  has(name: string): boolean {
    return Object.hasOwn(this.tensors, name);
  }

  /** A tensor's values as float32 (from F32, BF16 or F16), into `into` (default: a new array). */
  readF32(name: string, into?: Float32Array): Float32Array {
    const t = this.entry(name), n = count(t.shape), width = { F32: 4, BF16: 2, F16: 2 }[t.dtype];
    if (width === undefined) fail(this.path, `tensor "${name}" has dtype ${t.dtype}; expected F32, BF16 or F16`);
    if (n * width! !== t.end - t.begin) fail(this.path, `tensor "${name}" has ${n} values of ${t.dtype} but data_offsets cover ${t.end - t.begin} bytes`);
    const out = into ?? new Float32Array(n);
    if (out.length !== n) fail(this.path, `tensor "${name}" has ${n} values; the destination holds ${out.length}`);
    if (t.dtype === 'F32') {
      this.bytes(this.dataStart + t.begin, t.end - t.begin, new Uint8Array(out.buffer, out.byteOffset, out.byteLength)); // straight into place
      return out;
    }
    const half = new Uint16Array(this.bytes(this.dataStart + t.begin, t.end - t.begin, this.scratch(t.end - t.begin)).buffer, 0, n);
    if (t.dtype === 'BF16') {
      const bits = new Uint32Array(out.buffer, out.byteOffset, n);
      for (let i = 0; i < n; i++) bits[i] = half[i]! << 16;
    } else {
      for (let i = 0; i < n; i++) out[i] = halfToFloat(half[i]!);
    }
    return out;
  }

  readI32(name: string): Int32Array {
    const t = this.entry(name);
    if (t.dtype !== 'I32') fail(this.path, `tensor "${name}" has dtype ${t.dtype}; expected I32`);
    const raw = this.bytes(this.dataStart + t.begin, t.end - t.begin);
    return new Int32Array(raw.buffer, raw.byteOffset, raw.length / 4);
  }

  /**
   * Every F32 tensor, in file order, into the array `destination` gives for it (or nowhere), the
   * checksum Switchyard writes checked on the way: one sequential pass over the file.
   */
  readAllF32(destination: (name: string) => Float32Array | undefined): void {
    const hash = this.expectedHash === undefined ? undefined : createHash('sha256');
    const covered = this.expectedHash?.startsWith(FILE_HASH) ?? false;
    if (covered) hash!.update(this.header);
    let at = 0;
    for (const [name, t] of Object.entries(this.tensors).sort((x, y) => x[1].begin - y[1].begin)) {
      if (t.begin !== at) fail(this.path, 'tensors overlap or leave gaps');
      const into = destination(name);
      if (into && t.dtype !== 'F32') fail(this.path, `tensor "${name}" has dtype ${t.dtype}; expected F32`);
      const bytes = into ? new Uint8Array(into.buffer, into.byteOffset, into.byteLength) : this.scratch(t.end - t.begin);
      if (bytes.length !== t.end - t.begin) fail(this.path, `tensor "${name}" covers ${t.end - t.begin} bytes; the destination holds ${bytes.length}`);
      hash?.update(this.bytes(this.dataStart + t.begin, t.end - t.begin, bytes));
      at = t.end;
    }
    if (hash && (covered ? FILE_HASH : '') + hash.digest('hex') !== this.expectedHash) fail(this.path, 'data was modified: sha256 mismatch');
  }

  /** Checks the data against the checksum Switchyard writes, where the file has one. */
  verify(): void {
    this.readAllF32(() => undefined);
  }

  close(): void {
    closeSync(this.fd);
  }

  private entry(name: string): StoredTensor {
    return this.has(name) ? this.tensors[name]! : fail(this.path, `missing tensor "${name}"`);
  }

  /** One reusable buffer for bytes that are only passed through: a fresh one per tensor costs page faults. */
  private spare = new Uint8Array(0);
  private scratch(length: number): Uint8Array {
    if (this.spare.length < length) this.spare = new Uint8Array(length);
    return this.spare.subarray(0, length);
  }

  private bytes(position: number, length: number, out: Uint8Array = new Uint8Array(length)): Uint8Array {
    for (let done = 0; done < length;) {
      const n = readSync(this.fd, out, done, Math.min(length - done, 1 << 30), position + done);
      if (n === 0) fail(this.path, `truncated: ends before byte ${position + length}`);
      done += n;
    }
    return out;
  }
}

function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1, exponent = (h >> 10) & 0x1f, fraction = h & 0x3ff;
  if (exponent === 0) return sign * fraction * 2 ** -24;
  if (exponent === 31) return fraction ? NaN : sign * Infinity;
  return sign * (1 + fraction / 1024) * 2 ** (exponent - 15);
}

export function loadSafetensors(path: string): SafetensorsFile {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (e) {
    return fail(path, `cannot read checkpoint (${e instanceof Error ? e.message : String(e)})`);
  }
  return decodeSafetensors(bytes, path);
}

export function expectTensor(file: { tensors: Record<string, Tensor> }, source: string, name: string, dtype: DType | DType[], shape: number[]): Tensor {
  const t = (Object.hasOwn(file.tensors, name) ? file.tensors[name] : undefined) ?? fail(source, `missing tensor "${name}"`);
  const dtypes = Array.isArray(dtype) ? dtype : [dtype];
  if (!dtypes.includes(t.dtype)) fail(source, `tensor "${name}" has dtype ${t.dtype}, expected ${dtypes.join(' or ')}`);
  if (t.shape.length !== shape.length || t.shape.some((d, i) => d !== shape[i])) {
    fail(source, `tensor "${name}" has shape ${showShape(t.shape)}, expected ${showShape(shape)}`);
  }
  return t;
}
