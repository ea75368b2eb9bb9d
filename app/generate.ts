// Sampling text from a trained model: temperature, top-k, and a seed for every draw.
import { Rng } from '../model/rng.js';
import type { Tokenizer } from './tokenizer.js';
import type { Transformer } from '../model/transformer.js';

export interface SampleOptions {
  /** Tokens to generate. */
  maxTokens: number;
  /** Divides the logits; 0 picks the most likely token every time. */
  temperature: number;
  /** Sample among the k most likely tokens only; 0 = all. */
  topK: number;
  seed: number;
}

export async function sample(model: Transformer, tokenizer: Tokenizer, prompt: string, o: SampleOptions): Promise<string> {
  if (!(o.temperature >= 0)) throw new RangeError(`temperature must be ≥ 0, got ${o.temperature}`);
  if (!Number.isInteger(o.topK) || o.topK < 0) throw new RangeError(`top-k must be a whole number ≥ 0, got ${o.topK}`);
  if (!Number.isInteger(o.maxTokens) || o.maxTokens < 0) throw new RangeError(`the token count must be a whole number ≥ 0, got ${o.maxTokens}`);
  const { context, vocabSize: V } = model.config;
  // An empty prompt starts from a newline, as nanoGPT does, or token 0 where there is none.
  const ids = Array.from(tokenizer.encode(prompt.length > 0 ? prompt : '\n'));
  if (prompt.length === 0 && ids.length === 0) ids.push(0);
  const shown = prompt.length > 0 ? 0 : ids.length; // the prompt is part of the text; the stand-in start is not
  for (let i = 0; i < o.maxTokens; i++) {
    const window = ids.slice(-context);
    const { logits } = await model.forward({ inputs: Int32Array.from(window), batch: 1, context: window.length });
    const last = logits.subarray((window.length - 1) * V, window.length * V);
    ids.push(pick(last, o, new Rng(o.seed, 'sample', i)));
  }
  return tokenizer.decode(ids.slice(shown));
}

/** The next token: the most likely at temperature 0, else drawn from the top-k at the temperature. */
export function pick(logits: Float32Array, o: Pick<SampleOptions, 'temperature' | 'topK'>, rng: Rng): number {
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
  if (o.temperature === 0) return order[0]!;
  const kept = o.topK > 0 ? order.slice(0, o.topK) : order;
  const max = logits[kept[0]!]!;
  const weights = kept.map((t) => Math.exp((logits[t]! - max) / o.temperature));
  let r = rng.uniform() * weights.reduce((a, b) => a + b, 0);
  for (let j = 0; j < kept.length; j++) {
    r -= weights[j]!;
    if (r < 0) return kept[j]!;
  }
  return kept[kept.length - 1]!;
}
