// Checkpoints: exact round trips, the safetensors byte layout, atomic replacement, and a clear error
// for every way a file can be cut, edited or not match the model.
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ORACLES, needing } from './oracles.js';
import { writeFileAtomic } from '../app/files.js';
import { type Tensor, decodeSafetensors, encodeSafetensors, expectTensor, loadSafetensors, saveSafetensors } from '../app/safetensors.js';
import { toBF16Precision } from '../model/precision.js';
import { Rng } from '../model/rng.js';

const SRC = 'runs/x/model.safetensors';
const tempDir = () => mkdtempSync(join(tmpdir(), 'switchyard-ckpt-'));
const f32 = (...v: number[]) => new Float32Array(v);
const fromBits = (bits: number) => new Float32Array(new Uint32Array([bits]).buffer)[0]!;
const bf16 = (v: number) => { const a = f32(v); toBF16Precision(a); return a[0]; };

function sample(): Record<string, Tensor> {
  const rng = new Rng('checkpoint');
  return {
    'router.w': { dtype: 'F32', shape: [3, 4], data: rng.fillNormal(new Float32Array(12), 1) },
    'experts.w1': { dtype: 'BF16', shape: [2, 3, 5], data: rng.fillNormal(new Float32Array(30), 1) },
    'step': { dtype: 'I32', shape: [3], data: new Int32Array([7, -2_000_000_000, 2_147_483_647]) },
    'empty': { dtype: 'F32', shape: [0], data: new Float32Array(0) },
    'odd': { dtype: 'BF16', shape: [1], data: f32(-0.1) },
    'after_odd': { dtype: 'F32', shape: [2], data: f32(1.5, -2.25) },
  };
}

function header(bytes: Uint8Array): { length: number; json: Record<string, any> } {
  const length = Number(new DataView(bytes.buffer, bytes.byteOffset).getBigUint64(0, true));
  return { length, json: JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + length))) };
}

/** A file as another writer might make it: any header text, unpadded, before `data`. */
function assemble(headerText: string, data: Uint8Array): Uint8Array {
  const text = new TextEncoder().encode(headerText);
  const out = new Uint8Array(8 + text.length + data.length);
  new DataView(out.buffer).setBigUint64(0, BigInt(text.length), true);
  out.set(text, 8);
  out.set(data, 8 + text.length);
  return out;
}

/** The same data section behind a header changed by `edit` (which may return replacement text). */
function withHeader(bytes: Uint8Array, edit: (h: Record<string, any>) => unknown): Uint8Array {
  const { length, json } = header(bytes);
  return assemble(String(edit(json) ?? JSON.stringify(json)), bytes.subarray(8 + length));
}

describe('round trip', () => {
  it('keeps F32 and I32 exactly, BF16 at bfloat16 precision, shapes and metadata', () => {
    const tensors = sample();
    const bf16Input = new Float32Array(tensors['experts.w1']!.data);
    const metadata = { config: '{"dModel":4}', step: '12' };
    const got = decodeSafetensors(encodeSafetensors(tensors, metadata), SRC);

    expect(got.metadata).toEqual(metadata);
    expect(Object.keys(got.tensors)).toEqual(Object.keys(tensors));
    for (const [name, t] of Object.entries(tensors)) {
      expect(got.tensors[name]!.dtype, name).toBe(t.dtype);
      expect(got.tensors[name]!.shape, name).toEqual(t.shape);
      expect(got.tensors[name]!.data.constructor, name).toBe(t.data.constructor);
    }
    expect(Array.from(got.tensors['router.w']!.data)).toEqual(Array.from(tensors['router.w']!.data));
    expect(Array.from(got.tensors.step!.data)).toEqual([7, -2_000_000_000, 2_147_483_647]);
    expect(got.tensors.empty!.data.length).toBe(0);
    expect(Array.from(got.tensors.after_odd!.data)).toEqual([1.5, -2.25]);

    expect(Array.from(tensors['experts.w1']!.data), 'encoding leaves the caller\'s floats alone').toEqual(Array.from(bf16Input));
    const rounded = new Float32Array(bf16Input);
    toBF16Precision(rounded);
    expect(Array.from(got.tensors['experts.w1']!.data)).toEqual(Array.from(rounded));
    expect(rounded.some((v, i) => v !== bf16Input[i]), 'the input was not already bf16').toBe(true);
    expect(got.tensors.odd!.data[0]).toBe(bf16(-0.1));
  });

  it('BF16 keeps NaN, ±Infinity and -0', () => {
    const data = f32(NaN, fromBits(0x7f800001), Infinity, -Infinity, -0, 1);
    const got = decodeSafetensors(encodeSafetensors({ s: { dtype: 'BF16', shape: [6], data } }), SRC).tensors.s!.data;
    expect(Number.isNaN(got[0]) && Number.isNaN(got[1])).toBe(true);
    expect([got[2], got[3], got[5]]).toEqual([Infinity, -Infinity, 1]);
    expect(Object.is(got[4], -0)).toBe(true);
  });

  it('accepts no tensors and scalars; decoded tensors do not alias the input bytes', () => {
    expect(decodeSafetensors(encodeSafetensors({}), SRC)).toEqual({ tensors: {}, metadata: {} });
    const bytes = encodeSafetensors({ s: { dtype: 'F32', shape: [], data: f32(3) } });
    const got = decodeSafetensors(bytes, SRC);
    expect(got.tensors.s!).toEqual({ dtype: 'F32', shape: [], data: f32(3) });
    bytes.fill(0, bytes.length - 4);
    expect(got.tensors.s!.data[0]).toBe(3);
  });

  it('saves and loads through a file', () => {
    const dir = tempDir(), path = join(dir, 'model.safetensors');
    saveSafetensors(path, sample(), { note: 'ünïcode ✓' });
    const got = loadSafetensors(path);
    expect(got.metadata).toEqual({ note: 'ünïcode ✓' });
    expect(Array.from(got.tensors.after_odd!.data)).toEqual([1.5, -2.25]);
    expect(Array.from(got.tensors['router.w']!.data)).toEqual(Array.from(sample()['router.w']!.data));
  });

  it('lays every tensor at a multiple of its element size, keeping the given order in the header', () => {
    const { json } = header(encodeSafetensors(sample()));
    expect(Object.keys(json).slice(1)).toEqual(Object.keys(sample()));
    // "odd" is 2 bytes of BF16: written in the given order it would push "after_odd" off a 4-byte boundary.
    expect(Object.fromEntries(Object.keys(sample()).map((name) => [name, json[name].data_offsets]))).toEqual({
      'router.w': [0, 48], step: [48, 60], empty: [60, 60], after_odd: [60, 68], 'experts.w1': [68, 128], odd: [128, 130],
    });
    for (const [name, t] of Object.entries(sample())) {
      expect(json[name].data_offsets[0] % (t.dtype === 'BF16' ? 2 : 4), name).toBe(0);
    }
  });

  it('reads unaligned tensors that other writers leave, from a Node Buffer', () => {
    const dir = tempDir(), path = join(dir, 'foreign.safetensors');
    const data = new Uint8Array([0x80, 0x3f, 0, 0, 0xc0, 0x3f, 0, 0, 0x10, 0xc0, 5, 0, 0, 0]);
    writeFileSync(path, assemble(JSON.stringify({
      h: { dtype: 'BF16', shape: [1], data_offsets: [0, 2] },
      f: { dtype: 'F32', shape: [2], data_offsets: [2, 10] },
      i: { dtype: 'I32', shape: [1], data_offsets: [10, 14] },
    }), data));
    const got = loadSafetensors(path).tensors;
    expect([...got.h!.data, ...got.f!.data, ...got.i!.data]).toEqual([1, 1.5, -2.25, 5]);
  });
});

describe('toBF16Precision', () => {
  it('rounds to the nearest bfloat16, ties to even', () => {
    const cases: [number, number][] = [
      [1, 1],
      [1 + 2 ** -8, 1], // tie between 1 and 1 + 2^-7: the even one
      [1 + 3 * 2 ** -8, 1 + 2 ** -6], // tie between 1 + 2^-7 (odd) and 1 + 2^-6 (even)
      [1 + 3 * 2 ** -9, 1 + 2 ** -7], // above the tie
      [1 + 2 ** -8 - 2 ** -20, 1], // just below the tie
      [-(1 + 2 ** -8 + 2 ** -20), -(1 + 2 ** -7)], // just above it, negative
      [3.4028234663852886e38, Infinity], // the largest float32 rounds past the largest bfloat16
      [Infinity, Infinity],
      [-Infinity, -Infinity],
      [0, 0],
    ];
    const values = f32(...cases.map((c) => c[0]));
    toBF16Precision(values);
    expect(Array.from(values)).toEqual(cases.map((c) => c[1]));
  });

  it('keeps NaN a NaN, even one whose payload lives only in the low bits, and keeps -0', () => {
    const values = f32(NaN, fromBits(0x7f800001), fromBits(0xff800001), -0);
    toBF16Precision(values);
    expect(Array.from(values.subarray(0, 3)).every(Number.isNaN)).toBe(true);
    expect(new Uint32Array(values.buffer)[2]! >>> 31, 'sign kept').toBe(1);
    expect(Object.is(values[3], -0)).toBe(true);
  });

  it('leaves the neighbours of a subarray untouched', () => {
    const all = f32(1 + 2 ** -10, 1 + 2 ** -10, 1 + 2 ** -10);
    toBF16Precision(all.subarray(1, 2));
    expect(Array.from(all)).toEqual([1 + 2 ** -10, 1, 1 + 2 ** -10]);
  });
});

describe('byte layout', () => {
  it('is an 8-byte little-endian header length, a padded JSON header, then the raw tensors', () => {
    const bytes = encodeSafetensors(
      { a: { dtype: 'F32', shape: [2], data: f32(1, -2) }, b: { dtype: 'I32', shape: [1, 1], data: new Int32Array([258]) } },
      { k: 'v' },
    );
    const { length, json } = header(bytes);
    expect(Array.from(bytes.subarray(4, 8))).toEqual([0, 0, 0, 0]);
    expect(bytes[0]! + 256 * bytes[1]!).toBe(length);
    expect(length % 8).toBe(0);
    const text = new TextDecoder().decode(bytes.subarray(8, 8 + length));
    expect(text.startsWith('{')).toBe(true);
    expect(text.trimEnd().length).toBeGreaterThan(length - 8);
    expect(Object.keys(json)).toEqual(['__metadata__', 'a', 'b']);
    expect(json.__metadata__.k).toBe('v');
    expect(json.__metadata__.sha256).toMatch(/^file:[0-9a-f]{64}$/);
    expect(json.a).toEqual({ dtype: 'F32', shape: [2], data_offsets: [0, 8] });
    expect(json.b).toEqual({ dtype: 'I32', shape: [1, 1], data_offsets: [8, 12] });
    expect(bytes.length).toBe(8 + length + 12);
    expect(Array.from(bytes.subarray(8 + length))).toEqual([0, 0, 0x80, 0x3f, 0, 0, 0, 0xc0, 2, 1, 0, 0]);
  });

  it('stores BF16 as the upper half of the float32 bits', () => {
    const bytes = encodeSafetensors({ h: { dtype: 'BF16', shape: [2], data: f32(1, -2) } });
    expect(Array.from(bytes.subarray(bytes.length - 4))).toEqual([0x80, 0x3f, 0x00, 0xc0]);
  });

  it('reads files from other writers: no checksum, no padding, tensors listed out of offset order', () => {
    const ours = encodeSafetensors({ a: { dtype: 'F32', shape: [1], data: f32(5) }, b: { dtype: 'I32', shape: [1], data: new Int32Array([6]) } });
    const foreign = withHeader(ours, (h) => `{"b":${JSON.stringify(h.b)},"a":${JSON.stringify(h.a)}}`);
    const got = decodeSafetensors(foreign, SRC);
    expect(got.metadata).toEqual({});
    expect([got.tensors.a!.data[0], got.tensors.b!.data[0]]).toEqual([5, 6]);
  });
});

describe('writeFileAtomic', () => {
  const temps = (dir: string) => readdirSync(dir).filter((f) => f.endsWith('.tmp'));

  it('replaces the old content completely and leaves no temporary file', () => {
    const dir = tempDir(), path = join(dir, 'f.bin');
    writeFileAtomic(path, 'a much longer old content');
    writeFileAtomic(path, new Uint8Array([1, 2, 3]));
    expect(Array.from(readFileSync(path))).toEqual([1, 2, 3]);
    writeFileAtomic(path, 'new');
    expect(readFileSync(path, 'utf8')).toBe('new');
    expect(readdirSync(dir)).toEqual(['f.bin']);
  });

  it('fails naming the path when the directory does not exist', () => {
    const dir = tempDir(), path = join(dir, 'missing', 'f.bin');
    expect(() => writeFileAtomic(path, 'x')).toThrow(new RegExp(`^${path}: cannot write \\(ENOENT`));
    expect(readdirSync(dir)).toEqual([]);
  });

  it('removes the temporary file and keeps the old file when the write fails midway', () => {
    const dir = tempDir(), path = join(dir, 'f.bin');
    writeFileAtomic(path, 'old');
    expect(() => writeFileAtomic(path, 42 as unknown as string)).toThrow(/f\.bin: cannot write/);
    expect(readFileSync(path, 'utf8')).toBe('old');
    expect(temps(dir)).toEqual([]);
  });

  it('removes the written temporary file when the final rename fails', () => {
    const dir = tempDir(), target = join(dir, 'taken');
    mkdirSync(target);
    writeFileSync(join(target, 'inside'), 'kept');
    expect(() => writeFileAtomic(target, 'x')).toThrow(/taken: cannot write/);
    expect(temps(dir)).toEqual([]);
    expect(readFileSync(join(target, 'inside'), 'utf8')).toBe('kept');
  });
});

describe('clear errors', () => {
  const good = () => encodeSafetensors({
    w: { dtype: 'F32', shape: [2, 2], data: f32(1, 2, 3, 4) },
    v: { dtype: 'F32', shape: [4], data: f32(5, 6, 7, 8) },
  }, { run: 'x' });

  it('a file cut inside the length, the header or the data', () => {
    const bytes = good();
    const { length } = header(bytes);
    expect(() => decodeSafetensors(bytes.subarray(0, 0), SRC)).toThrow(`${SRC}: truncated: 0 bytes, too short for the 8-byte header length`);
    expect(() => decodeSafetensors(bytes.subarray(0, 5), SRC)).toThrow(/^runs\/x\/model\.safetensors: truncated: 5 bytes/);
    expect(() => decodeSafetensors(bytes.subarray(0, 8), SRC)).toThrow(`${SRC}: truncated: header says ${length} bytes but the file has 0 after the length`);
    expect(() => decodeSafetensors(bytes.subarray(0, 8 + length - 1), SRC)).toThrow(/truncated: header says \d+ bytes but the file has \d+/);
    expect(() => decodeSafetensors(bytes.subarray(0, 8 + length + 20), SRC)).toThrow(`${SRC}: tensor "v" data_offsets [16, 32] run past the data section (20 bytes)`);
    expect(() => decodeSafetensors(bytes.subarray(0, 8 + length), SRC)).toThrow(/data_offsets \[\d+, \d+\] run past the data section \(0 bytes\)/);
    expect(() => decodeSafetensors(bytes.subarray(0, bytes.length - 1), SRC)).toThrow(/run past the data section \(31 bytes\)/);
  });

  it('extra bytes after the last tensor', () => {
    const bytes = good(), longer = new Uint8Array(bytes.length + 4);
    longer.set(bytes);
    expect(() => decodeSafetensors(longer, SRC)).toThrow(`${SRC}: tensors overlap or leave gaps`);
  });

  it('a flipped data byte', () => {
    const bytes = good();
    bytes[bytes.length - 3]! ^= 0x01;
    expect(() => decodeSafetensors(bytes, SRC)).toThrow(`${SRC}: data was modified: sha256 mismatch`);
  });

  it('edited headers', () => {
    const bytes = good();
    const bad = (edit: (h: Record<string, any>) => unknown) => () => decodeSafetensors(withHeader(bytes, edit), SRC);
    expect(bad(() => '{"w": ')).toThrow(`${SRC}: not a safetensors file: header is not valid JSON`);
    expect(bad(() => '[1, 2]')).toThrow(`${SRC}: not a safetensors file: header is not a JSON object`);
    expect(bad((h) => { h.w.data_offsets = [0, 48]; })).toThrow(`${SRC}: tensor "w" data_offsets [0, 48] run past the data section (32 bytes)`);
    expect(bad((h) => { h.w.shape = [3, 4]; })).toThrow(`${SRC}: tensor "w" has 12 values of F32 but data_offsets cover 16 bytes`);
    expect(bad((h) => { h.w.data_offsets = [4, 20]; })).toThrow(`${SRC}: tensors overlap or leave gaps`);
    expect(bad((h) => { h.v.data_offsets = [12, 28]; })).toThrow(`${SRC}: tensors overlap or leave gaps`);
    expect(bad((h) => { h.w.dtype = 'F16'; })).toThrow(`${SRC}: unsupported dtype "F16" of tensor "w"`);
    expect(bad((h) => { h.w.data_offsets = [8, 4]; })).toThrow(`${SRC}: tensor "w" has invalid data_offsets [8,4]`);
    expect(bad((h) => { h.w.shape = [2, -2]; })).toThrow(`${SRC}: tensor "w" has an invalid shape [2,-2]`);
    expect(bad((h) => { delete h.w.dtype; })).toThrow(`${SRC}: tensor "w" needs dtype, shape and data_offsets`);
    expect(bad((h) => { h.__metadata__.run = 5; })).toThrow(`${SRC}: __metadata__ must map names to strings`);
    expect(bad((h) => { h.__metadata__.sha256 = '0'.repeat(64); })).toThrow(`${SRC}: data was modified: sha256 mismatch`);
    // The checksum covers the header too: an edit that keeps a valid layout is refused as well.
    expect(bad((h) => { [h.w.data_offsets, h.v.data_offsets] = [h.v.data_offsets, h.w.data_offsets]; })).toThrow(`${SRC}: data was modified: sha256 mismatch`);
    expect(bad((h) => { h.__metadata__.step = '13'; })).toThrow(`${SRC}: data was modified: sha256 mismatch`);
  });

  it('a checkpoint that does not match the model', () => {
    const file = decodeSafetensors(good(), SRC);
    expect(expectTensor(file, SRC, 'w', 'F32', [2, 2])).toBe(file.tensors.w!);
    expect(expectTensor(file, SRC, 'w', ['BF16', 'F32'], [2, 2])).toBe(file.tensors.w!);
    expect(() => expectTensor(file, SRC, 'w', 'F32', [4, 4])).toThrow(`${SRC}: tensor "w" has shape [2×2], expected [4×4]`);
    expect(() => expectTensor(file, SRC, 'v', 'F32', [2, 2])).toThrow(`${SRC}: tensor "v" has shape [4], expected [2×2]`);
    expect(() => expectTensor(file, SRC, 'w', 'I32', [2, 2])).toThrow(`${SRC}: tensor "w" has dtype F32, expected I32`);
    expect(() => expectTensor(file, SRC, 'w', ['BF16', 'I32'], [2, 2])).toThrow(/has dtype F32, expected BF16 or I32$/);
    expect(() => expectTensor(file, SRC, 'u', 'F32', [2, 2])).toThrow(`${SRC}: missing tensor "u"`);
    expect(() => expectTensor(file, SRC, 'constructor', 'F32', [2, 2])).toThrow(`${SRC}: missing tensor "constructor"`);
  });

  it('a missing file, and tensors that cannot be written', () => {
    const dir = tempDir(), path = join(dir, 'nope.safetensors');
    expect(() => loadSafetensors(path)).toThrow(new RegExp(`^${path}: cannot read checkpoint \\(ENOENT`));
    expect(() => loadSafetensors(dir)).toThrow(/cannot read checkpoint \(EISDIR/);
    expect(() => saveSafetensors(path, { w: { dtype: 'F32', shape: [3], data: f32(1, 2) } }))
      .toThrow(`${path}: tensor "w" has 2 values but shape [3]`);
    expect(readdirSync(dir)).toEqual([]);
    expect(() => encodeSafetensors({ w: { dtype: 'I32', shape: [1], data: f32(1) } })).toThrow('safetensors: tensor "w" of I32 needs an Int32Array');
    expect(() => encodeSafetensors({ w: { dtype: 'F16' as 'F32', shape: [1], data: f32(1) } })).toThrow('unsupported dtype "F16" of tensor "w"');
    expect(() => encodeSafetensors({}, { sha256: 'mine' })).toThrow('metadata key "sha256" is reserved for the checksum');
  });
});

// Hugging Face's own reader, from the oracle venv or any Python that has it.
const reader = ORACLES.safetensors;

describe('interoperability', () => {
  it.skipIf(!reader.path)(needing(reader, 'Python safetensors loads our file with the same values'), () => {
    const dir = tempDir(), path = join(dir, 'model.safetensors');
    const tensors = sample();
    saveSafetensors(path, tensors, { run: 'interop' });
    // deserialize hands back raw bytes for every dtype, so BF16 needs neither torch nor numpy.
    const script = `
import json, struct, sys
from safetensors import deserialize, safe_open
path = sys.argv[1]
names = {"F32": "F32", "float32": "F32", "BF16": "BF16", "bfloat16": "BF16", "I32": "I32", "int32": "I32"}
out = {}
for name, t in deserialize(open(path, "rb").read()):
    dtype, data = names[str(t["dtype"])], bytes(t["data"])
    if dtype == "BF16":
        values = [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in struct.unpack("<%dH" % (len(data) // 2), data)]
    else:
        values = list(struct.unpack("<%d%s" % (len(data) // 4, "f" if dtype == "F32" else "i"), data))
    out[name] = {"dtype": dtype, "shape": list(t["shape"]), "values": values}
with safe_open(path, framework="numpy") as f:
    meta = f.metadata()
print(json.dumps({"tensors": out, "metadata": meta}))
`;
    const py = JSON.parse(execFileSync(reader.path!, ['-c', script, path], { encoding: 'utf8' }));
    const ours = loadSafetensors(path);
    expect(py.metadata.run).toBe('interop');
    expect(Object.keys(py.tensors).sort()).toEqual(Object.keys(tensors).sort());
    for (const [name, t] of Object.entries(ours.tensors)) {
      expect(py.tensors[name], name).toEqual({ dtype: t.dtype, shape: t.shape, values: Array.from(t.data) });
    }
  });
});
