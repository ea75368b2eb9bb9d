// Tokenizers turn text into token ids and back: raw UTF-8 bytes, or the distinct characters of a
// corpus (nanoGPT's shakespeare_char), or GPT-2's byte-level BPE (js-tiktoken's encoder with
// GPT-2's ranks), optionally cut to its first N tokens. A tokenizer is described by a
// JSON-serialisable spec so that a checkpoint can rebuild exactly the same one.
import { Tiktoken } from 'js-tiktoken/lite';
import gpt2Ranks from 'js-tiktoken/ranks/gpt2';

export type TokenizerKind = 'byte' | 'char' | 'bpe';

export interface TokenizerSpec {
  kind: TokenizerKind;
  /** char: the vocabulary, in id order. */
  chars?: string;
  /** bpe: whose merges ('gpt2'). */
  encoding?: 'gpt2';
  /** bpe: the vocabulary's size, the first `vocab` tokens in rank order (the 256 bytes, then merges). */
  vocab?: number;
}

/**
 * What `--tokenizer` accepts: char, byte, gpt2 (GPT-2's 50,256 byte-level BPE tokens; its
 * <|endoftext|> is not used) or gpt2-N (its first N tokens: the 256 bytes and its first N − 256 merges).
 */
export type TokenizerChoice = 'char' | 'byte' | 'gpt2' | `gpt2-${number}`;

export const GPT2_TOKENS = 50_256;

/** The tokenizer a choice names, as a spec (char needs the corpus: its chars are filled in by charTokenizer). */
export function parseTokenizerChoice(choice: string): { kind: TokenizerKind; vocab?: number } {
  if (choice === 'char' || choice === 'byte') return { kind: choice };
  const m = /^gpt2(?:-(\d+))?$/.exec(choice);
  const vocab = m ? (m[1] === undefined ? GPT2_TOKENS : Number(m[1])) : NaN;
  if (!(vocab >= 256 && vocab <= GPT2_TOKENS)) {
    throw new RangeError(`tokenizer: expected char, byte, gpt2 or gpt2-N with 256 ≤ N ≤ ${GPT2_TOKENS}, got '${choice}'`);
  }
  return { kind: 'bpe', vocab };
}

/** The choice that makes a spec's tokenizer again (for comparing a resume's --tokenizer with the run's). */
export function tokenizerChoice(spec: TokenizerSpec): string {
  return spec.kind === 'bpe' ? (spec.vocab === GPT2_TOKENS ? 'gpt2' : `gpt2-${spec.vocab}`) : spec.kind;
}

export interface Tokenizer {
  readonly kind: TokenizerKind;
  readonly vocabSize: number;
  encode(text: string): Int32Array;
  decode(ids: ArrayLike<number>): string;
  spec(): TokenizerSpec;
}

function checkId(id: number, vocabSize: number, kind: TokenizerKind): void {
  if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
    throw new RangeError(`${kind} tokenizer: id ${id} is outside the vocabulary 0..${vocabSize - 1}`);
  }
}

function codePoint(ch: string): string {
  return `U+${ch.codePointAt(0)!.toString(16).toUpperCase().padStart(4, '0')}`;
}

/** UTF-8 bytes, vocabulary 256: encodes any text, never needs a corpus. */
export function byteTokenizer(): Tokenizer {
  const encoder = new TextEncoder();
  // Not fatal: a model may emit bytes that end mid-character; show U+FFFD rather than fail.
  const decoder = new TextDecoder('utf-8');
  return {
    kind: 'byte',
    vocabSize: 256,
    encode: (text) => Int32Array.from(encoder.encode(text)),
    decode(ids) {
      const bytes = new Uint8Array(ids.length);
      for (let i = 0; i < ids.length; i++) {
        checkId(ids[i]!, 256, 'byte');
        bytes[i] = ids[i]!;
      }
      return decoder.decode(bytes);
    },
    spec: () => ({ kind: 'byte' }),
  };
}

/** nanoGPT's character vocabulary: the distinct characters of `corpus`, sorted by code point. */
export function charTokenizer(corpus: string): Tokenizer {
  const distinct = [...new Set(corpus)].sort((a, b) => a.codePointAt(0)! - b.codePointAt(0)!);
  return tokenizerOfChars(distinct);
}

function tokenizerOfChars(chars: string[]): Tokenizer {
  const ids = new Map(chars.map((ch, i) => [ch, i]));
  const joined = chars.join('');
  return {
    kind: 'char',
    vocabSize: chars.length,
    encode(text) {
      // At most one id per UTF-16 unit; a typed array, since a corpus may be tens of millions of characters.
      const out = new Int32Array(text.length);
      let position = 0;
      // for..of walks code points, so an astral character is one token, as it is in the vocabulary.
      for (const ch of text) {
        const id = ids.get(ch);
        if (id === undefined) {
          throw new RangeError(
            `char tokenizer: '${ch}' (${codePoint(ch)}) at position ${position} is not in the vocabulary of ${chars.length} characters`,
          );
        }
        out[position++] = id;
      }
      return position === text.length ? out : out.slice(0, position);
    },
    decode(tokens) {
      let text = '';
      for (let i = 0; i < tokens.length; i++) {
        checkId(tokens[i]!, chars.length, 'char');
        text += chars[tokens[i]!];
      }
      return text;
    },
    spec: () => ({ kind: 'char', chars: joined }),
  };
}

/** GPT-2's tokens in rank order, base64 (parsed once). */
let gpt2Tokens: string[] | undefined;
function gpt2RankTokens(): string[] {
  if (!gpt2Tokens) {
    const tokens: string[] = [];
    for (const line of gpt2Ranks.bpe_ranks.split('\n').filter(Boolean)) {
      const [, offset, ...rest] = line.split(' ');
      rest.forEach((t, i) => { tokens[Number(offset) + i] = t; });
    }
    gpt2Tokens = tokens;
  }
  return gpt2Tokens;
}

/**
 * GPT-2's byte-level BPE (js-tiktoken, GPT-2's pattern and ranks) over its first `vocab` tokens:
 * the 256 bytes and the first vocab − 256 merges. Merges apply in rank order, so cutting the rank
 * table is the BPE stopped after that many merges; any text encodes, byte by byte at worst.
 */
export function gpt2Tokenizer(vocab: number = GPT2_TOKENS): Tokenizer {
  if (!Number.isInteger(vocab) || vocab < 256 || vocab > GPT2_TOKENS) {
    throw new RangeError(`gpt2 tokenizer: vocab must be a whole number in 256..${GPT2_TOKENS}, got ${vocab}`);
  }
  const encoder = new Tiktoken({ pat_str: gpt2Ranks.pat_str, special_tokens: {}, bpe_ranks: `! 0 ${gpt2RankTokens().slice(0, vocab).join(' ')}` });
  return {
    kind: 'bpe',
    vocabSize: vocab,
    encode: (text) => Int32Array.from(encoder.encode(text, [], [])),
    decode(ids) {
      const list: number[] = [];
      for (let i = 0; i < ids.length; i++) {
        checkId(ids[i]!, vocab, 'bpe');
        list.push(ids[i]!);
      }
      return encoder.decode(list);
    },
    spec: () => ({ kind: 'bpe', encoding: 'gpt2', vocab }),
  };
}

/** A new run's tokenizer: the choice, fitted to the corpus where it needs one (char). */
export function tokenizerFor(choice: string, corpus: string): Tokenizer {
  const { kind, vocab } = parseTokenizerChoice(choice);
  return kind === 'char' ? charTokenizer(corpus) : kind === 'byte' ? byteTokenizer() : gpt2Tokenizer(vocab);
}

/** Rebuilds a tokenizer from a spec read back from a checkpoint, which may have been edited or damaged. */
export function tokenizerFromSpec(spec: TokenizerSpec): Tokenizer {
  if (spec === null || typeof spec !== 'object') throw new TypeError('tokenizer spec: expected an object');
  switch (spec.kind) {
    case 'byte':
      return byteTokenizer();
    case 'char': {
      if (typeof spec.chars !== 'string' || spec.chars.length === 0) {
        throw new TypeError('tokenizer spec: a char tokenizer needs a non-empty string "chars"');
      }
      const chars = [...spec.chars];
      const seen = new Set<string>();
      for (const ch of chars) {
        if (seen.has(ch)) throw new TypeError(`tokenizer spec: character '${ch}' (${codePoint(ch)}) appears twice in "chars"`);
        seen.add(ch);
      }
      // Keep the stored order: it is what the checkpoint's embedding rows were trained against.
      return tokenizerOfChars(chars);
    }
    case 'bpe':
      if (spec.encoding !== 'gpt2') throw new TypeError(`tokenizer spec: a bpe tokenizer needs "encoding": "gpt2", got ${JSON.stringify(spec.encoding)}`);
      if (!(Number.isInteger(spec.vocab) && spec.vocab! >= 256 && spec.vocab! <= GPT2_TOKENS)) {
        throw new TypeError(`tokenizer spec: a bpe tokenizer needs "vocab", a whole number in 256..${GPT2_TOKENS}, got ${JSON.stringify(spec.vocab)}`);
      }
      return gpt2Tokenizer(spec.vocab);
    default:
      throw new TypeError(`tokenizer spec: unknown kind ${JSON.stringify((spec as { kind: unknown }).kind)} (expected 'byte', 'char' or 'bpe')`);
  }
}

/**
 * Text for token ids as they arrive, one piece per id: a byte that ends a UTF-8 character mid-way
 * gives '' and the character comes with its last byte, so the pieces join into decode(ids).
 */
export function pieceDecoder(tokenizer: Tokenizer): { piece(id: number): string; flush(): string } {
  if (tokenizer.kind !== 'byte') return { piece: (id) => tokenizer.decode([id]), flush: () => '' };
  const decoder = new TextDecoder('utf-8');
  return {
    piece: (id) => decoder.decode(new Uint8Array([id]), { stream: true }),
    flush: () => decoder.decode(),
  };
}
