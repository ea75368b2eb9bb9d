// The dedicated thread behind createEngine(): owns a SwitchEngine and serves it through Comlink,
// so the host application's event loop never runs engine work.
import { parentPort } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import type { ForwardOptions, SwitchStats } from '../model/switch-layer.js';
import { type EngineOptions, type StepTiming, SwitchEngine } from './switch-engine.js';

export interface StepSummary {
  auxLoss: number;
  zLoss: number;
  capacity: number;
  dropped: number;
  tokensPerExpert: Int32Array;
  keptPerExpert: Int32Array;
  timing: StepTiming;
}

type Weights = { router: Float32Array; wIn: Float32Array; wOut: Float32Array; wGate?: Float32Array };

let engine: SwitchEngine | undefined;
const current = (): SwitchEngine => {
  if (!engine) throw new Error('engine: closed');
  return engine;
};
/** Arrays in the engine's shared memory are reused next step: what leaves this thread is a copy. */
const copyStats = (s: SwitchStats): SwitchStats => ({
  ...s, expertIndex: s.expertIndex.slice(), gates: s.gates.slice(), kept: s.kept.slice(), tokensPerExpert: s.tokensPerExpert.slice(),
  keptPerExpert: s.keptPerExpert.slice(), routerProbs: s.routerProbs.slice(),
});
const copyWeights = (w: Weights): Weights => ({
  router: w.router.slice(), wIn: w.wIn.slice(), wOut: w.wOut.slice(), ...(w.wGate && { wGate: w.wGate.slice() }),
});

const api = {
  init(options: EngineOptions): void {
    engine = new SwitchEngine(options);
  },
  async forward(x: Float32Array, tokens: number, options?: ForwardOptions) {
    const { y, stats } = await current().forward(x, tokens, options);
    const out = y.slice();
    return Comlink.transfer({ y: out, stats: copyStats(stats) }, [out.buffer]);
  },
  async backward(dy: Float32Array) {
    const dx = (await current().backward(dy)).slice();
    return Comlink.transfer(dx, [dx.buffer]);
  },
  /** One training step of the layer: forward, then backward with the given dy. */
  async trainStep(x: Float32Array, tokens: number, dy: Float32Array, options?: ForwardOptions): Promise<StepSummary> {
    const e = current();
    const { stats } = await e.forward(x, tokens, { training: true, ...options });
    await e.backward(dy);
    return {
      auxLoss: stats.auxLoss, zLoss: stats.zLoss, capacity: stats.capacity, dropped: stats.dropped,
      tokensPerExpert: stats.tokensPerExpert.slice(), keptPerExpert: stats.keptPerExpert.slice(), timing: e.lastTiming(),
    };
  },
  setWeights(w: Weights): void {
    current().setWeights(w);
  },
  getWeights(): Weights {
    return copyWeights(current().weights as Weights);
  },
  getGrads(): Weights {
    return copyWeights(current().grads as Weights);
  },
  async close(): Promise<void> {
    await engine?.close();
    engine = undefined;
  },
};

export type EngineHostApi = typeof api;

Comlink.expose(api, nodeEndpoint(parentPort!));
