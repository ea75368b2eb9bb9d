// What a generation is: a request (prompt, length, temperature, top-k, seed), checked into the
// ids the model is fed; how a token is drawn from logits; and what comes back, token by token and
// at the end. The scheduler that runs requests is app/batcher.ts.
import { Rng } from '../model/rng.js';
import type { Tokenizer } from './tokenizer.js';

export interface SampleOptions {
  /** Tokens to generate. */
  maxTokens: number;
  /** Divides the logits; 0 picks the most likely token every time. */
  temperature: number;
  /** Sample among the k most likely tokens only; 0 = all. */
  topK: number;
  seed: number;
}

/** At the model's context length: stop (the default), or slide the window on (see `Sequence` in batcher.ts). */
export type ContextPolicy = 'stop' | 'slide';

export interface GenerationRequest extends Partial<SampleOptions> {
  prompt: string;
  /** Report, for every token, the expert each Switch layer chose and its gate. */
  returnExperts?: boolean;
  /** What to do when the context is full; default 'stop'. */
  atContext?: ContextPolicy;
}

/** One Switch layer's choice for one token: experts best first, each with its gate (0: dropped by capacity). */
export interface LayerRouting { layer: number; experts: number[]; gates: number[] }

/** A generated token as it arrives: its id, its text (may be '' mid-character), and its routing on request. */
export interface TokenPiece { id: number; text: string; routing?: LayerRouting[] }

/** The prompt as fed, known after its prefill; its routing with returnExperts ([] for tokens a long prompt's window left out). */
export interface PromptInfo { ids: number[]; routing?: LayerRouting[][] }

/** length: maxTokens made; context: the context was full (policy 'stop'); cancelled: aborted. */
export type FinishReason = 'length' | 'context' | 'cancelled';

export interface GenerationResult {
  /** The ids the model was fed first: the prompt's, or a stand-in start for an empty prompt. */
  promptIds: number[];
  /** The new tokens. */
  ids: number[];
  /** Their text. */
  text: string;
  finishReason: FinishReason;
  /** Times the window slid (policy 'slide'), each time keeping its last half. */
  slides: number;
  /** With returnExperts: each prompt token's routing, then each new token's (null for a last token the context had no room to route). */
  promptRouting?: LayerRouting[][];
  routing?: (LayerRouting[] | null)[];
}

export const SAMPLE_DEFAULTS: SampleOptions = { maxTokens: 200, temperature: 0.8, topK: 40, seed: 1 };

/** A request's input that cannot be served, naming the field (the server answers 400 with it). */
export class RequestError extends RangeError {
  constructor(readonly field: string, message: string) {
    super(`${field}: ${message}`);
    this.name = 'RequestError';
  }
}

/** A request checked and encoded: what the scheduler runs. */
export interface PreparedRequest extends SampleOptions {
  promptIds: number[];
  returnExperts: boolean;
  atContext: ContextPolicy;
}

/** Checks a request against the model's context and vocabulary; every error names its field. */
export function prepareRequest(r: GenerationRequest, tokenizer: Tokenizer, context: number): PreparedRequest {
  const o = { ...SAMPLE_DEFAULTS, ...definedOnly(r) };
  if (typeof r.prompt !== 'string') throw new RequestError('prompt', `must be a string, got ${describe(r.prompt)}`);
  if (!(typeof o.temperature === 'number' && o.temperature >= 0 && Number.isFinite(o.temperature))) {
    throw new RequestError('temperature', `must be a number ≥ 0, got ${describe(o.temperature)}`);
  }
  wholeNumber('topK', o.topK);
  wholeNumber('maxTokens', o.maxTokens);
  wholeNumber('seed', o.seed);
  if (!Number.isSafeInteger(o.seed)) throw new RequestError('seed', `must be at most ${Number.MAX_SAFE_INTEGER}, got ${o.seed}`);
  const atContext = r.atContext ?? 'stop';
  if (atContext !== 'stop' && atContext !== 'slide') throw new RequestError('atContext', `must be 'stop' or 'slide', got ${describe(atContext)}`);
  let promptIds: number[];
  try {
    // An empty prompt starts from a newline, as nanoGPT does, or token 0 where there is none.
    promptIds = Array.from(tokenizer.encode(r.prompt.length > 0 ? r.prompt : '\n'));
  } catch (e) {
    if (r.prompt.length > 0) throw new RequestError('prompt', (e as Error).message);
    promptIds = [];
  }
  if (promptIds.length === 0) promptIds = [0];
  if (promptIds.length > context && atContext === 'stop') {
    throw new RequestError('prompt', `${promptIds.length} tokens do not fit the model's context of ${context} (with the 'slide' policy the window keeps the last ${context})`);
  }
  return {
    promptIds, maxTokens: o.maxTokens, temperature: o.temperature, topK: o.topK, seed: o.seed,
    returnExperts: r.returnExperts === true, atContext,
  };
}

/** The next token: the most likely at temperature 0 (ties: the lower id), else drawn with `rng` from the top k at the temperature. */
export function pick(logits: Float32Array, o: Pick<SampleOptions, 'temperature' | 'topK'>, rng: Rng): number {
  if (o.temperature === 0) {
    let best = 0;
    for (let t = 1; t < logits.length; t++) if (logits[t]! > logits[best]!) best = t;
    return best;
  }
  const order = Array.from(logits.keys()).sort((a, b) => logits[b]! - logits[a]! || a - b);
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

function wholeNumber(field: string, v: unknown): void {
  if (!(typeof v === 'number' && Number.isInteger(v) && v >= 0)) throw new RequestError(field, `must be a whole number ≥ 0, got ${describe(v)}`);
}

function describe(v: unknown): string {
  return typeof v === 'string' ? `'${v}'` : v === null ? 'null' : typeof v === 'object' ? typeof v : String(v);
}

function definedOnly<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
