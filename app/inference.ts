// Generation as an application uses it: a stream of tokens per request (an async iterator, ended
// by an AbortSignal or by leaving the loop), a batch of requests at once, and the one-string
// `sample` of the original API. In this thread; app/inference-thread.ts runs the same in a worker.
import type { Transformer } from '../model/transformer.js';
import { Batcher, type InferenceOptions, type SequenceSink } from './batcher.js';
import {
  type GenerationRequest, type GenerationResult, type PromptInfo, type SampleOptions, type TokenPiece, prepareRequest,
} from './generate.js';
import type { Tokenizer } from './tokenizer.js';

/** What a running model offers: in this thread (`localInference`) or in a worker (`createInference`). */
export interface Inference {
  /** Starts a generation. Throws a RequestError, naming the field, for input it cannot serve. */
  stream(request: GenerationRequest, options?: { signal?: AbortSignal }): TokenStream;
  /** Sequences decoding and waiting. */
  load(): { running: number; waiting: number };
  /** Cancels what runs and frees the model. */
  close(): Promise<void>;
}

/**
 * A generation's tokens as they come, `for await (const { id, text } of stream)`, and its result.
 * Leaving the loop early, or aborting the signal, cancels it: the result then has finishReason
 * 'cancelled'. A failure rejects the loop, `prompt` (if still pending) and `result`.
 */
export class TokenStream implements AsyncIterable<TokenPiece>, SequenceSink {
  readonly result: Promise<GenerationResult>;
  /** The prompt's ids (and routing, on request) once its prefill has run. */
  readonly prompt: Promise<PromptInfo>;
  private started!: { resolve(p: PromptInfo): void; reject(e: Error): void };
  private readonly queue: TokenPiece[] = [];
  private wake: (() => void) | undefined;
  private finished: { result?: GenerationResult; error?: Error } | undefined;
  private settle!: { resolve(r: GenerationResult): void; reject(e: Error): void };
  private cancelFn: (() => void) | undefined;
  private cancelled = false;

  constructor(signal?: AbortSignal) {
    this.result = new Promise((resolve, reject) => { this.settle = { resolve, reject }; });
    this.prompt = new Promise((resolve, reject) => { this.started = { resolve, reject }; });
    for (const p of [this.result, this.prompt]) p.catch(() => { /* reported to whoever iterates or awaits */ });
    if (signal) {
      if (signal.aborted) this.cancel();
      else signal.addEventListener('abort', () => this.cancel(), { once: true });
    }
  }

  /** Connects the stream to what cancels its generation. */
  attach(cancel: () => void): this {
    this.cancelFn = cancel;
    if (this.cancelled) cancel();
    return this;
  }

  cancel(): void {
    this.cancelled = true;
    this.cancelFn?.();
  }

  start(prompt: PromptInfo): void {
    this.started.resolve(prompt);
  }

  token(piece: TokenPiece): void {
    this.queue.push(piece);
    this.wake?.();
  }

  end(result: GenerationResult): void {
    this.finished = { result };
    this.started.resolve({ ids: result.promptIds, ...(result.promptRouting && { routing: result.promptRouting }) }); // cancelled while waiting
    this.settle.resolve(result);
    this.wake?.();
  }

  fail(error: Error): void {
    this.finished = { error };
    this.started.reject(error);
    this.settle.reject(error);
    this.wake?.();
  }

  async *[Symbol.asyncIterator](): AsyncIterator<TokenPiece> {
    try {
      for (;;) {
        while (this.queue.length > 0) yield this.queue.shift()!;
        if (this.finished) {
          if (this.finished.error) throw this.finished.error;
          return;
        }
        await new Promise<void>((resolve) => { this.wake = resolve; });
        this.wake = undefined;
      }
    } finally {
      if (!this.finished) this.cancel(); // the loop was left early
    }
  }
}

/** A model in this thread behind continuous batching. Each step blocks this thread while it computes. */
export function localInference(model: Transformer, tokenizer: Tokenizer, options: InferenceOptions = {}): Inference {
  const batcher = new Batcher(model, tokenizer, options);
  return {
    stream(request, { signal } = {}) {
      const prepared = prepareRequest(request, tokenizer, model.config.context);
      const stream = new TokenStream(signal);
      return stream.attach(batcher.add(prepared, stream));
    },
    load: () => batcher.load,
    close: () => batcher.close(),
  };
}

/** Several requests at once, each with its own settings; each result equals that request run alone. */
export async function generateBatch(inference: Inference, requests: GenerationRequest[], options: { signal?: AbortSignal } = {}): Promise<GenerationResult[]> {
  const streams = requests.map((r) => inference.stream(r, options));
  return Promise.all(streams.map((s) => s.result));
}

/** The original API: the prompt followed by maxTokens sampled tokens, the window sliding past the context. */
export async function sample(model: Transformer, tokenizer: Tokenizer, prompt: string, o: SampleOptions,
  options: InferenceOptions = {}): Promise<string> {
  const inference = localInference(model, tokenizer, options);
  const { text } = await inference.stream({ prompt, ...o, atContext: 'slide' }).result;
  return prompt + text;
}

