// How every benchmark reports: a table on stdout, and the same rows as a JSON array with --json.
import { writeFileSync } from 'node:fs';
import { machine } from '../app/machine.js';

export type Row = Record<string, string | number>;

export function printTable(rows: Row[], columns: string[]): void {
  const cell = (v: string | number | undefined) =>
    typeof v === 'number' ? (Number.isInteger(v) ? String(v) : Math.abs(v) < 10 ? v.toPrecision(4) : v.toFixed(1)) : (v ?? '');
  const widths = columns.map((c) => Math.max(c.length, ...rows.map((r) => cell(r[c]).length)));
  const line = (values: string[]) => values.map((v, i) => v.padStart(widths[i]!)).join('  ');
  console.log(line(columns));
  console.log(line(widths.map((w) => '-'.repeat(w))));
  for (const r of rows) console.log(line(columns.map((c) => cell(r[c]))));
}

export function writeJson(file: string, rows: Row[]): void {
  const stamp = machine();
  writeFileSync(file, JSON.stringify(rows.map((r) => ({ ...r, ...stamp })), null, 2) + '\n');
  console.log(`wrote ${rows.length} rows to ${file}`);
}

/** The q-quantile (0 ≤ q ≤ 1) of `values`, the nearest rank below: how the interleaved comparisons summarize their ratios. */
export function quantile(values: number[], q: number): number {
  return [...values].sort((x, y) => x - y)[Math.floor(q * (values.length - 1))]!;
}
