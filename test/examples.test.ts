// The example apps in examples/, as a user runs them (compiled, importing 'switchyard' by name):
// the terminal chat on piped input, and the HTTP app's streaming route beside its own.
import { spawn, spawnSync } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { tinyRun } from './fixtures/tiny-run.js';

const example = (name: string) => new URL(`../dist/examples/${name}.js`, import.meta.url).pathname;
const run = tinyRun(64, 'story-run');

describe('the examples', () => {
  it('use the public API only: switchyard and Node\'s modules', () => {
    const dir = new URL('../examples/', import.meta.url);
    for (const file of readdirSync(dir).filter((f) => f.endsWith('.ts'))) {
      const imports = [...readFileSync(new URL(file, dir), 'utf8').matchAll(/from '([^']+)'/g)].map((m) => m[1]!);
      expect(imports.filter((spec) => spec !== 'switchyard' && !spec.startsWith('node:')), file).toEqual([]);
    }
  });

  it('chat: each piped line gets a streamed reply; a line the vocabulary cannot encode is answered with the reason', async () => {
    const r = spawnSync(process.execPath, [example('chat'), '--run', await run, '--tokens', '30'], {
      input: 'good morning\nwhat news\nWHAT\n', encoding: 'utf8', timeout: 60_000,
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^chatting with story-run \(context 64 tokens\); Ctrl-D ends\n> /);
    const replies = r.stdout.split('> ').slice(1, 3);
    expect(replies.every((reply) => reply.trim().length > 0)).toBe(true);
    expect(r.stdout).toMatch(/\(prompt: char tokenizer: 'W' \(U\+0057\) at position \d+ is not in the vocabulary/);
  }, 60_000);

  it('http app: /story streams generated text while the app\'s own route keeps answering', async () => {
    const child = spawn(process.execPath, [example('http-app'), '--run', await run, '--port', '0']);
    try {
      const url = await new Promise<string>((resolve, reject) => {
        child.stdout.on('data', (d: Buffer) => { const m = /listening on (\S+)/.exec(String(d)); if (m) resolve(m[1]!); });
        child.on('exit', (code) => reject(new Error(`exited with ${code}`)));
      });
      const story = await fetch(`${url}/story?prompt=once%20upon&tokens=400&seed=3`);
      expect(story.headers.get('content-type')).toBe('text/plain; charset=utf-8');
      const reader = story.body!.getReader();
      const first = await reader.read(); // the story has begun
      expect(first.done).toBe(false);
      expect(await (await fetch(`${url}/`)).text()).toBe('the app\'s own route: still answering\n');
      let text = new TextDecoder().decode(first.value);
      for (let chunk = await reader.read(); !chunk.done; chunk = await reader.read()) text += new TextDecoder().decode(chunk.value);
      expect(text.length).toBe(401);
      expect((await fetch(`${url}/story?prompt=Once`)).status).toBe(400);
    } finally {
      child.kill('SIGTERM');
    }
  }, 60_000);
});
