// Generation through the scheduler: the cache against recomputation (tokens and routing), the
// context policies, batches against each request alone, streaming and its cancellation, routing
// per token, and requests refused by field.
import { describe, expect, it } from 'vitest';
import { type InferenceOptions } from '../app/batcher.js';
import { type GenerationRequest, type GenerationResult, RequestError } from '../app/generate.js';
import { type Inference, generateBatch, localInference, sample } from '../app/inference.js';
import { byteTokenizer, charTokenizer, type Tokenizer } from '../app/tokenizer.js';
import { createKernels } from '../kernels/index.js';
import { type ModelConfig, PRESETS } from '../model/config.js';
import { Rng } from '../model/rng.js';
import { Transformer } from '../model/transformer.js';

const kernels = createKernels();
const tokenizer = charTokenizer('abcdefghijklmnopqrstuvwxyz .,\n');
const CONFIG: ModelConfig = {
  ...PRESETS.tiny.model, vocabSize: tokenizer.vocabSize, context: 16, layers: 2, heads: 2, dModel: 16, dFF: 24, numExperts: 4,
  routerJitter: 0,
};
const GPT: Partial<ModelConfig> = { positions: 'learned', norm: 'layernorm', activation: 'gelu', bias: true, topK: 2, sparseStep: 1 };

function makeModel(overrides: Partial<ModelConfig> = {}, tok: Tokenizer = tokenizer): Transformer {
  const m = new Transformer(kernels, { ...CONFIG, vocabSize: tok.vocabSize, ...overrides }, { seed: 4 });
  for (const p of m.params.list) new Rng('gen', p.name).fillNormal(p.data, 0.3);
  m.syncComputeCopies();
  return m;
}

/** Equal tokens, text and reasons; gates within 1e-5 (on WebAssembly the two paths round them apart: test/kv-cache.test.ts). */
function expectSame(a: GenerationResult, b: GenerationResult): void {
  const gates = (r: GenerationResult) => [...(r.promptRouting ?? []), ...(r.routing ?? [])].flatMap((t) => (t ?? []).flatMap((l) => l.gates));
  const strip = (r: GenerationResult) => JSON.parse(JSON.stringify(r, (k, v) => (k === 'gates' ? undefined : v)));
  expect(strip(a)).toEqual(strip(b));
  const [ga, gb] = [gates(a), gates(b)];
  expect(ga.length).toBe(gb.length);
  ga.forEach((g, i) => expect(Math.abs(g - gb[i]!)).toBeLessThan(1e-5));
}

async function run(model: Transformer, request: GenerationRequest, options: InferenceOptions = {}, tok: Tokenizer = tokenizer): Promise<GenerationResult> {
  const inference = localInference(model, tok, options);
  try {
    return await inference.stream(request).result;
  } finally {
    await inference.close();
  }
}

describe('generation with the cache equals recomputation', () => {
  it.each([['qwen2-moe layout', {}], ['gpt layout, top-2', GPT]] as const)('%s: greedy and sampled tokens, and every token\'s routing', async (_name, overrides) => {
    const model = makeModel(overrides);
    for (const request of [
      { prompt: 'the cat', maxTokens: 9, temperature: 0, returnExperts: true },
      { prompt: 'a', maxTokens: 12, temperature: 1.2, topK: 5, seed: 7 },
    ]) {
      const cached = await run(model, request);
      const recomputed = await run(model, request, { cache: false });
      expect(cached.ids).toHaveLength(request.maxTokens);
      expectSame(cached, recomputed);
    }
    await model.dispose();
  });

  it('a token\'s routing is where that token went: the rows of a forward over the whole text', async () => {
    const model = makeModel();
    const r = await run(model, { prompt: 'hello', maxTokens: 6, temperature: 0, returnExperts: true });
    const all = [...r.promptIds, ...r.ids];
    const { switchStats } = await model.forward({ inputs: Int32Array.from(all), batch: 1, context: all.length }, { dropless: true });
    const routed = [...r.promptRouting!, ...r.routing!];
    expect(routed).toHaveLength(all.length);
    routed.forEach((layers, t) => {
      expect(layers!.map((l) => l.layer)).toEqual([1]);
      expect(layers![0]!.experts).toEqual([switchStats[0]!.expertIndex[t]]);
      expect(layers![0]!.gates[0]).toBeCloseTo(switchStats[0]!.gates[t]!, 6);
    });
    await model.dispose();
  });
});

describe('at the context length', () => {
  it('stops with the reason by default; the last token without room has no routing', async () => {
    const model = makeModel();
    const r = await run(model, { prompt: 'abcdefghij', maxTokens: 50, temperature: 0, returnExperts: true });
    expect(r.finishReason).toBe('context');
    expect(r.ids).toHaveLength(16 - 10 + 1); // positions 10…15 fed, each predicting one more
    expect(r.routing!.at(-1)).toBeNull();
    expect(r.routing!.slice(0, -1).every((x) => x !== null)).toBe(true);
    expect((await run(model, { prompt: 'abcdefghij', maxTokens: 7, temperature: 0 })).finishReason).toBe('length');
    await model.dispose();
  });

  it('slides when asked, keeping the last half of the window; the cache and recomputation agree', async () => {
    const model = makeModel(GPT);
    const request = { prompt: 'once upon', maxTokens: 30, temperature: 0.9, seed: 3, atContext: 'slide' as const, returnExperts: true };
    const cached = await run(model, request);
    expect(cached.finishReason).toBe('length');
    expect(cached.ids).toHaveLength(30);
    expect(cached.slides).toBe(3); // 9 + 30 tokens: windows of 16, then 8 + 8 more, three times
    expectSame(cached, await run(model, request, { cache: false }));
    await model.dispose();
  });

  it('a prompt longer than the context is refused, or starts from its end when sliding', async () => {
    const model = makeModel();
    const long = 'abcdefghijklmnopqrstuvwxyz';
    expect(() => localInference(model, tokenizer).stream({ prompt: long })).toThrow(/prompt: 26 tokens do not fit the model's context of 16/);
    const r = await run(model, { prompt: long, maxTokens: 3, temperature: 0, atContext: 'slide', returnExperts: true });
    expect(r.ids).toHaveLength(3);
    expect(r.promptRouting!.slice(0, 10).every((x) => x.length === 0)).toBe(true);
    expect(r.promptRouting!.slice(10).every((x) => x.length === 1)).toBe(true);
    await model.dispose();
  });
});

describe('batched generation', () => {
  it('prompts of different lengths and settings, together, each as alone', async () => {
    const model = makeModel();
    const requests: GenerationRequest[] = [
      { prompt: 'the', maxTokens: 8, temperature: 0 },
      { prompt: 'longer prompt', maxTokens: 3, temperature: 0.7, topK: 4, seed: 11 },
      { prompt: '', maxTokens: 12, temperature: 1.5, topK: 0, seed: 2, returnExperts: true },
      { prompt: 'x', maxTokens: 0 },
      { prompt: 'zz', maxTokens: 20, temperature: 1, seed: 5, atContext: 'slide' },
    ];
    const alone = [];
    for (const r of requests) alone.push(await run(model, r));
    const inference = localInference(model, tokenizer, { maxBatch: 3 }); // two wait, then join as others leave
    expect(await generateBatch(inference, requests)).toEqual(alone);
    await inference.close();
    expect(alone.map((r) => r.ids.length)).toEqual([8, 3, 12, 0, 20]);
    await model.dispose();
  });
});

describe('streaming', () => {
  it('tokens arrive one by one and join into the result\'s text, UTF-8 pieces included', async () => {
    const bytes = byteTokenizer();
    const model = makeModel({}, bytes);
    const inference = localInference(model, bytes);
    const stream = inference.stream({ prompt: 'é', maxTokens: 14, temperature: 1.5, seed: 9, topK: 0 });
    const pieces = [];
    for await (const piece of stream) pieces.push(piece);
    const result = await stream.result;
    expect(pieces.map((p) => p.id)).toEqual(result.ids);
    expect(pieces.map((p) => p.text).join('')).toBe(result.text.replace(/\uFFFD$/, ''));
    expect(result.text).toBe(new TextDecoder().decode(Uint8Array.from(result.ids)));
    expect(result.promptIds).toEqual([0xc3, 0xa9]);
    await inference.close();
    await model.dispose();
  });

  it('an AbortSignal or leaving the loop cancels; the others go on', async () => {
    const model = makeModel();
    const inference: Inference = localInference(model, tokenizer);
    const controller = new AbortController();
    const aborted = inference.stream({ prompt: 'a', maxTokens: 1000, atContext: 'slide' }, { signal: controller.signal });
    const left = inference.stream({ prompt: 'b', maxTokens: 1000, atContext: 'slide' });
    const other = inference.stream({ prompt: 'c', maxTokens: 10 });
    let seen = 0;
    for await (const _ of aborted) if (++seen === 3) controller.abort();
    for await (const _ of left) break;
    const [a, l, o] = await Promise.all([aborted.result, left.result, other.result]);
    expect(a.finishReason).toBe('cancelled');
    expect(a.ids.length).toBeLessThan(1000);
    expect(l.finishReason).toBe('cancelled');
    expect(o).toMatchObject({ finishReason: 'length' });
    expect(o.ids).toHaveLength(10);
    expect(inference.load()).toEqual({ running: 0, waiting: 0 });
    await inference.close();
    await model.dispose();
  });
});

describe('requests', () => {
  it('bad input is a RequestError naming the field', () => {
    const model = makeModel();
    const inference = localInference(model, tokenizer);
    const refused = (r: unknown) => { try { inference.stream(r as GenerationRequest); } catch (e) { return e; } return undefined; };
    expect(refused({ prompt: 7 })).toMatchObject({ field: 'prompt', message: 'prompt: must be a string, got 7' });
    expect(refused({ prompt: 'ABC' })).toMatchObject({ field: 'prompt', message: expect.stringMatching(/'A' \(U\+0041\) at position 0 is not in the vocabulary/) });
    expect(refused({ prompt: 'a', temperature: -1 })).toMatchObject({ field: 'temperature' });
    expect(refused({ prompt: 'a', maxTokens: 1.5 })).toMatchObject({ field: 'maxTokens', message: 'maxTokens: must be a whole number ≥ 0, got 1.5' });
    expect(refused({ prompt: 'a', topK: '3' })).toMatchObject({ field: 'topK' });
    expect(refused({ prompt: 'a', atContext: 'wrap' })).toMatchObject({ field: 'atContext' });
    expect(refused({ prompt: 'a', seed: 2 ** 60 })).toBeInstanceOf(RequestError);
  });

  it('the original sample(): the prompt and maxTokens tokens, past the context too', async () => {
    const model = makeModel();
    const text = await sample(model, tokenizer, 'ab', { maxTokens: 40, temperature: 0.8, topK: 40, seed: 1 });
    expect(text.startsWith('ab')).toBe(true);
    expect(text).toHaveLength(42);
    expect(await sample(model, tokenizer, 'ab', { maxTokens: 40, temperature: 0.8, topK: 40, seed: 1 }, { cache: false })).toBe(text);
    await model.dispose();
  });
});
