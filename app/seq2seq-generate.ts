// Generation with the encoder-decoder: the input encoded once, then the decoder one token at a
// time from decoderStartId until </s> or the token limit, greedy (transformers' generate: the
// most likely token, ties to the lower id) or sampled (temperature, top-k, seed).
//   cache (default): the decoder's keys and values are kept, each step computes one position;
//     every Switch layer then routes one token per sequence, so capacity never binds, exactly as
//     transformers' generate with its cache.
//   no cache: each step recomputes the whole decoder prefix, whose Switch layers do drop tokens
//     over capacity: transformers' generate(use_cache=False).
import { Rng } from '../model/rng.js';
import type { EncoderDecoder } from '../model/t5/encoder-decoder.js';
import { pick } from './generate.js';
import type { TextTokenizer } from './hf-tokenizer.js';

export interface Seq2SeqSampling {
  /** New tokens at most (</s> included). */
  maxTokens: number;
  /** 0: greedy. */
  temperature: number;
  /** Sample among the k most likely; 0 = all. */
  topK: number;
  seed: number;
  /** Keep the decoder's keys and values (default); false recomputes the prefix every step. */
  cache: boolean;
  /** </s> is not chosen before this many new tokens (transformers' min_new_tokens). Default 0. */
  minTokens?: number;
}

export const GREEDY: Seq2SeqSampling = { maxTokens: 32, temperature: 0, topK: 0, seed: 1, cache: true };

/** The new ids of each prompt (its </s> included when reached), as transformers' generate returns them after the start token. */
export async function generateIds(model: EncoderDecoder, prompts: Int32Array[], o: Seq2SeqSampling): Promise<number[][]> {
  if (!(o.temperature >= 0)) throw new RangeError(`temperature must be ≥ 0, got ${o.temperature}`);
  if (!Number.isInteger(o.topK) || o.topK < 0) throw new RangeError(`top-k must be a whole number ≥ 0, got ${o.topK}`);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 1) throw new RangeError(`the token count must be a whole number ≥ 1, got ${o.maxTokens}`);
  if (prompts.length === 0 || prompts.some((p) => p.length === 0)) throw new RangeError('generate: every prompt needs at least one token');
  const c = model.config, B = prompts.length, S = Math.max(...prompts.map((p) => p.length)), V = c.vocabSize;
  const inputs = new Int32Array(B * S).fill(c.padId), mask = new Uint8Array(B * S);
  prompts.forEach((p, b) => { inputs.set(p, b * S); mask.fill(1, b * S, b * S + p.length); });

  const out: number[][] = prompts.map(() => []);
  const done = new Array<boolean>(B).fill(false);
  const next = (logits: Float32Array, row: number, b: number, i: number) => {
    const l = logits.subarray(row * V, (row + 1) * V);
    if (i < (o.minTokens ?? 0)) l[c.eosId] = -Infinity;
    return o.temperature === 0 ? argmax(l) : pick(l, o, new Rng(o.seed, 'sample', b, i));
  };
  const record = (b: number, token: number) => { out[b]!.push(token); if (token === c.eosId) done[b] = true; };

  if (o.cache) {
    const encoded = await model.encode(inputs, mask, B, S);
    const session = model.startDecoding(encoded, mask, B, S, o.maxTokens);
    try {
      const tokens = new Int32Array(B).fill(c.decoderStartId);
      for (let i = 0; i < o.maxTokens && !done.every(Boolean); i++) {
        const logits = await model.decodeStep(session, tokens);
        for (let b = 0; b < B; b++) {
          // A finished sequence is fed padding, as transformers does, until every one is done.
          tokens[b] = done[b] ? c.padId : next(logits, b, b, i);
          if (!done[b]) record(b, tokens[b]!);
        }
      }
    } finally {
      model.endDecoding(session);
    }
    return out;
  }
  for (let i = 0; i < o.maxTokens && !done.every(Boolean); i++) {
    const T = i + 1, decoderInputs = new Int32Array(B * T);
    for (let b = 0; b < B; b++) {
      decoderInputs[b * T] = c.decoderStartId;
      for (let t = 1; t < T; t++) decoderInputs[b * T + t] = out[b]![t - 1] ?? c.padId;
    }
    const { logits } = await model.forward({ batch: B, inputs, inputMask: mask, inputLength: S, decoderInputs, targetLength: T });
    for (let b = 0; b < B; b++) if (!done[b]) record(b, next(logits, b * T + T - 1, b, i));
  }
  return out;
}

/** The first index of the largest value: torch.argmax's choice. */
function argmax(values: Float32Array): number {
  let best = 0;
  for (let i = 1; i < values.length; i++) if (values[i]! > values[best]!) best = i;
  return best;
}

/** A prompt's continuation: the new ids (</s> included when reached) and their text, special tokens kept (the sentinels mark the spans). */
export async function generateText(model: EncoderDecoder, tokenizer: TextTokenizer, prompt: string, o: Seq2SeqSampling): Promise<{ ids: number[]; text: string }> {
  if (prompt.length === 0) throw new RangeError('generate: a switch-transformers run needs a --prompt (the encoder\'s input)');
  const [ids] = await generateIds(model, [await tokenizer.encode(prompt)], o);
  return { ids: ids!, text: await tokenizer.decode(ids!) };
}
