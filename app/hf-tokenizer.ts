// A Hugging Face tokenizer.json (T5's SentencePiece Unigram, with its 100 sentinels), through the
// `tokenizers` package: Hugging Face's own Rust library, the one transformers uses, so the ids are
// Python's by construction (the pure-JavaScript port approximates T5's nmt_nfkc normalizer with
// NFKC and differs on combining marks; README, "Dependencies").
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { Tokenizer } from 'tokenizers';
import type { T5Config } from '../model/t5/config.js';

export interface TextTokenizer {
  /** Ids the tokenizer can produce, added tokens included (32100 for T5; the embedding may have more rows). */
  readonly size: number;
  /** The text's ids, ending with </s> as T5's post-processor appends it. */
  encode(text: string): Promise<Int32Array>;
  /** Text of ids; ids beyond the tokenizer's vocabulary (the embedding's padding rows) decode to nothing, as in Python. */
  decode(ids: ArrayLike<number>, skipSpecialTokens?: boolean): Promise<string>;
}

export const TOKENIZER_FILE = 'tokenizer.json';

/** The folder's tokenizer.json, checked against the model: its ids must fit the embedding, and pad and </s> must be the config's. */
export function loadTokenizer(dir: string, c: Pick<T5Config, 'vocabSize' | 'padId' | 'eosId'>): TextTokenizer {
  const file = join(dir, TOKENIZER_FILE);
  if (!existsSync(file)) {
    throw new Error(`${dir}: no ${TOKENIZER_FILE}. A folder with only spiece.model converts with Python's transformers: `
      + `python -c "import sys; from transformers import AutoTokenizer; AutoTokenizer.from_pretrained(sys.argv[1]).save_pretrained(sys.argv[1])" ${dir}`);
  }
  let tokenizer: Tokenizer;
  try {
    tokenizer = Tokenizer.fromFile(file);
  } catch (cause) {
    throw new Error(`${file}: not a tokenizer the tokenizers library reads (${(cause as Error).message})`, { cause });
  }
  const size = tokenizer.getVocabSize(true);
  if (size > c.vocabSize) {
    throw new Error(`${file}: the tokenizer has ${size} ids but the model's embedding has ${c.vocabSize} rows (config.json vocab_size): they do not belong together`);
  }
  for (const [token, id, field] of [['</s>', c.eosId, 'eos_token_id'], ['<pad>', c.padId, 'pad_token_id']] as const) {
    const got = tokenizer.tokenToId(token);
    if (got !== id) throw new Error(`${file}: ${token} is id ${got} here but ${id} in config.json (${field}): the tokenizer does not match the model`);
  }
  return {
    size,
    encode: async (text) => Int32Array.from((await tokenizer.encode(text)).getIds()),
    decode: (ids, skip = false) => tokenizer.decode(Array.from(ids), skip),
  };
}
