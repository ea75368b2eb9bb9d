// The threaded engine: the same numbers as the in-process layer, balanced placement, faults that
// fail a step cleanly and leave the experts intact, few bytes per step, and the Comlink embedding.
import { spawnSync } from 'node:child_process';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterAll, describe, expect, it } from 'vitest';
import { ChunkBoard } from '../engine/chunk-board.js';
import { createEngine } from '../engine/embed.js';
import { Placement } from '../engine/placement.js';
import { type EngineOptions, SwitchEngine } from '../engine/switch-engine.js';
import { createKernels } from '../kernels/index.js';
import type { SwitchLayerOptions } from '../model/config.js';
import { Rng } from '../model/rng.js';
import { DYING_HOST, FAULTY_WORKER, injectFault } from './helpers.js';
import { SwitchLayer } from '../model/switch-layer.js';

// The kernels this machine runs by default (native where the addon is built), in process and on the workers alike.
const kernels = createKernels();
const engines: SwitchEngine[] = [];
afterAll(async () => { await Promise.all(engines.map((e) => e.close())); });
// Every engine here runs the worker script that can fail on request; without a fault it is the engine's own.
const engine = (o: EngineOptions) => { const e = new SwitchEngine({ workerScript: FAULTY_WORKER, ...o }); engines.push(e); return e; };

interface StepResult { y: number[]; dx: number[]; grads: number[][]; stats: string }

function inputs(o: SwitchLayerOptions, T: number) {
  const rng = new Rng('engine-test', T);
  return { x: rng.fillNormal(new Float32Array(T * o.dModel)), dy: rng.fillNormal(new Float32Array(T * o.dModel)) };
}

function snapshot(y: Float32Array, dx: Float32Array, layer: Pick<SwitchLayer, 'grads'>, stats: object): StepResult {
  const g = layer.grads;
  return {
    y: Array.from(y), dx: Array.from(dx),
    grads: [g.router, g.wIn, g.wOut, ...(g.wGate ? [g.wGate] : [])].map((a) => Array.from(a)),
    stats: JSON.stringify(stats, (_k, v) => (ArrayBuffer.isView(v) ? Array.from(v as Float32Array) : v)),
  };
}

function runLayer(o: SwitchLayerOptions, T: number, step: number): StepResult {
  const layer = new SwitchLayer(kernels, o, { seed: 9 });
  const { x, dy } = inputs(o, T);
  const { y, stats } = layer.forward(x, T, { training: true, step });
  const yCopy = Float32Array.from(y);
  const result = snapshot(yCopy, layer.backward(dy), layer, stats);
  layer.dispose();
  return result;
}

async function runEngine(e: SwitchEngine, T: number, step: number): Promise<StepResult> {
  const { x, dy } = inputs(e.config, T);
  const { y, stats } = await e.forward(x, T, { training: true, step });
  const yCopy = Float32Array.from(y);
  return snapshot(yCopy, await e.backward(dy), e, stats);
}

const CONFIGS: [string, SwitchLayerOptions][] = [
  ['relu top-1 cf 1.25', { dModel: 32, dFF: 48, numExperts: 8 }],
  ['swiglu top-2, jitter and dropout', { dModel: 24, dFF: 40, numExperts: 6, topK: 2, activation: 'swiglu', routerJitter: 0.1, expertDropout: 0.2 }],
  ['gelu dropless, 3 experts', { dModel: 16, dFF: 20, numExperts: 3, capacityFactor: null, activation: 'gelu' }],
];

describe('the engine computes the in-process layer exactly', () => {
  it.each(CONFIGS.flatMap(([name, o]) => [1, 2, 4].map((w) => [name, w, o] as const)))('%s, %i workers', async (_n, workers, o) => {
    const e = engine({ ...o, workers, seed: 9 });
    for (const step of [0, 1]) expect(await runEngine(e, 100, step)).toEqual(runLayer(o, 100, step));
  });
});

describe('placement', () => {
  it('starts round-robin and re-places heaviest first onto the least loaded worker', () => {
    const p = new Placement(6, 2, 1);
    expect(Array.from(p.owner)).toEqual([0, 1, 0, 1, 0, 1]);
    p.observe([10, 50, 40, 5, 30, 20]); // LPT: 50→0, 40→1, 30→1, 20→0, 10→0, 5→1
    expect(p.shards()).toEqual([[0, 1, 5], [2, 3, 4]]);
  });

  it('re-places only every N steps, and never with 0', () => {
    const every2 = new Placement(3, 3, 2);
    every2.observe([1, 2, 3]);
    expect(Array.from(every2.owner)).toEqual([2, 1, 0]);
    every2.observe([3, 2, 1]);
    expect(Array.from(every2.owner)).toEqual([2, 1, 0]);
    const never = new Placement(3, 2, 0);
    never.observe([100, 0, 0]);
    expect(Array.from(never.owner)).toEqual([0, 1, 0]);
    expect(() => new Placement(3, 0, 1)).toThrow(/workers must be a positive integer/);
  });

  it('keeps per-worker token load even, and reports busy and idle time per worker', async () => {
    const e = engine({ dModel: 16, dFF: 32, numExperts: 8, workers: 2, seed: 3 });
    const { x, dy } = inputs(e.config, 512);
    const { stats } = await e.forward(x, 512);
    await e.backward(dy);
    const t = e.lastTiming();
    const tokens = t.workers.map((w) => w.tokens);
    expect(tokens.reduce((a, b) => a + b, 0)).toBe(2 * (512 - stats.dropped)); // each kept row once per phase
    // The placement's load (who computes follows the real speeds: 'work sharing' below).
    const owned = t.workers.map((w) => w.experts.reduce((n, ex) => n + stats.keptPerExpert[ex]!, 0));
    expect(Math.max(...owned) - Math.min(...owned)).toBeLessThanOrEqual(Math.max(...stats.keptPerExpert));
    for (const w of t.workers) {
      expect(w.busyMs).toBeGreaterThan(0);
      expect(w.idleMs).toBeGreaterThanOrEqual(0);
    }
    expect(t.overheadFraction).toBeGreaterThan(0);
    expect(t.overheadFraction).toBeLessThan(1);
    expect(t.routingFraction).toBeGreaterThan(0);
    expect(t.routingFraction).toBeLessThan(t.overheadFraction);
  });
});

describe('work sharing', () => {
  it('hands out every chunk once: owners from the front, others one at a time from the back of the job with most left', () => {
    const board = new ChunkBoard(new Int32Array(new SharedArrayBuffer(4 * ChunkBoard.words(3, 4, 2))), 3, 4, 2);
    board.reset([3, 1, 4]);
    expect(board.anyIdle()).toBe(false);
    expect(board.claimFront(0, Infinity)).toEqual([0, 3]);
    expect(board.claimFront(0, 1)).toBeUndefined();
    board.becomeIdle();
    expect(board.anyIdle()).toBe(true);
    expect(board.claimBack()).toEqual([2, 3]);
    expect(board.claimFront(2, 1)).toEqual([0, 1]);
    expect(board.claimBack()).toEqual([2, 2]); // job 2 has 2 left, job 1 has 1
    expect(board.claimBack()).toEqual([1, 0]); // a tie goes to the lower job
    expect(board.claimBack()).toEqual([2, 1]);
    expect(board.claimBack()).toBeUndefined();
    board.fillSlot(3, 2, 3); board.fillSlot(0, 2, 1); board.fillSlot(2, 0, 2);
    expect(board.filledSlots()).toEqual([[2, 0, 2], [0, 2, 1], [3, 2, 3]]); // the order to add them in
    board.count(1, 256, true); board.count(1, 100, false);
    expect([board.tokens(1), board.stolen(1), board.tokens(0)]).toEqual([356, 1, 0]);
    board.reset([1, 1, 1]);
    expect([board.filledSlots(), board.anyIdle(), board.tokens(1)]).toEqual([[], false, 0]);
  });


  // Enough tokens that each expert has several chunks (ROW_BLOCK rows each), so chunks other than the first are taken.
  it.each([
    ['relu top-1', { dModel: 16, dFF: 24, numExperts: 3 }],
    ['swiglu top-2 with dropout and jitter', { dModel: 12, dFF: 20, numExperts: 3, topK: 2, activation: 'swiglu', expertDropout: 0.3, routerJitter: 0.1 }],
  ] as [string, SwitchLayerOptions][])('a slow worker\'s chunks go to the others, and the step is exactly the in-process one (%s)', async (_name, o) => {
    const T = 1600, step = 4;
    const e = engine({ ...o, workers: 2, seed: 9 });
    const { x, dy } = inputs(o, T);
    injectFault(0, 'slow');
    const { y, stats } = await e.forward(x, T, { training: true, step });
    const forward = e.lastTiming();
    const yCopy = Float32Array.from(y);
    injectFault(0, 'slow');
    const result = snapshot(yCopy, await e.backward(dy), e, stats);
    const t = e.lastTiming();
    expect(forward.workers[1]!.stolen, 'chunks taken in forward').toBeGreaterThan(0);
    expect(t.workers[1]!.stolen - forward.workers[1]!.stolen, 'chunks taken in backward').toBeGreaterThan(0);
    const own = (w: number) => t.workers[w]!.experts.reduce((n, ex) => n + stats.keptPerExpert[ex]!, 0);
    expect(t.workers[1]!.tokens).toBeGreaterThan(2 * own(1));
    expect(result).toEqual(runLayer(o, T, step));
  });
});

describe('messages', () => {
  it('post a few kilobytes per step, whatever the number of tokens', async () => {
    const bytes: number[] = [];
    for (const T of [64, 4096]) {
      const e = engine({ dModel: 64, dFF: 64, numExperts: 8, workers: 2 });
      const { x, dy } = inputs(e.config, T);
      await e.forward(x, T);
      await e.backward(dy);
      bytes.push(e.lastTiming().bytesPosted);
    }
    expect(bytes[0]).toBeGreaterThan(500);
    expect(bytes[1]).toBeLessThan(8192);
    expect(Math.abs(bytes[1]! - bytes[0]!)).toBeLessThan(200); // activations never travel: 64× the tokens, same bytes
  });
});

describe('faults', () => {
  const o: SwitchLayerOptions = { dModel: 16, dFF: 24, numExperts: 4 };
  it.each([
    ['throws', 'throw', 'forward', /worker 1 \(experts [\d, ]+\) failed in forward of step 5: injected fault/],
    ['dies', 'exit', 'backward', /worker 1 \(experts [\d, ]+\) failed in backward of step 5: .*exit/i],
    ['hangs', 'hang', 'forward', /worker 1 \(experts [\d, ]+\) failed in forward of step 5: no answer within 1500 ms/],
  ] as const)('a worker that %s fails the step by name; the retried step equals a clean one', async (_what, fault, phase, message) => {
    const clean = await runEngine(engine({ ...o, workers: 2, seed: 9 }), 64, 5);
    const e = engine({ ...o, workers: 2, seed: 9, timeoutMs: 1500 });
    const { x, dy } = inputs(o, 64);
    if (phase === 'forward') {
      injectFault(1, fault);
      await expect(e.forward(x, 64, { training: true, step: 5 })).rejects.toThrow(message);
    } else {
      await e.forward(x, 64, { training: true, step: 5 });
      injectFault(1, fault);
      await expect(e.backward(dy)).rejects.toThrow(message);
    }
    expect(await runEngine(e, 64, 5)).toEqual(clean);
  }, 20_000);
});

describe('waiting for the workers', () => {
  it('still turns this thread\'s event loop: timers fire during a run of steps', async () => {
    const o = { dModel: 32, dFF: 64, numExperts: 4, workers: 2, seed: 3 };
    const e = engine(o);
    const { x, dy } = inputs(o, 256);
    await runEngine(e, 256, 0); // threads started
    const delay = monitorEventLoopDelay({ resolution: 1 });
    delay.enable();
    for (let step = 1; step <= 200; step++) {
      await e.forward(x, 256, { training: true, step });
      await e.backward(dy);
    }
    delay.disable();
    // The pool turns the loop at least every 10 ms while it waits (SLICE_MS); a step's own work on
    // this thread and a busy host's scheduling come on top. The README states this bound.
    const p99 = delay.percentile(99) / 1e6;
    expect(p99, `p99 event-loop delay ${p99.toFixed(1)} ms, max ${(delay.max / 1e6).toFixed(1)} ms`).toBeLessThan(50);
  });
});

describe('createEngine (Comlink)', () => {
  it('trains in its own thread: the host event loop stays free, and close() ends every thread', async () => {
    const o = { dModel: 64, dFF: 256, numExperts: 8, workers: 2, seed: 4 };
    const embedded = await createEngine(o);
    const T = 1024;
    const { x, dy } = inputs(o, T);
    const delay = monitorEventLoopDelay({ resolution: 5 });
    delay.enable();
    let summary;
    for (let step = 0; step < 15; step++) summary = await embedded.trainStep(x, T, dy, { step });
    delay.disable();
    expect(delay.percentile(99) / 1e6).toBeLessThan(50);
    expect(summary!.tokensPerExpert.reduce((a: number, b: number) => a + b, 0)).toBe(T);
    // The embedded engine computes what the engine in this thread computes.
    const local = engine(o);
    await local.forward(x, T, { training: true, step: 14 });
    await local.backward(dy);
    expect(Array.from((await embedded.getGrads()).wIn)).toEqual(Array.from(local.grads.wIn));
    await embedded.close();
    await expect(embedded.trainStep(x, T, dy)).rejects.toThrow(/closed/);
  }, 60_000);

  it('lets the process exit by itself after close()', () => {
    const script = `
      import { createEngine } from ${JSON.stringify(new URL('../dist/engine/embed.js', import.meta.url).href)};
      const e = await createEngine({ dModel: 8, dFF: 8, numExperts: 2, workers: 2 });
      await e.forward(new Float32Array(32), 4);
      await e.close();
      console.log('closed');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.error).toBeUndefined(); // a timeout would mean a thread kept the process alive
    expect(r.stdout.trim()).toBe('closed');
    expect(r.status).toBe(0);
  });

  it('rejects every pending and later call when the engine\'s thread dies', async () => {
    const o = { dModel: 16, dFF: 32, numExperts: 4, workers: 1, seed: 2 };
    const embedded = await createEngine(o, DYING_HOST); // init is its first request
    const T = 256, { x, dy } = inputs(o, T);
    await embedded.trainStep(x, T, dy); // the second
    const pending = embedded.trainStep(x, T, dy); // the third: the thread exits while it runs
    await expect(pending).rejects.toThrow('engine thread exited with code 7');
    await expect(embedded.forward(x, T)).rejects.toThrow('engine thread exited with code 7');
  }, 60_000);
});

describe('the worker threads', () => {
  it('do not keep a process alive that never closed its engine', () => {
    const script = `
      import { SwitchEngine } from ${JSON.stringify(new URL('../dist/engine/switch-engine.js', import.meta.url).href)};
      const e = new SwitchEngine({ dModel: 8, dFF: 8, numExperts: 2, workers: 2 });
      await e.forward(new Float32Array(32), 4);
      await e.backward(new Float32Array(32));
      console.log('done');`;
    const r = spawnSync(process.execPath, ['--input-type=module', '-e', script], { encoding: 'utf8', timeout: 20_000 });
    expect(r.error).toBeUndefined(); // a timeout would mean an idle worker kept the process alive
    expect(r.stdout.trim()).toBe('done');
    expect(r.status).toBe(0);
  });
});
