// Comlink ships its Node adapter's types as node-adapter.d.ts beside node-adapter.mjs, which
// NodeNext resolution does not pair; this says what the module is.
declare module 'comlink/dist/esm/node-adapter.mjs' {
  import type { Endpoint } from 'comlink';
  import type { MessagePort, Worker } from 'node:worker_threads';
  export default function nodeEndpoint(endpoint: MessagePort | Worker): Endpoint;
}
