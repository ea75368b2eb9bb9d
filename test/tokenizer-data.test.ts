// Tokenizers and the data pipeline: round trips, nanoGPT's numbers on tiny-shakespeare, errors that
// say what is wrong, and batches that depend only on their key.
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { DEFAULT_CORPUS, TOKEN_CACHE_MIN_CHARS, encodeCached, loadCorpus, makeDataset, sampleBatch, trainBatch, validationBatches, type Batch } from '../app/data.js';
import { Rng } from '../model/rng.js';
import { tokenizerJson } from '../app/qwen2-moe.js';
import {
  byteTokenizer, charTokenizer, gpt2Tokenizer, parseTokenizerChoice, tokenizerChoice, tokenizerFor, tokenizerFromSpec, type TokenizerSpec,
} from '../app/tokenizer.js';

const shakespeare = loadCorpus().text;
const tmp = mkdtempSync(join(tmpdir(), 'switchyard-data-'));

function tempFile(name: string, bytes: Uint8Array | string): string {
  const path = join(tmp, name);
  writeFileSync(path, bytes);
  return path;
}

function arange(n: number): Int32Array {
  return Int32Array.from({ length: n }, (_, i) => i);
}

describe('byte tokenizer', () => {
  const tok = byteTokenizer();

  it('has 256 ids and encodes UTF-8 bytes', () => {
    expect(tok.vocabSize).toBe(256);
    expect(tok.kind).toBe('byte');
    expect(Array.from(tok.encode('Aé😀'))).toEqual([0x41, 0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80]);
  });

  it.each(['To be, or not to be', 'Café crème, naïve façade', 'Swords 🗡️ and crowns 👑 🏰'])('round-trips %s', (text) => {
    expect(tok.decode(tok.encode(text))).toBe(text);
  });

  it('decodes a cut multi-byte sequence to U+FFFD instead of throwing', () => {
    expect(tok.decode([0x61, 0xc3])).toBe('a\uFFFD');
    expect(tok.decode([0xf0, 0x9f, 0x98])).toBe('\uFFFD');
  });

  it('rejects ids outside 0..255, naming them', () => {
    expect(() => tok.decode([65, 256])).toThrow(/id 256 /);
    expect(() => tok.decode([-1])).toThrow(/id -1 /);
    expect(() => tok.decode([1.5])).toThrow(/id 1.5 /);
  });
});

describe('char tokenizer', () => {
  const tok = charTokenizer(shakespeare);

  it("has nanoGPT's 65-character vocabulary on tiny-shakespeare, sorted by code point", () => {
    expect(tok.vocabSize).toBe(65);
    const chars = tok.spec().chars!;
    expect([...chars.slice(0, 3)]).toEqual(['\n', ' ', '!']);
    expect(chars.slice(-3)).toBe('xyz');
    expect(Array.from(tok.encode('\n !'))).toEqual([0, 1, 2]);
  });

  it('round-trips a passage', () => {
    const passage = shakespeare.slice(0, 2000);
    const ids = tok.encode(passage);
    expect(ids.length).toBe(2000);
    expect(tok.decode(ids)).toBe(passage);
  });

  it('treats an astral character as one character', () => {
    const small = charTokenizer('b😀a😀');
    expect(small.vocabSize).toBe(3);
    expect(small.spec().chars).toBe('ab😀');
    expect(Array.from(small.encode('😀ab'))).toEqual([2, 0, 1]);
    expect(small.decode([2, 2])).toBe('😀😀');
  });

  it('names an unknown character, its code point and position', () => {
    expect(() => tok.encode('Fair café')).toThrow(
      "char tokenizer: 'é' (U+00E9) at position 8 is not in the vocabulary of 65 characters",
    );
    expect(() => charTokenizer('abc').encode('a😀z')).toThrow(
      "char tokenizer: '😀' (U+1F600) at position 1 is not in the vocabulary of 3 characters",
    );
  });

  it('rejects ids outside the vocabulary, naming them', () => {
    expect(() => tok.decode([0, 65])).toThrow(/id 65 is outside the vocabulary 0\.\.64/);
  });

  it('rebuilds the same tokenizer from its JSON spec', () => {
    const spec = JSON.parse(JSON.stringify(tok.spec())) as TokenizerSpec;
    const again = tokenizerFromSpec(spec);
    expect(again.kind).toBe('char');
    expect(again.vocabSize).toBe(65);
    const passage = shakespeare.slice(5000, 6000);
    expect(Array.from(again.encode(passage))).toEqual(Array.from(tok.encode(passage)));
    expect(again.spec()).toEqual(tok.spec());

    const bytes = tokenizerFromSpec(JSON.parse(JSON.stringify(byteTokenizer().spec())) as TokenizerSpec);
    expect(bytes.kind).toBe('byte');
    expect(bytes.vocabSize).toBe(256);
  });

  it('keeps the order stored in a spec', () => {
    expect(Array.from(tokenizerFromSpec({ kind: 'char', chars: 'cab' }).encode('abc'))).toEqual([1, 2, 0]);
  });

  it('rejects bad specs with a clear error', () => {
    expect(() => tokenizerFromSpec({ kind: 'wordpiece' } as unknown as TokenizerSpec)).toThrow(/unknown kind "wordpiece" \(expected 'byte', 'char' or 'bpe'\)/);
    expect(() => tokenizerFromSpec({ kind: 'char' })).toThrow(/needs a non-empty string "chars"/);
    expect(() => tokenizerFromSpec({ kind: 'char', chars: '' })).toThrow(/needs a non-empty string "chars"/);
    expect(() => tokenizerFromSpec({ kind: 'char', chars: 'abca' })).toThrow(/character 'a' \(U\+0061\) appears twice/);
    expect(() => tokenizerFromSpec(null as unknown as TokenizerSpec)).toThrow(/expected an object/);
  });
});

describe("GPT-2's byte-level BPE", () => {
  const full = gpt2Tokenizer();

  it("encodes as GPT-2 does", () => {
    expect(full.vocabSize).toBe(50_256);
    expect(Array.from(full.encode('Hello world'))).toEqual([15496, 995]);
    expect(Array.from(full.encode(' the'))).toEqual([262]);
  });

  it.each(['To be, or not to be', 'func (s *Server) Serve(l net.Listener) error {\n\treturn nil\n}', 'Caf\u00e9 \u{1f600} <|endoftext|>'])(
    'round-trips %j, whole and cut to its first 300 tokens', (text) => {
      for (const tok of [full, gpt2Tokenizer(300)]) expect(tok.decode(tok.encode(text))).toBe(text);
    });

  it('cut to its first N tokens, uses only those: the bytes and the first N − 256 merges', () => {
    const text = shakespeare.slice(0, 5000);
    for (const vocab of [256, 1024, 4096]) {
      const ids = gpt2Tokenizer(vocab).encode(text);
      expect(Math.max(...ids)).toBeLessThan(vocab);
      if (vocab === 256) expect(ids.length, 'bytes only').toBe(new TextEncoder().encode(text).length);
    }
    const lengths = [256, 1024, 4096, 50_256].map((v) => gpt2Tokenizer(v).encode(text).length);
    expect(lengths, 'more merges, fewer tokens').toEqual([...lengths].sort((a, b) => b - a));
    expect(lengths[3]).toBeLessThan(lengths[0]! / 3);
  });

  it('is recorded as a spec and rebuilt from it', () => {
    const tok = gpt2Tokenizer(4096);
    const spec = JSON.parse(JSON.stringify(tok.spec())) as TokenizerSpec;
    expect(spec).toEqual({ kind: 'bpe', encoding: 'gpt2', vocab: 4096 });
    expect(tokenizerChoice(spec)).toBe('gpt2-4096');
    expect(tokenizerChoice(full.spec())).toBe('gpt2');
    const again = tokenizerFromSpec(spec);
    expect(Array.from(again.encode('the same ids'))).toEqual(Array.from(tok.encode('the same ids')));
    expect(() => tokenizerFromSpec({ kind: 'bpe', vocab: 4096 })).toThrow(/needs "encoding": "gpt2"/);
    expect(() => tokenizerFromSpec({ kind: 'bpe', encoding: 'gpt2', vocab: 60_000 })).toThrow(/needs "vocab", a whole number in 256\.\.50256, got 60000/);
    expect(() => tok.decode([4096])).toThrow(/bpe tokenizer: id 4096 is outside the vocabulary 0\.\.4095/);
  });

  it('is not exported to a tokenizer.json yet, and says so', () => {
    expect(() => tokenizerJson(gpt2Tokenizer(512).spec())).toThrow(/gpt2-512 BPE tokenizer cannot be exported yet/);
  });

  it('is chosen by name: char, byte, gpt2, gpt2-N', () => {
    expect(parseTokenizerChoice('gpt2')).toEqual({ kind: 'bpe', vocab: 50_256 });
    expect(parseTokenizerChoice('gpt2-2048')).toEqual({ kind: 'bpe', vocab: 2048 });
    expect(tokenizerFor('char', 'abc').vocabSize).toBe(3);
    expect(tokenizerFor('byte', 'abc').vocabSize).toBe(256);
    expect(tokenizerFor('gpt2-512', 'abc').vocabSize).toBe(512);
    for (const bad of ['gpt2-100', 'gpt2-99999', 'gpt3', 'bpe']) {
      expect(() => parseTokenizerChoice(bad)).toThrow(`tokenizer: expected char, byte, gpt2 or gpt2-N with 256 ≤ N ≤ 50256, got '${bad}'`);
    }
  });
});

describe('the token cache', () => {
  it('keeps a large corpus\'s ids, checked by their checksum, and encodes afresh when the file is damaged', () => {
    const dir = join(tmp, 'tokens');
    const text = shakespeare.repeat(Math.ceil(TOKEN_CACHE_MIN_CHARS / shakespeare.length));
    const tok = byteTokenizer();
    const ids = encodeCached(text, tok, dir);
    // Compared as bytes: a deep equality over millions of elements takes minutes.
    const same = (a: Int32Array, b: Int32Array) => Buffer.from(a.buffer, a.byteOffset, a.byteLength).equals(Buffer.from(b.buffer, b.byteOffset, b.byteLength));
    expect(same(ids, tok.encode(text))).toBe(true);
    const [file] = readdirSync(dir);
    expect(file).toMatch(/^[0-9a-f]{32}\.i32$/);
    expect(same(encodeCached(text, tok, dir), ids)).toBe(true);
    const bytes = readFileSync(join(dir, file!));
    bytes[100]! ^= 1;
    writeFileSync(join(dir, file!), bytes);
    expect(same(encodeCached(text, tok, dir), ids), 'a damaged file is not read').toBe(true);
    expect(readFileSync(join(dir, file!))[100], 'and is written again').toBe(bytes[100]! ^ 1);
    expect(same(encodeCached(text, charTokenizer(text), dir), ids), 'another tokenizer, another file').toBe(false);
    expect(readdirSync(dir)).toHaveLength(2);
    expect(encodeCached('short', tok, join(tmp, 'none')), 'small texts are not cached').toEqual(tok.encode('short'));
  }, 60_000);
});

describe('loadCorpus', () => {
  it('loads the embedded tiny-shakespeare by default', () => {
    const { text, source } = loadCorpus();
    expect(source).toBe(DEFAULT_CORPUS);
    expect(DEFAULT_CORPUS).toMatch(/[\\/]data[\\/]tinyshakespeare\.txt$/);
    expect(text.length).toBe(1_115_394);
    expect(text.startsWith('First Citizen:')).toBe(true);
  });

  it('names the offset of an invalid UTF-8 byte', () => {
    const path = tempFile('bad.txt', new Uint8Array([0x66, 0xff, 0x66]));
    expect(() => loadCorpus(path)).toThrow(`${path}: not UTF-8 text (invalid byte sequence near byte 1)`);
    const cut = tempFile('cut.txt', new Uint8Array([0x61, 0x62, 0xc3, 0xa9, 0xe2, 0x82]));
    expect(() => loadCorpus(cut)).toThrow(/near byte 4\)$/);
  });

  it('reports a missing file and an empty file', () => {
    const missing = join(tmp, 'nope.txt');
    expect(() => loadCorpus(missing)).toThrow(`${missing}: cannot read (ENOENT: no such file or directory)`);
    const empty = tempFile('empty.txt', '');
    expect(() => loadCorpus(empty)).toThrow(`${empty}: the file is empty`);
  });

  it('reads UTF-8 text that is not ASCII', () => {
    expect(loadCorpus(tempFile('utf8.txt', 'né 😀')).text).toBe('né 😀');
  });
});

describe('makeDataset', () => {
  it("splits tiny-shakespeare as nanoGPT's prepare.py: 1,003,854 train, 111,540 val", () => {
    const tok = charTokenizer(shakespeare);
    const { train, val, tokenizer } = makeDataset(shakespeare, tok);
    expect(tokenizer).toBe(tok);
    expect(train.length).toBe(1_003_854);
    expect(val.length).toBe(111_540);
    expect(tok.decode(train.subarray(0, 14))).toBe('First Citizen:');
    expect(tok.decode(val)).toBe(shakespeare.slice(1_003_854));
  });

  it('splits the token count, not the character count', () => {
    const { train, val } = makeDataset('ééééé', byteTokenizer()); // 10 bytes
    expect([train.length, val.length]).toEqual([9, 1]);
    const odd = makeDataset('abcdefghijklmnopqrs', byteTokenizer()); // 19 tokens: int(17.1) = 17
    expect([odd.train.length, odd.val.length]).toEqual([17, 2]);
  });

  it('refuses a text too short for two non-empty splits', () => {
    expect(() => makeDataset('a', byteTokenizer(), 'tiny.txt')).toThrow(/^dataset \(tiny\.txt\): 1 token cannot be split/);
    expect(() => makeDataset('', byteTokenizer())).toThrow(/^dataset: 0 tokens cannot be split/);
    expect(makeDataset('ab', byteTokenizer()).val.length).toBe(1);
  });
});

describe('batches', () => {
  const data = arange(1000);

  function offsets(b: Batch): number[] {
    return Array.from({ length: b.batch }, (_, r) => b.inputs[r * b.context]!);
  }

  function expectWindows(b: Batch, length: number): void {
    expect(b.inputs.length).toBe(b.batch * b.context);
    expect(b.targets.length).toBe(b.batch * b.context);
    for (let r = 0; r < b.batch; r++) {
      const start = b.inputs[r * b.context]!;
      expect(start).toBeGreaterThanOrEqual(0);
      expect(start).toBeLessThanOrEqual(length - b.context - 1);
      for (let t = 0; t < b.context; t++) {
        expect(b.inputs[r * b.context + t]).toBe(start + t);
        expect(b.targets[r * b.context + t]).toBe(start + t + 1);
        if (t + 1 < b.context) expect(b.targets[r * b.context + t]).toBe(b.inputs[r * b.context + t + 1]);
      }
    }
  }

  it('takes contiguous windows, targets shifted by one', () => {
    const b = sampleBatch(data, 16, 32, new Rng('windows'));
    expect([b.batch, b.context]).toEqual([16, 32]);
    expectWindows(b, data.length);
    expect(new Set(offsets(b)).size).toBeGreaterThan(1);
  });

  it('reaches both ends of the offset range and never beyond', () => {
    const small = arange(10); // context 8: offsets 0 and 1 only
    const b = sampleBatch(small, 64, 8, new Rng('ends'));
    expectWindows(b, small.length);
    expect(new Set(offsets(b))).toEqual(new Set([0, 1]));
  });

  it('is deterministic for a key and different for another', () => {
    const a = sampleBatch(data, 8, 16, new Rng('key', 1));
    expect(sampleBatch(data, 8, 16, new Rng('key', 1))).toEqual(a);
    expect(offsets(sampleBatch(data, 8, 16, new Rng('key', 2)))).not.toEqual(offsets(a));
  });

  it('gives the batch of a step from (seed, step) alone', () => {
    const want = trainBatch(data, 4, 8, 7, 5);
    expect(want).toEqual(sampleBatch(data, 4, 8, new Rng(7, 5, 'batch')));
    for (let step = 0; step < 5; step++) trainBatch(data, 4, 8, 7, step);
    expect(trainBatch(data, 4, 8, 7, 5)).toEqual(want);
    expect(offsets(trainBatch(data, 4, 8, 7, 6))).not.toEqual(offsets(want));
    expect(offsets(trainBatch(data, 4, 8, 8, 5))).not.toEqual(offsets(want));
  });

  it('draws the same validation batches on every call', () => {
    const first = validationBatches(data, 4, 16, 3, 11);
    expect(first).toHaveLength(3);
    expect(validationBatches(data, 4, 16, 3, 11)).toEqual(first);
    first.forEach((b, j) => {
      expectWindows(b, data.length);
      expect(b).toEqual(sampleBatch(data, 4, 16, new Rng(11, j, 'val-batch')));
    });
    expect(offsets(first[1]!)).not.toEqual(offsets(first[0]!));
    expect(validationBatches(data, 4, 16, 0, 11)).toEqual([]);
  });

  it('names the split that is too short for the context', () => {
    expect(() => validationBatches(new Int32Array(40), 2, 64, 1, 0)).toThrow(
      'dataset: the validation split has 40 tokens, fewer than context + 2 = 66; use a longer text or a shorter context',
    );
    expect(() => trainBatch(new Int32Array(65), 2, 64, 0, 0)).toThrow(/^dataset: the training split has 65 tokens, fewer than context \+ 2 = 66/);
    expect(() => sampleBatch(new Int32Array(9), 1, 8, new Rng(0))).toThrow(/the data has 9 tokens/);
    expect(sampleBatch(new Int32Array(66), 2, 64, new Rng(0)).inputs.length).toBe(128);
  });

  it('rejects a non-positive batch or context with a RangeError', () => {
    expect(() => sampleBatch(data, 0, 8, new Rng(0))).toThrow(new RangeError('dataset: batch must be a positive integer (got 0)'));
    expect(() => sampleBatch(data, 2, -1, new Rng(0))).toThrow(new RangeError('dataset: context must be a positive integer (got -1)'));
    expect(() => trainBatch(data, 2.5, 8, 0, 0)).toThrow(RangeError);
    expect(() => validationBatches(data, 2, 8, -1, 0)).toThrow(RangeError);
  });
});
