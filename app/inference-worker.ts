// The thread behind createInference(): the run's model and its scheduler (app/batcher.ts). It
// takes checked requests and cancellations, and sends each step's events back in one message.
import { parentPort, workerData } from 'node:worker_threads';
import { createKernels } from '../kernels/index.js';
import { Batcher, type InferenceOptions } from './batcher.js';
import type { FromWorker, ToWorker } from './inference-thread.js';
import { openRun } from './run-folder.js';

const { dir, options } = workerData as { dir: string; options: InferenceOptions };
const port = parentPort!;
const run = openRun(dir, createKernels());
const batcher = new Batcher(run.model, run.tokenizer, options);
const cancels = new Map<number, () => void>();

// Events wait here until the step that made them is over (the batcher yields to the event loop
// between steps), then leave together: one message a step, not one per token.
let outbox: FromWorker[] = [];
function send(event: FromWorker): void {
  if (outbox.length === 0) setImmediate(flush);
  outbox.push(event);
}
function flush(): void {
  if (outbox.length === 0) return;
  port.postMessage(outbox);
  outbox = [];
}

port.on('message', (m: ToWorker) => {
  switch (m.op) {
    case 'start': {
      const id = m.id;
      cancels.set(id, batcher.add(m.request, {
        start: (prompt) => send({ op: 'start', id, prompt }),
        token: (piece) => send({ op: 'token', id, piece }),
        end: (result) => { cancels.delete(id); send({ op: 'end', id, result }); },
        fail: (error) => { cancels.delete(id); send({ op: 'fail', id, message: error.message }); },
      }));
      break;
    }
    case 'cancel':
      cancels.get(m.id)?.();
      break;
    case 'close':
      void batcher.close().then(async () => {
        await run.model.dispose();
        flush();
        port.close(); // nothing else keeps this thread: it ends
      });
      break;
  }
});
port.postMessage([{ op: 'ready', step: run.step }] satisfies FromWorker[]);
