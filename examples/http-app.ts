// An existing HTTP app (Node's own http module) that gains a route streaming generated text,
// through the public API only. Its other routes keep answering while the model generates: the
// model computes in a thread of its own.
//   npm run build && node dist/examples/http-app.js --run runs/tiny-… [--port 3000]
//   curl -N 'localhost:3000/story?prompt=ROMEO:&tokens=300'
import { createServer } from 'node:http';
import { parseArgs } from 'node:util';
import { RequestError, createInference } from 'switchyard';

const { values } = parseArgs({ options: { run: { type: 'string' }, port: { type: 'string', default: '3000' } } });
if (!values.run) {
  console.error('usage: node dist/examples/http-app.js --run DIR [--port N]');
  process.exit(2);
}
const inference = await createInference(values.run);

const server = createServer(async (req, res) => {
  const url = new URL(req.url ?? '/', 'http://localhost');
  if (url.pathname === '/') {
    res.end('the app\'s own route: still answering\n');
    return;
  }
  if (url.pathname !== '/story') {
    res.writeHead(404).end('not found\n');
    return;
  }
  // A client that hangs up stops its story.
  const gone = new AbortController();
  res.on('close', () => { if (!res.writableFinished) gone.abort(); });
  try {
    const stream = inference.stream({
      prompt: url.searchParams.get('prompt') ?? '', maxTokens: Number(url.searchParams.get('tokens') ?? 200),
      seed: Number(url.searchParams.get('seed') ?? 1), atContext: 'slide',
    }, { signal: gone.signal });
    res.writeHead(200, { 'content-type': 'text/plain; charset=utf-8' });
    for await (const { text } of stream) res.write(text);
    res.end('\n');
  } catch (e) {
    if (!(e instanceof RequestError)) throw e;
    res.writeHead(400).end(`${e.message}\n`);
  }
});
server.listen(Number(values.port), '127.0.0.1', () => {
  const address = server.address();
  console.log(`listening on http://127.0.0.1:${typeof address === 'object' && address ? address.port : values.port}`);
});
process.once('SIGTERM', () => server.close(() => void inference.close()));
