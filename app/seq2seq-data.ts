// Input → target pairs for the encoder-decoder: tokenized, then padded into batches as
// transformers pads them (inputs with pad and an attention mask, labels with −100).
import type { T5Config } from '../model/t5/config.js';
import { IGNORE, type Seq2SeqBatch, shiftRight } from '../model/t5/encoder-decoder.js';
import type { TextTokenizer } from './hf-tokenizer.js';

export interface EncodedPair { input: Int32Array; target: Int32Array }

export async function encodePairs(tokenizer: TextTokenizer, pairs: { input: string; target: string }[]): Promise<EncodedPair[]> {
  return Promise.all(pairs.map(async (p) => ({ input: await tokenizer.encode(p.input), target: await tokenizer.encode(p.target) })));
}

/** Pads the pairs to the longest input and the longest target; the decoder reads the labels shifted right. */
export function pairBatch(pairs: EncodedPair[], c: Pick<T5Config, 'padId' | 'decoderStartId'>): Seq2SeqBatch {
  const B = pairs.length;
  const S = Math.max(...pairs.map((p) => p.input.length)), T = Math.max(...pairs.map((p) => p.target.length));
  const inputs = new Int32Array(B * S).fill(c.padId), inputMask = new Uint8Array(B * S), labels = new Int32Array(B * T).fill(IGNORE);
  pairs.forEach((p, b) => {
    inputs.set(p.input, b * S);
    inputMask.fill(1, b * S, b * S + p.input.length);
    labels.set(p.target, b * T);
  });
  return { batch: B, inputs, inputMask, inputLength: S, decoderInputs: shiftRight(labels, B, T, c.decoderStartId, c.padId), targetLength: T, labels };
}
