// Tokenizers turn text into token ids and back. Both are deliberately simple, as in nanoGPT's
// shakespeare_char example: raw UTF-8 bytes, or the distinct characters of a corpus. A tokenizer
// is described by a JSON-serialisable spec so that a checkpoint can rebuild exactly the same one.

export type TokenizerKind = 'byte' | 'char';

export interface TokenizerSpec { kind: TokenizerKind; chars?: string }

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
      const out: number[] = [];
      let position = 0;
      // for..of walks code points, so an astral character is one token, as it is in the vocabulary.
      for (const ch of text) {
        const id = ids.get(ch);
        if (id === undefined) {
          throw new RangeError(
            `char tokenizer: '${ch}' (${codePoint(ch)}) at position ${position} is not in the vocabulary of ${chars.length} characters`,
          );
        }
        out.push(id);
        position++;
      }
      return Int32Array.from(out);
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
    default:
      throw new TypeError(`tokenizer spec: unknown kind ${JSON.stringify((spec as { kind: unknown }).kind)} (expected 'byte' or 'char')`);
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
