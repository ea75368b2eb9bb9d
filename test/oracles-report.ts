// vitest's global set-up: which optional oracles this run has, printed before the tests.
import { ORACLES } from './oracles.js';

export default function setup(): void {
  const lines = Object.values(ORACLES).map((o) => `  ${o.path ? 'runs   ' : 'skipped'}  ${o.name}: ${o.detail}`);
  console.log(`Optional oracles:\n${lines.join('\n')}\n`);
}
