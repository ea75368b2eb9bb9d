// createEngine(): the engine in a dedicated thread behind Comlink, so a Node application keeps
// its event loop while it trains. Every call is a promise; arrays cross as copies.
import { Worker } from 'node:worker_threads';
import * as Comlink from 'comlink';
import nodeEndpoint from 'comlink/dist/esm/node-adapter.mjs';
import { compiledScript, threadExecArgv } from './compiled-script.js';
import type { EngineHostApi } from './engine-host.js';
import type { EngineOptions } from './switch-engine.js';

type Api = EngineHostApi;
/** The engine's API, every method asynchronous. */
export type EmbeddedEngine = {
  [K in Exclude<keyof Api, 'init'>]: (...args: Parameters<Api[K]>) => Promise<Awaited<ReturnType<Api[K]>>>;
};

/** `script`: the engine thread's script; default engine/engine-host.js (tests wrap it to make the thread die). */
export async function createEngine(options: EngineOptions, script = compiledScript('engine-host.js')): Promise<EmbeddedEngine> {
  const worker = new Worker(script, { execArgv: threadExecArgv() });
  const remote = Comlink.wrap<Api>(nodeEndpoint(worker));
  // If the engine's thread dies, every pending and later call rejects instead of waiting forever.
  let closed = false;
  const died = new Promise<never>((_, reject) => {
    worker.once('error', (error) => reject(new Error(`engine thread failed: ${error.message}`, { cause: error })));
    worker.once('exit', (code) => reject(new Error(closed ? 'engine: closed' : `engine thread exited with code ${code}`)));
  });
  died.catch(() => { /* observed through each call */ });
  const call = <T>(request: () => Promise<T>): Promise<T> =>
    closed ? Promise.reject(new Error('engine: closed')) : Promise.race([request(), died]);

  await call(() => remote.init(options));
  return {
    forward: (...args) => call(() => remote.forward(...args)),
    backward: (...args) => call(() => remote.backward(...args)),
    trainStep: (...args) => call(() => remote.trainStep(...args)),
    setWeights: (...args) => call(() => remote.setWeights(...args)),
    getWeights: () => call(() => remote.getWeights()),
    getGrads: () => call(() => remote.getGrads()),
    close: async () => {
      if (closed) return;
      await call(() => remote.close());
      closed = true;
      remote[Comlink.releaseProxy]();
      await worker.terminate();
    },
  };
}
