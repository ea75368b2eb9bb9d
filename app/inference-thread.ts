// createInference(): a run's model in a worker thread of its own (app/inference-worker.ts), so the
// thread that serves requests never computes. This thread keeps the run's tokenizer, checks and
// encodes each request (a bad one throws here, before anything is sent), and turns the worker's
// events back into TokenStreams.
import { Worker } from 'node:worker_threads';
import { basename, resolve } from 'node:path';
import { compiledScript, threadExecArgv } from '../engine/compiled-script.js';
import type { InferenceOptions } from './batcher.js';
import { type GenerationResult, type PromptInfo, type TokenPiece, prepareRequest } from './generate.js';
import { type Inference, TokenStream } from './inference.js';
import { readRunConfig } from './run-folder.js';
import { tokenizerFromSpec } from './tokenizer.js';

/** What the thread's model is. */
export interface ModelInfo {
  /** The run folder's name: what /v1/models lists. */
  name: string;
  context: number;
  vocabSize: number;
  layers: number;
  numExperts: number;
  /** Training steps the checkpoint has taken. */
  step: number;
}

/** Messages to the worker. */
export type ToWorker =
  | { op: 'start'; id: number; request: ReturnType<typeof prepareRequest> }
  | { op: 'cancel'; id: number }
  | { op: 'close' };

/** Messages from the worker: every event of one step in one message, in order. */
export type FromWorker =
  | { op: 'ready'; step: number }
  | { op: 'start'; id: number; prompt: PromptInfo }
  | { op: 'token'; id: number; piece: TokenPiece }
  | { op: 'end'; id: number; result: GenerationResult }
  | { op: 'fail'; id: number; message: string };

export type ThreadInference = Inference & { readonly info: ModelInfo };

/** Loads the run in a new thread; resolves once its model is ready. */
export async function createInference(dir: string, options: InferenceOptions = {}): Promise<ThreadInference> {
  const config = readRunConfig(dir);
  const tokenizer = tokenizerFromSpec(config.tokenizer);
  const { context, vocabSize, layers, numExperts } = config.model;
  const maxBatch = options.maxBatch ?? 32;
  const worker = new Worker(compiledScript('inference-worker.js', 'app'), {
    workerData: { dir: resolve(dir), options }, execArgv: threadExecArgv(),
  });
  const streams = new Map<number, TokenStream>();
  let nextId = 0;
  let closing = false;
  let dead: Error | undefined;

  let loading: { message(events: FromWorker[]): void; error(e: Error): void; exit(code: number): void } | undefined;
  const step = await new Promise<number>((ready, fail) => {
    loading = {
      message: (events) => {
        const first = events[0];
        if (first?.op === 'ready') ready(first.step);
        else fail(new Error(`inference thread: expected 'ready', got ${JSON.stringify(first)}`));
      },
      error: fail,
      exit: (code) => fail(new Error(`inference thread exited with code ${code} while loading ${dir}`)),
    };
    for (const event of ['message', 'error', 'exit'] as const) worker.once(event, loading[event]);
  }).finally(() => { for (const event of ['message', 'error', 'exit'] as const) worker.off(event, loading![event]); });

  worker.on('message', (events: FromWorker[]) => {
    for (const e of events) {
      if (e.op === 'ready') continue;
      const stream = streams.get(e.id);
      if (!stream) continue;
      if (e.op === 'start') stream.start(e.prompt);
      else if (e.op === 'token') stream.token(e.piece);
      else {
        streams.delete(e.id);
        if (e.op === 'end') stream.end(e.result);
        else stream.fail(new Error(e.message));
      }
    }
  });
  const exited = new Promise<void>((resolveExit) => {
    const die = (error: Error) => {
      dead ??= error;
      for (const s of streams.values()) s.fail(dead);
      streams.clear();
    };
    worker.on('error', (error) => die(new Error(`inference thread failed: ${error.message}`, { cause: error })));
    worker.on('exit', (code) => { die(new Error(closing ? 'inference: closed' : `inference thread exited with code ${code}`)); resolveExit(); });
  });
  const post = (m: ToWorker) => { if (!dead) worker.postMessage(m); };

  return {
    info: { name: basename(resolve(dir)), context, vocabSize, layers, numExperts, step },
    stream(request, { signal } = {}) {
      if (dead || closing) throw dead ?? new Error('inference: closed');
      const prepared = prepareRequest(request, tokenizer, context);
      const id = nextId++;
      const stream = new TokenStream(signal);
      streams.set(id, stream);
      post({ op: 'start', id, request: prepared });
      return stream.attach(() => post({ op: 'cancel', id }));
    },
    load() {
      // The worker admits waiting sequences at its next step; in flight is what counts here.
      const inFlight = streams.size;
      return { running: Math.min(inFlight, maxBatch), waiting: Math.max(0, inFlight - maxBatch) };
    },
    async close() {
      if (closing) return exited;
      closing = true;
      post({ op: 'close' });
      // The worker cancels what runs, frees the model and ends; a hung one is stopped.
      const timer = setTimeout(() => void worker.terminate(), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}
