// Training data, as nanoGPT's shakespeare_char: a corpus encoded whole, split 90/10 into training
// and validation, and batches of random windows. Every batch is drawn from an Rng keyed by seed and
// step (or validation index), so a resumed run sees exactly the data it would have seen.
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync } from 'node:fs';
import { basename, join, relative, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../model/rng.js';
import { defaultCacheDir } from './calibration-file.js';
import { corpusNames, namedCorpusPath, readManifest } from './corpora.js';
import { writeFileAtomic } from './files.js';
import type { Tokenizer } from './tokenizer.js';

// This module runs as app/data.ts (tests) and as dist/app/data.js (built CLI): one level deeper.
const corpusCandidates = ['../data/tinyshakespeare.txt', '../../data/tinyshakespeare.txt']
  .map((relative) => fileURLToPath(new URL(relative, import.meta.url)));

/** Absolute path of the embedded tiny-shakespeare corpus. */
export const DEFAULT_CORPUS: string = corpusCandidates.find((path) => existsSync(path)) ?? corpusCandidates[0]!;

export function loadCorpus(path: string = DEFAULT_CORPUS): { text: string; source: string } {
  let bytes: Uint8Array;
  try {
    bytes = readFileSync(path);
  } catch (err) {
    // Node's message repeats the path after the syscall name ("…, open '<path>'"); keep the reason only.
    const reason = (err as Error).message.replace(/, \w+(?: '.*')?$/, '');
    throw new Error(`${path}: cannot read (${reason})`);
  }
  if (bytes.length === 0) throw new Error(`${path}: the file is empty`);
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new Error(`${path}: not UTF-8 text (invalid byte sequence near byte ${firstInvalidByte(bytes)})`);
  }
  return { text, source: path };
}

/**
 * A run's corpus as its config.json records it, so the run folder can move: the embedded corpus or
 * a built named corpus (app/corpora.ts) by name, a file by its path relative to the run folder;
 * either way checked by its checksum.
 */
export interface CorpusRef { name: string; path?: string; sha256: string }

const EMBEDDED = 'tinyshakespeare';
const sha256 = (text: string) => createHash('sha256').update(text).digest('hex');

/** Where to look for named corpora: the manifests and the built texts (tests point them elsewhere). */
export interface CorpusPlaces { manifests?: string; dir?: string }

/**
 * The corpus `data` names (default: the embedded one) and how a run in `runDir` records it. `data`
 * is a corpus name (`tinyshakespeare`, or a manifest in data/corpora, built) or a file.
 */
export function corpusRef(data: string | undefined, runDir: string, places: CorpusPlaces = {}): { ref: CorpusRef; text: string } {
  if (data === undefined || data === EMBEDDED) {
    const { text } = loadCorpus();
    return { ref: { name: EMBEDDED, sha256: sha256(text) }, text };
  }
  const named = namedCorpusPath(data, places);
  if (named !== undefined) {
    const { text } = loadCorpus(named);
    const pinned = readManifest(data, places.manifests).output?.sha256;
    if (pinned !== undefined && sha256(text) !== pinned) {
      throw new Error(`${named} is not the corpus '${data}' its manifest pins (sha256 ${pinned.slice(0, 12)}…); build it again with \`npm run corpus -- --name ${data}\``);
    }
    return { ref: { name: data, sha256: sha256(text) }, text };
  }
  if (!existsSync(data) && /^[a-z0-9][a-z0-9_-]*$/.test(data)) {
    throw new Error(`${data}: no such file, and no corpus of that name (corpora: ${[EMBEDDED, ...corpusNames(places.manifests)].join(', ')})`);
  }
  const { text } = loadCorpus(data);
  return { ref: { name: basename(data), path: relative(resolve(runDir), resolve(data)), sha256: sha256(text) }, text };
}

/**
 * The corpus a run recorded, found again: at `given` (a file the user points at, which must be the
 * same text), at its recorded path relative to `runDir`, embedded, or built by name. Older runs
 * recorded a path.
 */
export function findCorpus(ref: CorpusRef | string, runDir: string, given?: string, places: CorpusPlaces = {}): { text: string; source: string } {
  if (given !== undefined) given = given === EMBEDDED ? DEFAULT_CORPUS : namedCorpusPath(given, places) ?? given;
  if (typeof ref === 'string') return loadCorpus(given ?? ref);
  const at = given ?? (ref.path !== undefined ? resolve(runDir, ref.path) : ref.name === EMBEDDED ? DEFAULT_CORPUS : namedCorpusPath(ref.name, places));
  if (at === undefined) throw new Error(`the run's corpus ${ref.name} is neither a file nor a known corpus name; point at a copy of it with --data FILE`);
  if (!existsSync(at)) {
    throw new Error(`the run's corpus ${ref.name} (sha256 ${ref.sha256.slice(0, 12)}…) is not at ${at}`
      + `${ref.path !== undefined ? ` (config.json: data.path, relative to ${runDir})` : ''}; point at a copy of it with --data FILE`);
  }
  const corpus = loadCorpus(at);
  if (sha256(corpus.text) !== ref.sha256) {
    throw new Error(`${at} is not the run's corpus ${ref.name}: its sha256 differs (the run's begins ${ref.sha256.slice(0, 12)}…); `
      + 'point at the text the run was trained on with --data FILE');
  }
  return corpus;
}

/** Offset of the lead byte of the first ill-formed sequence, by the well-formed table of Unicode §3.9. */
function firstInvalidByte(bytes: Uint8Array): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    if (b < 0x80) { i++; continue; }
    let follow: number, low = 0x80, high = 0xbf;
    if (b >= 0xc2 && b <= 0xdf) follow = 1;
    else if (b >= 0xe0 && b <= 0xef) { follow = 2; if (b === 0xe0) low = 0xa0; if (b === 0xed) high = 0x9f; }
    else if (b >= 0xf0 && b <= 0xf4) { follow = 3; if (b === 0xf0) low = 0x90; if (b === 0xf4) high = 0x8f; }
    else return i;
    for (let k = 1; k <= follow; k++) {
      const c = bytes[i + k];
      // Only the second byte has the narrowed range; the rest are plain continuation bytes.
      if (c === undefined || c < (k === 1 ? low : 0x80) || c > (k === 1 ? high : 0xbf)) return i;
    }
    i += follow + 1;
  }
  return i;
}

export interface Dataset { tokenizer: Tokenizer; train: Int32Array; val: Int32Array }

/** Encodes `text` and splits it as nanoGPT's prepare.py: the first int(0.9·n) tokens train, the rest validate. */
export function makeDataset(text: string, tokenizer: Tokenizer, source?: string): Dataset {
  const tokens = encodeCached(text, tokenizer);
  const split = Math.floor(tokens.length * 0.9);
  if (split === 0 || split === tokens.length) {
    throw new RangeError(
      `dataset${source ? ` (${source})` : ''}: ${tokens.length} token${tokens.length === 1 ? '' : 's'} cannot be split into ` +
      `non-empty training and validation sets; use a longer text`,
    );
  }
  return { tokenizer, train: tokens.subarray(0, split), val: tokens.subarray(split) };
}

/** Texts at least this long have their token ids kept in the cache folder. */
export const TOKEN_CACHE_MIN_CHARS = 4_000_000;

/**
 * tokenizer.encode(text), kept for a large corpus in $SWITCHYARD_CACHE/tokens (BPE encodes ~0.5 MB/s
 * here: minutes for a corpus of tens of MB). The file is named by the text's and the tokenizer's
 * checksums and ends with the sha256 of its ids, so a damaged one is encoded afresh, never read.
 */
export function encodeCached(text: string, tokenizer: Tokenizer, dir = join(defaultCacheDir(), 'tokens')): Int32Array {
  if (text.length < TOKEN_CACHE_MIN_CHARS) return tokenizer.encode(text);
  const file = join(dir, `${sha256(`${JSON.stringify(tokenizer.spec())}\n${sha256(text)}`).slice(0, 32)}.i32`);
  if (existsSync(file)) {
    const bytes = readFileSync(file);
    const body = bytes.subarray(0, bytes.length - 32);
    if (bytes.length > 32 && body.length % 4 === 0 && createHash('sha256').update(body).digest().equals(bytes.subarray(body.length))) {
      const ids = new Int32Array(body.length / 4);
      new Uint8Array(ids.buffer).set(body);
      return ids;
    }
  }
  const ids = tokenizer.encode(text);
  const body = new Uint8Array(ids.buffer, ids.byteOffset, ids.byteLength);
  try {
    mkdirSync(dir, { recursive: true });
    writeFileAtomic(file, Buffer.concat([body, createHash('sha256').update(body).digest()]));
  } catch {
    // An unwritable cache only costs encoding again next time.
  }
  return ids;
}

/** Rows of `context` tokens, [batch × context] row-major; targets are the inputs shifted by one token. */
export interface Batch { inputs: Int32Array; targets: Int32Array; batch: number; context: number }

/** nanoGPT's get_batch: `batch` windows at offsets uniform in [0, data.length − context − 1]. */
export function sampleBatch(data: Int32Array, batch: number, context: number, rng: Rng): Batch {
  return draw(data, batch, context, rng, 'data');
}

/** The training batch of `step`: a function of (seed, step) alone, whatever happened before. */
export function trainBatch(data: Int32Array, batch: number, context: number, seed: number, step: number): Batch {
  return draw(data, batch, context, new Rng(seed, step, 'batch'), 'training split');
}

/** A fixed set of validation batches, so losses from different steps and runs are comparable. */
export function validationBatches(data: Int32Array, batch: number, context: number, count: number, seed: number): Batch[] {
  if (!Number.isInteger(count) || count < 0) throw new RangeError(`dataset: count must be a non-negative integer (got ${count})`);
  return Array.from({ length: count }, (_, j) => draw(data, batch, context, new Rng(seed, j, 'val-batch'), 'validation split'));
}

function draw(data: Int32Array, batch: number, context: number, rng: Rng, what: string): Batch {
  for (const [name, value] of [['batch', batch], ['context', context]] as const) {
    if (!Number.isInteger(value) || value <= 0) throw new RangeError(`dataset: ${name} must be a positive integer (got ${value})`);
  }
  // context + 1 tokens make one window; one more guarantees a choice of at least two offsets.
  if (data.length < context + 2) {
    throw new RangeError(
      `dataset: the ${what} has ${data.length} tokens, fewer than context + 2 = ${context + 2}; use a longer text or a shorter context`,
    );
  }
  const offsets = data.length - context;
  const inputs = new Int32Array(batch * context), targets = new Int32Array(batch * context);
  for (let row = 0; row < batch; row++) {
    const start = Math.floor(rng.uniform() * offsets);
    inputs.set(data.subarray(start, start + context), row * context);
    targets.set(data.subarray(start + 1, start + context + 1), row * context);
  }
  return { inputs, targets, batch, context };
}
