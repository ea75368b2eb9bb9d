// A streaming chat in the terminal over a trained run, through the public API only.
//   npm run build && node dist/examples/chat.js --run runs/tiny-…
// Each line you type continues the conversation; the model's reply streams back token by token
// and ends at a blank line (how the plays separate speeches) or after --tokens. Ctrl-C stops a
// reply; Ctrl-D ends. With piped input, every line is a turn and the program ends with its input.
import { createInterface } from 'node:readline';
import { parseArgs } from 'node:util';
import { RequestError, createInference } from 'switchyard';

const { values } = parseArgs({
  options: { run: { type: 'string' }, tokens: { type: 'string', default: '200' }, temperature: { type: 'string', default: '0.8' } },
});
if (!values.run) {
  console.error('usage: node dist/examples/chat.js --run DIR [--tokens N] [--temperature X]');
  process.exit(2);
}
// The model computes in a thread of its own: this one stays free to read keys and Ctrl-C.
const inference = await createInference(values.run);
const { name, context } = inference.info;
const lines = createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY === true });
let reply: AbortController | undefined;
lines.on('SIGINT', () => (reply ? reply.abort() : lines.close()));

let conversation = '';
let turn = 0;
console.log(`chatting with ${name} (context ${context} tokens); Ctrl-D ends`);
lines.setPrompt('> ');
lines.prompt();
for await (const line of lines) {
  reply = new AbortController();
  try {
    // The conversation so far is the prompt; the window slides past the context.
    const stream = inference.stream(
      { prompt: `${conversation}${line}\n`, maxTokens: Number(values.tokens), temperature: Number(values.temperature), seed: ++turn, atContext: 'slide' },
      { signal: reply.signal },
    );
    let text = '';
    for await (const piece of stream) {
      text += piece.text;
      if (text.endsWith('\n\n')) break; // leaving the loop cancels the rest
      process.stdout.write(piece.text);
    }
    conversation += `${line}\n${text.trimEnd()}\n\n`;
    process.stdout.write('\n');
  } catch (e) {
    if (!(e instanceof RequestError)) throw e;
    console.log(`(${e.message})`); // e.g. a character the model's vocabulary lacks
  }
  reply = undefined;
  lines.prompt();
}
await inference.close();
