// Continuous batching: every step feeds each running sequence its next token, together, and a
// request joins or leaves the batch between steps. A step is
//   admit    waiting requests, up to maxBatch running, each with a prefill of its prompt
//   feed     one decode step for all the others (model.decode: one token per sequence, its own position)
//   sample   each sequence's next token from its own logits, with its own temperature, top-k and seed
//   retire   the finished and the cancelled, freeing their caches
// The same scheduler serves one prompt (the CLI), a batch (generateBatch) and the server's worker
// thread. A sequence's tokens do not depend on who shares its steps: the model computes each row
// apart (dropless routing, test/kv-cache.test.ts), and each draw is keyed by (seed, token index).
import { isSparseLayer } from '../model/config.js';
import { Rng } from '../model/rng.js';
import type { KvCache } from '../model/kv-cache.js';
import type { ForwardOptions, SwitchStats } from '../model/switch-layer.js';
import type { InferenceStep, Transformer } from '../model/transformer.js';
import {
  type FinishReason, type GenerationResult, type LayerRouting, type PreparedRequest, type PromptInfo, type TokenPiece, pick,
} from './generate.js';
import { type Tokenizer, pieceDecoder } from './tokenizer.js';

export interface InferenceOptions {
  /** Keep keys and values (default), or recompute a forward over the whole window every token (--no-cache). */
  cache?: boolean;
  /**
   * 'dropless' (default): every token reaches its chosen experts. 'configured': the model's
   * capacity factor, applied to each step's tokens (docs/inference.md says how that differs).
   */
  capacity?: 'dropless' | 'configured';
  /** Sequences decoded together at most (default 32); more wait their turn in order. */
  maxBatch?: number;
}

/** Where a sequence's output goes. */
export interface SequenceSink {
  /** After the prompt's prefill: the ids fed, and with returnExperts each one's routing. */
  start(prompt: PromptInfo): void;
  token(piece: TokenPiece): void;
  end(result: GenerationResult): void;
  fail(error: Error): void;
}

/** One sequence's window to run: all of it (fresh: a prompt, or after a slide), or only its last token. */
interface Feed { seq: Sequence; window: number[]; fresh: boolean }
/** The window's next-token logits, and the routing of each token fed (all of a fresh window, else the last). */
interface FeedOutput { logits: Float32Array; routing: LayerRouting[][] }

export class Batcher {
  private readonly waiting: Sequence[] = [];
  private readonly running: Sequence[] = [];
  private readonly runner: Runner;
  private readonly maxBatch: number;
  private loop: Promise<void> | undefined;
  private closed = false;

  constructor(readonly model: Transformer, readonly tokenizer: Tokenizer, options: InferenceOptions = {}) {
    this.maxBatch = options.maxBatch ?? 32;
    if (!Number.isInteger(this.maxBatch) || this.maxBatch < 1) throw new RangeError(`maxBatch must be a whole number ≥ 1, got ${this.maxBatch}`);
    const forward: ForwardOptions = (options.capacity ?? 'dropless') === 'dropless' ? { dropless: true } : {};
    this.runner = options.cache === false ? recomputeRunner(model, forward) : cachedRunner(model, forward);
  }

  /** Sequences running and waiting. */
  get load(): { running: number; waiting: number } {
    return { running: this.running.length, waiting: this.waiting.length };
  }

  /** Queues a request; steps run until every sequence is done. Cancel with the returned function. */
  add(request: PreparedRequest, sink: SequenceSink): () => void {
    if (this.closed) throw new Error('inference: closed');
    const seq = new Sequence(request, sink, this.tokenizer, this.model.config.context);
    this.waiting.push(seq);
    this.loop ??= this.run().finally(() => { this.loop = undefined; });
    return () => { seq.cancelled = true; };
  }

  /** Cancels everything and waits for the current step; later adds throw. */
  async close(): Promise<void> {
    this.closed = true;
    for (const seq of [...this.waiting, ...this.running]) seq.cancelled = true;
    await this.loop;
  }

  private async run(): Promise<void> {
    while (this.waiting.length > 0 || this.running.length > 0) {
      await this.step();
      // Between steps: let requests, cancellations and I/O in.
      await new Promise<void>((resolve) => setImmediate(resolve));
    }
  }

  private async step(): Promise<void> {
    for (const list of [this.waiting, this.running]) {
      for (const seq of list.filter((s) => s.cancelled)) seq.finish('cancelled');
    }
    while (this.running.length < this.maxBatch && this.waiting.length > 0) this.running.push(this.waiting.shift()!);
    this.retire();
    const feeds = this.running.flatMap((seq) => seq.nextFeed() ?? []);
    this.retire(); // sequences the context stopped
    if (feeds.length === 0) return;
    let outputs: FeedOutput[];
    try {
      outputs = await this.runner.feed(feeds);
    } catch (error) {
      for (const { seq } of feeds) seq.fail(error as Error);
      this.retire();
      return;
    }
    feeds.forEach(({ seq }, i) => seq.fed(outputs[i]!));
    this.retire();
  }

  private retire(): void {
    for (const list of [this.waiting, this.running]) {
      for (let i = list.length - 1; i >= 0; i--) if (list[i]!.done) list.splice(i, 1);
    }
  }
}

/** One request's state: its tokens, its window on them, its cache, what it has sent. */
class Sequence {
  /** The prompt's ids, then every new token; the last is not yet fed while `started`. */
  readonly tokens: number[];
  /** The window is tokens[windowStart …]; it holds at most the context. */
  private windowStart = 0;
  private started = false;
  private generated = 0;
  private slides = 0;
  private text = '';
  private readonly decoder: ReturnType<typeof pieceDecoder>;
  private readonly routing: (LayerRouting[] | null)[] = [];
  private promptRouting: LayerRouting[][] | undefined;
  cache: KvCache | undefined;
  cancelled = false;
  done = false;

  constructor(readonly request: PreparedRequest, private readonly sink: SequenceSink, tokenizer: Tokenizer, private readonly context: number) {
    this.tokens = [...request.promptIds];
    this.decoder = pieceDecoder(tokenizer);
    // A prompt longer than the context (policy 'slide' only: prepareRequest refuses it otherwise) starts from its end.
    this.windowStart = Math.max(0, this.tokens.length - context);
  }

  /**
   * What to run this step: the prompt (first), the pending token, or, when the window is full, a
   * slide (the window restarts from its last half, run afresh) or the end ('stop').
   */
  nextFeed(): Feed | undefined {
    if (!this.started) return { seq: this, window: this.tokens.slice(this.windowStart), fresh: true };
    if (this.tokens.length - this.windowStart <= this.context) return { seq: this, window: this.tokens.slice(this.windowStart), fresh: false };
    if (this.request.atContext === 'stop') {
      if (this.request.returnExperts) this.emit(this.tokens[this.tokens.length - 1]!, null); // never fed: no routing
      this.finish(this.generated === this.request.maxTokens ? 'length' : 'context');
      return undefined;
    }
    // Slide: keep the last half of the context (the pending token included) and run it afresh.
    // Halving, rather than moving by one, costs one prefill per context/2 new tokens.
    this.windowStart = this.tokens.length - Math.max(1, Math.floor(this.context / 2));
    this.slides++;
    return { seq: this, window: this.tokens.slice(this.windowStart), fresh: true };
  }

  /** The model ran this sequence's feed: route report, then the next token or the end. */
  fed(out: FeedOutput): void {
    const r = this.request;
    if (!this.started) {
      this.started = true;
      if (r.returnExperts) this.promptRouting = [...Array<LayerRouting[]>(this.windowStart).fill([]), ...out.routing];
      this.sink.start({ ids: r.promptIds, ...(this.promptRouting && { routing: this.promptRouting }) });
    } else if (r.returnExperts) {
      this.emit(this.tokens[this.tokens.length - 1]!, out.routing[out.routing.length - 1]!);
    }
    if (this.generated === r.maxTokens) return this.finish('length');
    const id = pick(out.logits, r, new Rng(r.seed, 'sample', this.generated));
    this.tokens.push(id);
    this.generated++;
    // With routing asked for, a token goes out once it has been fed, which is when its routing is known.
    if (!r.returnExperts) {
      this.emit(id);
      if (this.generated === r.maxTokens) this.finish('length');
    }
  }

  finish(reason: FinishReason): void {
    if (this.done) return;
    this.done = true;
    this.cache?.free();
    this.cache = undefined;
    const promptLength = this.request.promptIds.length;
    this.sink.end({
      promptIds: this.request.promptIds, ids: this.tokens.slice(promptLength, promptLength + this.generated),
      text: this.text + this.decoder.flush(), finishReason: reason, slides: this.slides,
      ...(this.request.returnExperts && { promptRouting: this.promptRouting ?? [], routing: this.routing }),
    });
  }

  fail(error: Error): void {
    if (this.done) return;
    this.done = true;
    this.cache?.free();
    this.cache = undefined;
    this.sink.fail(error);
  }

  private emit(id: number, routing?: LayerRouting[] | null): void {
    const text = this.decoder.piece(id);
    this.text += text;
    if (routing !== undefined) this.routing.push(routing);
    this.sink.token({ id, text, ...(routing && { routing }) });
  }
}

/** How a feed reaches the model: through the cache, or by recomputing the window. */
interface Runner { feed(feeds: Feed[]): Promise<FeedOutput[]> }

function cachedRunner(model: Transformer, options: ForwardOptions): Runner {
  return {
    async feed(feeds) {
      const out: FeedOutput[] = new Array(feeds.length);
      for (const [i, { seq, window, fresh }] of feeds.entries()) {
        if (!fresh) continue;
        seq.cache?.free();
        seq.cache = model.newCache();
        const step = await model.prefill(seq.cache, Int32Array.from(window), options);
        out[i] = outputOf(model, step, window.length - 1, seq.request.returnExperts ? 0 : window.length - 1);
      }
      const decodes = feeds.flatMap((f, i) => (f.fresh ? [] : [i]));
      if (decodes.length > 0) {
        const caches = decodes.map((i) => feeds[i]!.seq.cache!);
        const step = await model.decode(caches, Int32Array.from(decodes, (i) => feeds[i]!.window[feeds[i]!.window.length - 1]!), options);
        decodes.forEach((i, row) => { out[i] = outputOf(model, step, row, row); });
      }
      return out;
    },
  };
}

/** --no-cache: every feed is a forward over the whole window; its last row is the next token's. */
function recomputeRunner(model: Transformer, options: ForwardOptions): Runner {
  return {
    async feed(feeds) {
      const out: FeedOutput[] = [];
      for (const { seq, window, fresh } of feeds) {
        const step = await model.forward({ inputs: Int32Array.from(window), batch: 1, context: window.length }, options);
        const last = window.length - 1;
        out.push(outputOf(model, step, last, fresh && seq.request.returnExperts ? 0 : last));
      }
      return out;
    },
  };
}

/** Row `row`'s logits (copied: the model reuses its buffers) and the routing of rows from…row. */
function outputOf(model: Transformer, step: InferenceStep, row: number, from: number): FeedOutput {
  const V = model.config.vocabSize;
  const routing: LayerRouting[][] = [];
  for (let r = from; r <= row; r++) routing.push(routingOf(model, step.switchStats, r));
  return { logits: step.logits.slice(row * V, (row + 1) * V), routing };
}

function routingOf(model: Transformer, stats: SwitchStats[], row: number): LayerRouting[] {
  const c = model.config, k = c.topK;
  const layers = Array.from({ length: c.layers }, (_, i) => i).filter((i) => isSparseLayer(c, i));
  return stats.map((s, j) => {
    const at = row * k;
    return {
      layer: layers[j]!,
      experts: Array.from(s.expertIndex.subarray(at, at + k)),
      gates: Array.from(s.gates.subarray(at, at + k), (g, q) => (s.kept[at + q] ? g : 0)),
    };
  });
}
