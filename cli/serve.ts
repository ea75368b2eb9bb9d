// `switchyard serve`: the completions server until SIGTERM or Ctrl-C, which stop it gracefully.
import { type ServeOptions, serve } from '../index.js';

export async function serveCommand(o: ServeOptions & { drain: number }): Promise<void> {
  const server = await serve({ ...o, drainSeconds: o.drain });
  const { name, context, step } = server.inference.info;
  console.log(`serving ${name} (step ${step}, context ${context}) on ${server.url}: POST /v1/completions, GET /v1/models, GET /health`);
  const stop = (signal: string) => {
    console.log(`${signal}: no new requests; those in flight have ${o.drain} s to finish`);
    // Should anything hang past the drain, the process still ends, and with success: it was asked to.
    setTimeout(() => process.exit(0), (o.drain + 15) * 1000).unref();
    void server.close().then(() => console.log('stopped'));
  };
  process.once('SIGTERM', () => stop('SIGTERM'));
  process.once('SIGINT', () => stop('SIGINT'));
}
