// `switchyard generate` and `report --prompt` as a user runs them: the compiled CLI in a child process.
import { spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { TINY_ALPHABET, tinyRun } from './fixtures/tiny-run.js';

const cli = new URL('../dist/cli/main.js', import.meta.url).pathname;
const run = (args: string[], env: Record<string, string> = {}) =>
  spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', timeout: 60_000, env: { ...process.env, NO_COLOR: '', FORCE_COLOR: '', ...env } });
const dir = tinyRun(16);
// Each case starts the CLI a few times; on a busy machine a start takes seconds.
const SLOW = 60_000;

describe('switchyard generate', () => {
  it('--json: prompt_ids, ids, text and the finish reason; --no-cache gives the same tokens', async () => {
    const args = ['generate', '--run', await dir, '--prompt', 'the', '--tokens', '8', '--temperature', '0', '--json'];
    const r = run(args);
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    const id = (ch: string) => [...TINY_ALPHABET].sort().indexOf(ch);
    expect(out).toEqual({ prompt: 'the', prompt_ids: [id('t'), id('h'), id('e')], ids: expect.any(Array), text: expect.any(String), finish_reason: 'length', slides: 0 });
    expect(out.ids).toHaveLength(8);
    expect(JSON.parse(run([...args, '--no-cache']).stdout).ids).toEqual(out.ids);
    expect(JSON.parse(run([...args, '--capacity', 'configured']).stdout).ids).toHaveLength(8);
  }, SLOW);

  it('--show-experts: routing in the JSON, colours in a terminal, a listing otherwise', async () => {
    const args = ['generate', '--run', await dir, '--prompt', 'ab', '--tokens', '3', '--seed', '2', '--show-experts'];
    const json = JSON.parse(run([...args, '--json']).stdout);
    expect(json.prompt_routing).toHaveLength(2);
    expect(json.routing).toHaveLength(3);
    expect(json.routing[0]).toEqual([{ layer: 1, experts: [expect.any(Number)], gates: [expect.any(Number)] }]);
    const plain = run(args);
    expect(plain.stdout).not.toContain('\x1b[');
    const listing = plain.stdout.split('\n').slice(-4, -1); // after the text: one line per new token
    expect(listing.every((l) => /^".*"\tlayer 1: expert \d \(gate \d\.\d{3}\)$/.test(l)), listing.join('|')).toBe(true);
    const coloured = run(args, { FORCE_COLOR: '1' });
    expect(coloured.stdout.match(/\x1b\[48;5;\d+m\x1b\[30m/g)!.length).toBeGreaterThanOrEqual(2);
    expect(coloured.stdout.replace(/\x1b\[[0-9;]*m/g, '')).toBe(plain.stdout.split('\n').slice(0, -4).join('\n') + '\n'); // the same text
    expect(coloured.stderr).toMatch(/experts of layer 1: /);
  }, SLOW);

  it('at the context: stops and says so, or slides with --at-context slide', async () => {
    const base = ['generate', '--run', await dir, '--prompt', 'abc', '--tokens', '30', '--temperature', '0'];
    const stopped = run(base);
    expect(stopped.stderr).toMatch(/\[stopped after 14 tokens: the model's context of 16 tokens is full; --at-context slide goes on\]/);
    expect(stopped.stdout).toHaveLength(3 + 14 + 1);
    const slid = run([...base, '--at-context', 'slide', '--json']);
    expect(JSON.parse(slid.stdout)).toMatchObject({ finish_reason: 'length', slides: 2 }); // fed up to 32 tokens: windows of 16, 8 + 8, 8 + 8
    expect(JSON.parse(slid.stdout).ids).toHaveLength(30);
    expect(run([...base, '--at-context', 'wrap']).stderr).toMatch(/Allowed choices are stop, slide/);
  }, SLOW);
});

describe('switchyard report --prompt', () => {
  it('shows where each prompt token went, also for a run with no training log', async () => {
    const out = join(await dir, 'routing.html');
    expect(run(['report', '--run', await dir, '--prompt', 'hello world', '--out', out]).stdout).toMatch(/wrote .*routing\.html/);
    const html = readFileSync(out, 'utf8');
    expect(html).toContain('<h2>Routing of a prompt</h2>');
    expect(html).toContain('This run has no training log.');
    expect(html.match(/title="expert \d, gate \d\.\d{3}">[a-z]|&nbsp;/g)!.length).toBeGreaterThanOrEqual(11);
    expect(html).not.toMatch(/<script|src=/);
  }, SLOW);
});
