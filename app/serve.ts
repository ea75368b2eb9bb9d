// `switchyard serve`: an OpenAI-style completions server over a run (Fastify).
//   POST /v1/completions   prompt, max_tokens, temperature, top_k, seed, stream (server-sent events),
//                          return_experts, at_context; a JSON response or `data: {…}` events and `data: [DONE]`
//   GET  /v1/models        the one model served
//   GET  /health           ok, with the sequences running and waiting
// The model runs in its own thread (createInference), batching concurrent requests step by step,
// so this thread only parses, validates and writes. Limits: at most maxBatch sequences decode
// together and maxQueue more wait; beyond that a request gets 429. A client that disconnects
// cancels its generation. close() stops accepting, gives requests in flight `drainSeconds` to
// finish, cancels the rest (they end with finish_reason 'cancelled'), then frees the model.
import { randomInt, randomUUID } from 'node:crypto';
import { Readable } from 'node:stream';
import type { FastifyError, FastifyInstance } from 'fastify';
import type { InferenceOptions } from './batcher.js';
import { type GenerationResult, type LayerRouting, RequestError, type TokenPiece } from './generate.js';
import type { TokenStream } from './inference.js';
import { type ThreadInference, createInference } from './inference-thread.js';

export interface ServeOptions extends InferenceOptions {
  /** The run folder. */
  run: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** Default 127.0.0.1: this machine only. */
  host?: string;
  /** Requests waiting beyond maxBatch (default 64); more get 429. */
  maxQueue?: number;
  /** The largest max_tokens a request may ask (default 4096). */
  maxTokensLimit?: number;
  /** Largest request body in bytes (default 1 MiB); larger gets 413. */
  bodyLimit?: number;
  /** On close, how long requests in flight may still run (default 10 s). */
  drainSeconds?: number;
}

export interface Server {
  /** http://host:port */
  url: string;
  inference: ThreadInference;
  /** Stops accepting, drains (drainSeconds), cancels the rest, frees the model. */
  close(): Promise<void>;
}

/** The request body's fields, as their JSON schema checks them. */
interface CompletionBody {
  prompt: string; model?: string; max_tokens?: number; temperature?: number; top_k?: number; seed?: number; stream?: boolean;
  return_experts?: boolean; at_context?: 'stop' | 'slide';
}

/** Our request fields' names in the API, for errors that name what the client sent. */
const FIELD_NAMES: Record<string, string> = { maxTokens: 'max_tokens', topK: 'top_k', returnExperts: 'return_experts', atContext: 'at_context' };

function completionSchema(maxTokens: number) {
  // OpenAI fields we do not implement are accepted only at the value that changes nothing, so a
  // client that sends its defaults works and one that asks for more is told so.
  const neutral = (value: unknown) => ({ const: value });
  return {
    type: 'object', required: ['prompt'], additionalProperties: false,
    properties: {
      prompt: { type: 'string' },
      model: { type: 'string' },
      max_tokens: { type: 'integer', minimum: 1, maximum: maxTokens },
      temperature: { type: 'number', minimum: 0 },
      top_k: { type: 'integer', minimum: 0 },
      seed: { type: 'integer', minimum: 0, maximum: Number.MAX_SAFE_INTEGER },
      stream: { type: 'boolean' },
      return_experts: { type: 'boolean' },
      at_context: { enum: ['stop', 'slide'] },
      user: { type: 'string' },
      n: neutral(1), best_of: neutral(1), echo: neutral(false), top_p: neutral(1), presence_penalty: neutral(0),
      frequency_penalty: neutral(0), logprobs: neutral(null), stop: neutral(null), suffix: neutral(null),
    },
  } as const;
}

/** OpenAI's error shape: { error: { message, type, param, code } }. */
function errorBody(message: string, param: string | null, type = 'invalid_request_error', code: string | null = null) {
  return { error: { message, type, param, code } };
}

/** A schema violation as one sentence that names the field. */
function validationMessage(error: FastifyError): { message: string; param: string | null } {
  const v = error.validation?.[0];
  if (!v) return { message: error.message, param: null };
  const field = v.instancePath.replace(/^\//, '').replace(/\//g, '.');
  const p = v.params as Record<string, unknown>;
  switch (v.keyword) {
    case 'required': return { message: `${String(p.missingProperty)} is required`, param: String(p.missingProperty) };
    case 'additionalProperties': return { message: `unknown field '${String(p.additionalProperty)}'`, param: String(p.additionalProperty) };
    case 'const': return { message: `${field}: only ${JSON.stringify(p.allowedValue)} is supported here`, param: field };
    case 'type': return {
      message: field ? `${field} must be ${String(p.type) === 'integer' ? 'a whole number' : `of type ${String(p.type)}`}${field === 'prompt' ? ' (one prompt per request)' : ''}` : `the body must be a JSON ${String(p.type)}`,
      param: field || null,
    };
    default: return { message: `${field} ${v.message ?? 'is invalid'}`, param: field || null };
  }
}

/** Starts the server on the run; resolves once it listens. */
export async function serve(o: ServeOptions): Promise<Server> {
  // Imported here, not at the top: every other command starts without it (a third of a second).
  const { default: Fastify } = await import('fastify');
  const inference = await createInference(o.run, o);
  const model = inference.info.name;
  const limit = (o.maxBatch ?? 32) + (o.maxQueue ?? 64);
  const active = new Set<TokenStream>();
  const app: FastifyInstance = Fastify({
    bodyLimit: o.bodyLimit ?? 1024 * 1024,
    // Types as sent: "5" is not a number, and unknown fields are refused rather than dropped.
    ajv: { customOptions: { coerceTypes: false, removeAdditional: false, allErrors: false } },
  });

  app.setErrorHandler((error: FastifyError, _request, reply) => {
    if (error.validation) {
      const { message, param } = validationMessage(error);
      return reply.code(400).send(errorBody(message, param));
    }
    if (error.code === 'FST_ERR_CTP_BODY_TOO_LARGE') return reply.code(413).send(errorBody(`the body is larger than ${o.bodyLimit ?? 1024 * 1024} bytes`, null));
    if (error.code === 'FST_ERR_CTP_INVALID_MEDIA_TYPE') return reply.code(415).send(errorBody('send the body as application/json', null));
    if (error.statusCode === 400) return reply.code(400).send(errorBody(`the body is not valid JSON: ${error.message}`, null));
    return reply.code(500).send(errorBody(error.message, null, 'server_error'));
  });
  app.setNotFoundHandler((request, reply) => reply.code(404).send(errorBody(`no route ${request.method} ${request.url}`, null, 'not_found')));

  let closing: Promise<void> | undefined;
  // While closing, a connection whose response has ended is closed rather than kept alive: the
  // server's close waits for every connection.
  app.addHook('onResponse', async () => { if (closing) setImmediate(() => app.server.closeIdleConnections()); });

  app.get('/health', async () => ({ status: 'ok', model, ...inference.load() }));
  app.get('/v1/models', async () => ({
    object: 'list',
    data: [{ id: model, object: 'model', created: 0, owned_by: 'switchyard', context_length: inference.info.context }],
  }));

  app.post('/v1/completions', { schema: { body: completionSchema(o.maxTokensLimit ?? 4096) } }, async (request, reply) => {
    const b = request.body as CompletionBody;
    if (b.model !== undefined && b.model !== model) {
      return reply.code(404).send(errorBody(`model '${b.model}' is not served here; this server serves '${model}'`, 'model', 'invalid_request_error', 'model_not_found'));
    }
    if (active.size >= limit) {
      return reply.code(429).header('retry-after', '1').send(errorBody(`${active.size} requests are in flight, the most this server takes; retry later`, null, 'rate_limit_error'));
    }
    let stream: TokenStream;
    try {
      stream = inference.stream({
        prompt: b.prompt, maxTokens: b.max_tokens ?? 16, temperature: b.temperature ?? 1, topK: b.top_k ?? 0,
        seed: b.seed ?? randomInt(2 ** 31), returnExperts: b.return_experts ?? false, atContext: b.at_context ?? 'stop',
      });
    } catch (e) {
      if (e instanceof RequestError) {
        const param = FIELD_NAMES[e.field] ?? e.field;
        return reply.code(400).send(errorBody(e.message.replace(`${e.field}:`, `${param}:`), param));
      }
      throw e;
    }
    active.add(stream);
    void stream.result.finally(() => active.delete(stream)).catch(() => {});
    // A client gone before its response is complete stops its generation.
    reply.raw.on('close', () => { if (!reply.raw.writableFinished) stream.cancel(); });
    const id = `cmpl-${randomUUID()}`, created = Math.floor(Date.now() / 1000);
    const head = { id, object: 'text_completion', created, model };
    if (!b.stream) return { ...head, ...completion(await stream.result, b.return_experts === true) };
    reply.header('content-type', 'text/event-stream; charset=utf-8').header('cache-control', 'no-cache').header('x-accel-buffering', 'no');
    return reply.send(Readable.from(events(stream, head, b.return_experts === true)));
  });

  await app.listen({ port: o.port ?? 8000, host: o.host ?? '127.0.0.1' });
  const address = app.server.address();
  const port = typeof address === 'object' && address ? address.port : o.port;
  return {
    url: `http://${(o.host ?? '127.0.0.1').includes(':') ? `[${o.host}]` : o.host ?? '127.0.0.1'}:${port}`,
    inference,
    close: () => (closing ??= (async () => {
      const drain = setTimeout(() => { for (const s of active) s.cancel(); }, 1000 * (o.drainSeconds ?? 10));
      await app.close(); // stops accepting; resolves when every response has ended
      clearTimeout(drain);
      await inference.close();
    })()),
  };
}

/** The non-streaming response's choices and usage. */
function completion(r: GenerationResult, experts: boolean) {
  return {
    choices: [{
      index: 0, text: r.text, logprobs: null, finish_reason: r.finishReason, token_ids: r.ids,
      ...(experts && { prompt_routing: r.promptRouting, routing: r.routing }),
    }],
    usage: { prompt_tokens: r.promptIds.length, completion_tokens: r.ids.length, total_tokens: r.promptIds.length + r.ids.length },
    ...(r.slides > 0 && { slides: r.slides }),
  };
}

/** Server-sent events: one per token, a last one with the finish reason and usage, then [DONE]. */
async function* events(stream: TokenStream, head: object, experts: boolean): AsyncGenerator<string> {
  const event = (body: object) => `data: ${JSON.stringify({ ...head, ...body })}\n\n`;
  const choice = (text: string, finish: string | null, extra: object = {}) => ({ choices: [{ index: 0, text, logprobs: null, finish_reason: finish, ...extra }] });
  if (experts) {
    const prompt = await stream.prompt;
    yield event({ ...choice('', null), prompt_routing: prompt.routing });
  }
  let r: GenerationResult;
  try {
    for await (const piece of stream as AsyncIterable<TokenPiece>) {
      yield event(choice(piece.text, null, { token_ids: [piece.id], ...(experts && { routing: piece.routing ?? null as LayerRouting[] | null }) }));
    }
    r = await stream.result;
  } catch (e) {
    // The status line has gone out: the failure travels as an event.
    yield `data: ${JSON.stringify(errorBody((e as Error).message, null, 'server_error'))}\n\n`;
    yield 'data: [DONE]\n\n';
    return;
  }
  yield event({
    ...choice('', r.finishReason), ...(r.slides > 0 && { slides: r.slides }),
    usage: { prompt_tokens: r.promptIds.length, completion_tokens: r.ids.length, total_tokens: r.promptIds.length + r.ids.length },
  });
  yield 'data: [DONE]\n\n';
}
