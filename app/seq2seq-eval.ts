// The loss of an encoder-decoder on input → target pairs: the mean cross-entropy over every
// target token (</s> included), as transformers' loss over labels ≠ −100 is for one batch.
import type { EncoderDecoder } from '../model/t5/encoder-decoder.js';
import type { TextTokenizer } from './hf-tokenizer.js';
import { type EncodedPair, encodePairs, pairBatch } from './seq2seq-data.js';

export interface PairsLoss { loss: number; perplexity: number; tokens: number; pairs: number }

export async function pairsLoss(model: EncoderDecoder, tokenizer: TextTokenizer, pairs: { input: string; target: string }[],
  batchSize = 8): Promise<PairsLoss> {
  return encodedPairsLoss(model, await encodePairs(tokenizer, pairs), batchSize);
}

/** Each sequence is routed on its own, so the batch size changes nothing but float32 rounding. */
export async function encodedPairsLoss(model: EncoderDecoder, pairs: EncodedPair[], batchSize = 8): Promise<PairsLoss> {
  let sum = 0, tokens = 0;
  for (let i = 0; i < pairs.length; i += batchSize) {
    const batch = pairBatch(pairs.slice(i, i + batchSize), model.config);
    const n = batch.labels!.reduce((count, l) => count + (l >= 0 ? 1 : 0), 0);
    sum += (await model.forward(batch)).crossEntropy * n;
    tokens += n;
  }
  const loss = sum / tokens;
  return { loss, perplexity: Math.exp(loss), tokens, pairs: pairs.length };
}
