// The completions server over real HTTP on an ephemeral port: responses against the library's,
// streaming, routing, every kind of bad input, the queue's limit, a client that disconnects,
// draining on close, and the CLI's SIGTERM.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { localInference } from '../app/inference.js';
import { openRun } from '../app/run-folder.js';
import { type Server, serve } from '../app/serve.js';
import { createKernels } from '../kernels/index.js';
import { tinyRun } from './fixtures/tiny-run.js';

const kernels = createKernels();

const post = (server: Server, body: unknown, init: RequestInit = {}) => fetch(`${server.url}/v1/completions`, {
  method: 'POST', headers: { 'content-type': 'application/json' }, body: typeof body === 'string' ? body : JSON.stringify(body), ...init,
});

/** The server-sent events of a response, parsed, until [DONE]. */
async function events(response: Response): Promise<any[]> {
  const text = await response.text();
  const lines = text.split('\n\n').filter(Boolean);
  expect(lines.at(-1)).toBe('data: [DONE]');
  return lines.slice(0, -1).map((l) => { expect(l.startsWith('data: ')).toBe(true); return JSON.parse(l.slice(6)); });
}

async function until(check: () => Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  while (!(await check())) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

describe('switchyard serve', () => {
  let dir: string;
  let server: Server;
  beforeAll(async () => {
    dir = await tinyRun();
    server = await serve({ run: dir, port: 0, maxTokensLimit: 500, bodyLimit: 4096 });
  });
  afterAll(() => server.close());

  it('listens on 127.0.0.1, answers /health and /v1/models', async () => {
    expect(server.url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(await (await fetch(`${server.url}/health`)).json()).toEqual({ status: 'ok', model: 'tiny-run', running: 0, waiting: 0 });
    expect(await (await fetch(`${server.url}/v1/models`)).json()).toEqual({
      object: 'list', data: [{ id: 'tiny-run', object: 'model', created: 0, owned_by: 'switchyard', context_length: 32 }],
    });
    expect((await fetch(`${server.url}/nowhere`)).status).toBe(404);
  });

  it('a completion equals the library\'s generation with the same settings', async () => {
    const r = await post(server, { prompt: 'the cat', max_tokens: 12, temperature: 0.9, top_k: 5, seed: 4, model: 'tiny-run' });
    expect(r.status).toBe(200);
    const body = await r.json();
    const run = openRun(dir, kernels);
    const inference = localInference(run.model, run.tokenizer);
    const expected = await inference.stream({ prompt: 'the cat', maxTokens: 12, temperature: 0.9, topK: 5, seed: 4 }).result;
    await inference.close();
    await run.model.dispose();
    expect(body).toMatchObject({
      object: 'text_completion', model: 'tiny-run',
      choices: [{ index: 0, text: expected.text, logprobs: null, finish_reason: 'length', token_ids: expected.ids }],
      usage: { prompt_tokens: 7, completion_tokens: 12, total_tokens: 19 },
    });
    expect(body.id).toMatch(/^cmpl-/);
  });

  it('stream: true sends a server-sent event per token, then the finish reason and [DONE]', async () => {
    const request = { prompt: 'a', max_tokens: 40, temperature: 0, return_experts: true };
    const whole = await (await post(server, request)).json();
    const r = await post(server, { ...request, stream: true });
    expect(r.headers.get('content-type')).toMatch(/^text\/event-stream/);
    const list = await events(r);
    expect(list[0].prompt_routing).toEqual(whole.choices[0].prompt_routing);
    const tokens = list.slice(1, -1).map((e) => e.choices[0]);
    expect(tokens.map((c) => c.text).join('')).toBe(whole.choices[0].text);
    expect(tokens.flatMap((c) => c.token_ids)).toEqual(whole.choices[0].token_ids);
    expect(tokens.map((c) => c.routing)).toEqual(whole.choices[0].routing);
    expect(tokens[0].routing[0]).toMatchObject({ layer: 1, experts: [expect.any(Number)], gates: [expect.any(Number)] });
    expect(list.at(-1).choices[0]).toMatchObject({ text: '', finish_reason: 'context' }); // 1 + 40 > a context of 32
    expect(list.at(-1).usage).toEqual({ prompt_tokens: 1, completion_tokens: 32, total_tokens: 33 });
  });

  it.each([
    ['malformed JSON', '{"prompt": "a", ', 400, null, /not valid JSON/],
    ['no prompt', { max_tokens: 3 }, 400, 'prompt', /prompt is required/],
    ['a prompt that is not a string', { prompt: ['a', 'b'] }, 400, 'prompt', /prompt must be of type string \(one prompt per request\)/],
    ['max_tokens as a string', { prompt: 'a', max_tokens: '5' }, 400, 'max_tokens', /max_tokens must be a whole number/],
    ['a fractional max_tokens', { prompt: 'a', max_tokens: 2.5 }, 400, 'max_tokens', /whole number/],
    ['max_tokens 0', { prompt: 'a', max_tokens: 0 }, 400, 'max_tokens', /max_tokens must be >= 1/],
    ['max_tokens above the limit', { prompt: 'a', max_tokens: 501 }, 400, 'max_tokens', /max_tokens must be <= 500/],
    ['a negative temperature', { prompt: 'a', temperature: -1 }, 400, 'temperature', /temperature must be >= 0/],
    ['stream as a string', { prompt: 'a', stream: 'yes' }, 400, 'stream', /stream must be of type boolean/],
    ['an unknown field', { prompt: 'a', max_token: 5 }, 400, 'max_token', /unknown field 'max_token'/],
    ['n other than 1', { prompt: 'a', n: 2 }, 400, 'n', /n: only 1 is supported here/],
    ['top_p other than 1', { prompt: 'a', top_p: 0.9 }, 400, 'top_p', /only 1 is supported/],
    ['a bad at_context', { prompt: 'a', at_context: 'wrap' }, 400, 'at_context', /at_context must be equal to one of the allowed values/],
    ['a character outside the vocabulary', { prompt: 'Hi' }, 400, 'prompt', /'H' \(U\+0048\) at position 0 is not in the vocabulary/],
    ['a prompt longer than the context', { prompt: 'a'.repeat(33) }, 400, 'prompt', /33 tokens do not fit the model's context of 32/],
    ['a body over the limit', { prompt: 'a'.repeat(5000) }, 413, null, /larger than 4096 bytes/],
    ['another model', { prompt: 'a', model: 'gpt-4' }, 404, 'model', /model 'gpt-4' is not served here; this server serves 'tiny-run'/],
  ] as const)('refuses %s, naming the field', async (_what, body, status, param, message) => {
    const r = await post(server, body);
    expect(r.status).toBe(status);
    const { error } = await r.json();
    expect(error.param).toBe(param);
    expect(error.message).toMatch(message);
    expect(error.type).toBe(status === 404 ? 'invalid_request_error' : 'invalid_request_error');
  });

  it('OpenAI fields at their neutral values are accepted', async () => {
    const r = await post(server, { prompt: 'a', max_tokens: 2, n: 1, top_p: 1, echo: false, logprobs: null, stop: null, user: 'me' });
    expect(r.status).toBe(200);
  });

  it('a client that disconnects cancels its generation and frees its sequence', async () => {
    const controller = new AbortController();
    const r = await post(server, { prompt: 'a', max_tokens: 500, at_context: 'slide', stream: true }, { signal: controller.signal });
    const reader = r.body!.getReader();
    await reader.read(); // a token or more: it runs
    expect((await (await fetch(`${server.url}/health`)).json()).running).toBe(1);
    controller.abort();
    await until(async () => (await (await fetch(`${server.url}/health`)).json()).running === 0, 'the cancelled sequence to leave');
  });

  it('health checks answer while it generates', async () => {
    const pending = Array.from({ length: 4 }, (_, i) => post(server, { prompt: 'b', max_tokens: 300, at_context: 'slide', seed: i }).then((r) => r.json()));
    await until(async () => (await (await fetch(`${server.url}/health`)).json()).running === 4, 'four sequences to run');
    const results = await Promise.all(pending);
    expect(results.map((b) => b.choices[0].token_ids.length)).toEqual([300, 300, 300, 300]);
    expect(results.every((b) => b.slides > 0)).toBe(true);
  });
});

// Requests that no machine finishes within a drain, however fast its kernels: they end only when cancelled.
const ENDLESS = 10_000_000;

describe('switchyard serve under pressure', () => {
  it('answers 429 beyond maxBatch + maxQueue requests in flight', async () => {
    const server = await serve({ run: await tinyRun(), port: 0, maxBatch: 1, maxQueue: 1, drainSeconds: 0, maxTokensLimit: ENDLESS });
    const long = { prompt: 'a', max_tokens: ENDLESS, at_context: 'slide' };
    const first = post(server, long), second = post(server, long);
    await until(async () => server.inference.load().running + server.inference.load().waiting === 2, 'two requests in flight');
    const third = await post(server, long);
    expect(third.status).toBe(429);
    expect(third.headers.get('retry-after')).toBe('1');
    expect((await third.json()).error).toMatchObject({ type: 'rate_limit_error', message: expect.stringMatching(/2 requests are in flight/) });
    await server.close(); // drainSeconds 0: the two are cancelled
    for (const r of await Promise.all([first, second])) expect((await r.json()).choices[0].finish_reason).toBe('cancelled');
  });

  it('close() stops accepting, lets requests in flight finish within the drain, and cancels the rest', async () => {
    const server = await serve({ run: await tinyRun(), port: 0, drainSeconds: 0.5, maxTokensLimit: ENDLESS });
    const short = post(server, { prompt: 'a', max_tokens: 5, stream: true });
    const endless = post(server, { prompt: 'b', max_tokens: ENDLESS, at_context: 'slide', stream: true });
    const [s, e] = await Promise.all([short, endless]);
    const closed = server.close();
    const [shortEvents, endlessEvents] = await Promise.all([events(s), events(e)]);
    await closed;
    expect(shortEvents.at(-1).choices[0].finish_reason).toBe('length');
    expect(endlessEvents.at(-1).choices[0].finish_reason).toBe('cancelled');
    await expect(fetch(`${server.url}/health`)).rejects.toThrow();
  });

  it('the CLI stops on SIGTERM within its drain and exits 0', async () => {
    const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
    const child = spawn(process.execPath, [cli, 'serve', '--run', await tinyRun(), '--port', '0', '--drain', '1', '--max-tokens-limit', String(ENDLESS)]);
    let out = '';
    child.stdout.on('data', (d) => { out += d; });
    const exited = new Promise<number | null>((resolve) => child.on('exit', resolve));
    try {
      await until(async () => /on (http:\/\/\S+):/.test(out), 'the server to listen', 30_000);
      const url = out.match(/on (http:\/\/\S+):/)![1]!;
      const inFlight = fetch(`${url}/v1/completions`, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ prompt: 'a', max_tokens: ENDLESS, at_context: 'slide' }),
      });
      await until(async () => (await (await fetch(`${url}/health`)).json()).running === 1, 'the request to run');
      child.kill('SIGTERM');
      expect((await (await inFlight).json()).choices[0].finish_reason).toBe('cancelled');
      expect(await exited).toBe(0);
      expect(out).toMatch(/SIGTERM: no new requests; those in flight have 1 s to finish\nstopped/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL'); // a failed run leaves no server behind
    }
  }, 60_000);
});
