// Checkpoints in Hugging Face's safetensors format, so that other tools (the Python `safetensors`
// library, torch, numpy) read what we write. Every error names the file and what is wrong with it.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { bf16Bits } from '../model/precision.js';
import { writeFileAtomic } from './files.js';

export type DType = 'F32' | 'BF16' | 'I32';
export interface Tensor { dtype: DType; shape: number[]; data: Float32Array | Int32Array }
export interface SafetensorsFile { tensors: Record<string, Tensor>; metadata: Record<string, string> }

const BYTES: Record<DType, number> = { F32: 4, BF16: 2, I32: 4 };
// The integrity key is ours: written on encode, verified and removed on decode. Its value is
// `file:` and the sha256 of the header (without this key) and the data, so a changed byte anywhere
// is refused; files from before the header was covered hold the data's sha256 alone.
const HASH_KEY = 'sha256';
const FILE_HASH = 'file:';
const digest = (...parts: (Uint8Array | string)[]) => parts.reduce((h, p) => h.update(p), createHash('sha256')).digest('hex');

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

function encode(source: string, tensors: Record<string, Tensor>, metadata: Record<string, string>): Uint8Array {
  if (Object.hasOwn(metadata, HASH_KEY)) fail(source, `metadata key "${HASH_KEY}" is reserved for the checksum`);
  for (const [k, v] of Object.entries(metadata)) if (typeof v !== 'string') fail(source, `metadata "${k}" is not a string`);
  const items = Object.entries(tensors).map(([name, t]) => {
    if (name === '__metadata__' || name === '') fail(source, `invalid tensor name "${name}"`);
    return { name, t, bytes: tensorBytes(source, name, t), offsets: [0, 0] };
  });
  // Wider dtypes first, as the reference writer does, so every tensor starts at a multiple of its
  // element size (torch refuses to view unaligned bytes as float32); the sort is stable, so the
  // given order holds within each width.
  const parts = [...items].sort((x, y) => BYTES[y.t.dtype] - BYTES[x.t.dtype]);
  let offset = 0;
  for (const p of parts) {
    p.offsets = [offset, offset + p.bytes.length];
    offset += p.bytes.length;
  }
  const entries = Object.fromEntries(items.map(({ name, t, offsets }) => [name, { dtype: t.dtype, shape: t.shape, data_offsets: offsets }]));
  const hash = FILE_HASH + digest(JSON.stringify({ __metadata__: metadata, ...entries }), ...parts.map((p) => p.bytes));
  const json = JSON.stringify({ __metadata__: { ...metadata, [HASH_KEY]: hash }, ...entries });
  const raw = new TextEncoder().encode(json);
  // Padding to 8 keeps the data section 8-byte aligned, as the reference implementation does.
  const headerLength = Math.ceil(raw.length / 8) * 8;
  const out = new Uint8Array(8 + headerLength + offset);
  new DataView(out.buffer).setBigUint64(0, BigInt(headerLength), true);
  out.set(raw, 8);
  out.fill(0x20, 8 + raw.length, 8 + headerLength);
  let at = 8 + headerLength;
  for (const p of parts) { out.set(p.bytes, at); at += p.bytes.length; }
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
    const actual = expectedHash.startsWith(FILE_HASH)
      ? FILE_HASH + digest(JSON.stringify({ ...(header as object), __metadata__: metadata }), data)
      : digest(data);
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
