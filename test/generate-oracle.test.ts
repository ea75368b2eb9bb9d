// Hugging Face transformers' generate as the oracle of ours: the same exported model, greedy, with
// its KV cache, gives the same tokens for every sequence of a batch. Runs where Python has torch
// and transformers (SWITCHYARD_ORACLE_PYTHON or .venv-oracle); skipped, saying so, elsewhere.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { oracleEnv, oraclePython } from '../bench/oracle-python.js';
import { exportRun } from '../app/interchange.js';
import { generateBatch, localInference } from '../app/inference.js';
import { openRun } from '../app/run-folder.js';
import { createKernels } from '../kernels/index.js';
import { tinyRun } from './fixtures/tiny-run.js';

const oracle = oraclePython();
const reason = 'missing' in oracle ? ` (skipped: ${oracle.missing})` : '';

describe('transformers\' generate as the oracle', () => {
  it.skipIf('missing' in oracle)(`greedy tokens equal Qwen2MoeForCausalLM.generate(use_cache=True) for a batch of three${reason}`, async () => {
    const kernels = createKernels();
    const dir = await tinyRun(32);
    const hf = mkdtempSync(join(tmpdir(), 'switchyard-hf-generate-'));
    await exportRun(dir, hf, kernels);
    const run = openRun(dir, kernels);
    const prompts = ['the king', 'a horse,', 'my lord.'];
    const inference = localInference(run.model, run.tokenizer);
    const ours = await generateBatch(inference, prompts.map((prompt) => ({ prompt, maxTokens: 20, temperature: 0 })));
    await inference.close();
    await run.model.dispose();
    const ids = join(hf, 'prompts.json');
    writeFileSync(ids, JSON.stringify(ours.map((r) => r.promptIds)));
    const r = spawnSync((oracle as { python: string }).python, [new URL('../bench/oracle/hf_generate.py', import.meta.url).pathname, hf,
      '--batch', '3', '--tokens', '20', '--threads', '1', '--prompt-ids', ids], { encoding: 'utf8', env: oracleEnv(1), timeout: 300_000 });
    expect(r.status, r.stderr.slice(-2000)).toBe(0);
    const theirs = JSON.parse(r.stdout.split('\n').find((l) => l.startsWith('{'))!) as { all_ids: number[][] };
    expect(theirs.all_ids).toEqual(ours.map((x) => x.ids));
  }, 300_000);
});
