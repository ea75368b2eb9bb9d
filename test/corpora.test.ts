// Named corpora: the normalisation to ASCII, which files a source takes, the seeded shuffle that
// puts every source on both sides of the 90/10 split, and how `--data NAME` finds a built corpus
// (or says how to build it). The downloads themselves are not part of the suite.
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  type CorpusManifest, assemble, corpusNames, globToRegExp, isBinary, namedCorpusPath, normaliseText, readManifest, selectPaths,
} from '../app/corpora.js';
import { corpusRef, findCorpus } from '../app/data.js';

const scratch = () => mkdtempSync(join(tmpdir(), 'switchyard-corpora-'));

describe('normaliseText', () => {
  it('maps quotes, dashes, ellipses, spaces and box drawing to ASCII', () => {
    expect(normaliseText('\u201cCall me Ishmael,\u201d he said\u2014it\u2019s 1\u20132\u2026').text).toBe('"Call me Ishmael," he said--it\'s 1-2...');
    expect(normaliseText('a\u00a0b\u2009c\u200bd').text).toBe('a b cd');
    expect(normaliseText('\u251c\u2500\u2500 dir\n\u2502   \u2514\u2500\u2500 file').text).toBe('+-- dir\n|   +-- file');
  });

  it('drops accents and expands compatibility forms', () => {
    expect(normaliseText('Caf\u00e9 na\u00efve \u00c9cole \ufb01le').text).toBe('Cafe naive Ecole file');
  });

  it('keeps tabs and newlines, turns CR LF and CR into LF, and removes other control characters', () => {
    expect(normaliseText('a\r\nb\rc\td\u0007e\u000cf').text).toBe('a\nb\nc\tde\nf');
  });

  it("replaces what has no ASCII form by '?' and counts it", () => {
    expect(normaliseText('\u4e2d\u6587 and \u{1f600}')).toEqual({ text: '?? and ?', replaced: 3 });
    expect(normaliseText('plain ASCII stays as it is: {}[]<>~`')).toEqual({ text: 'plain ASCII stays as it is: {}[]<>~`', replaced: 0 });
  });

  it('always gives ASCII', () => {
    let all = '';
    for (let c = 0; c < 0x3000; c += 7) all += String.fromCodePoint(c);
    expect(normaliseText(all).text).toMatch(/^[\t\n\x20-\x7e]*$/);
  });
});

describe('isBinary', () => {
  it('takes UTF-8 text and refuses a NUL byte or invalid UTF-8', () => {
    expect(isBinary(new TextEncoder().encode('text, caf\u00e9'))).toBe(false);
    expect(isBinary(new Uint8Array([0x41, 0x00, 0x42]))).toBe(true);
    expect(isBinary(new Uint8Array([0x41, 0xff, 0x42]))).toBe(true);
  });
});

describe('selecting files', () => {
  it('matches * within a segment and ** across segments', () => {
    expect(globToRegExp('package/data/*.txt').test('package/data/1790_washington.txt')).toBe(true);
    expect(globToRegExp('package/data/*.txt').test('package/data/sub/x.txt')).toBe(false);
    expect(globToRegExp('src/**/*.go').test('src/a.go')).toBe(true);
    expect(globToRegExp('src/**/*.go').test('src/net/http/server.go')).toBe(true);
    expect(globToRegExp('**/testdata/**').test('src/x/testdata/y.go')).toBe(true);
    expect(globToRegExp('a.b').test('axb'), 'a dot is a dot').toBe(false);
  });

  it('takes the included paths less the excluded ones, sorted', () => {
    const paths = ['src/z.go', 'src/a_test.go', 'src/b/testdata/c.go', 'src/vendor/v.go', 'src/b/a.go', 'README'];
    expect(selectPaths(paths, { include: ['src/**/*.go'], exclude: ['**/*_test.go', '**/testdata/**', '**/vendor/**'] }))
      .toEqual(['src/b/a.go', 'src/z.go']);
  });
});

describe('assemble', () => {
  const docs = ['prose', 'code', 'reST'].flatMap((source) =>
    Array.from({ length: 40 }, (_, i) => ({ source, path: `${source}/${String(i).padStart(2, '0')}`, text: `${source} document ${i}\n\n\n` })));

  it('puts every source in both parts of the 90/10 split, in an order fixed by the seed', () => {
    const text = assemble(docs, 1);
    const split = Math.floor(text.length * 0.9);
    for (const source of ['prose', 'code', 'reST']) {
      expect(text.slice(0, split)).toContain(`${source} document`);
      expect(text.slice(split)).toContain(`${source} document`);
    }
    expect(assemble([...docs].reverse(), 1), 'the input order does not matter').toBe(text);
    expect(assemble(docs, 2)).not.toBe(text);
    expect(text.split('\n\n')).toHaveLength(docs.length);
    expect(text.endsWith('\n')).toBe(true);
  });
});

describe('--data NAME', () => {
  /** A manifest folder with one corpus, and a cache folder where it may be built. */
  function places(text?: string) {
    const manifests = scratch(), dir = scratch();
    const manifest: CorpusManifest = {
      name: 'toy', description: 'a test corpus', seed: 1, sources: [{
        id: 'x', from: 'npm', package: 'x', version: '1.0.0', file: 'x-1.0.0.tgz', sha256: '0'.repeat(64), licence: 'CC0-1.0',
        domain: 'prose', include: ['**'],
      }],
      output: { bytes: 0, documents: 1, sha256: createHash('sha256').update('the built toy corpus\n'.repeat(10)).digest('hex'), bySource: {} },
    };
    writeFileSync(join(manifests, 'toy.json'), JSON.stringify(manifest));
    if (text !== undefined) writeFileSync(join(dir, 'toy.txt'), text);
    return { manifests, dir };
  }

  it('lists the committed corpora, with the mix among them', () => {
    expect(corpusNames()).toContain('mix');
    const mix = readManifest('mix');
    expect(mix.sources.map((s) => s.id)).toEqual(['sotu', 'moby-dick', 'linux-doc', 'python-doc', 'go-src']);
    for (const s of mix.sources) {
      expect(s.sha256, s.id).toMatch(/^[0-9a-f]{64}$/);
      expect(s.licence.length, s.id).toBeGreaterThan(3);
    }
    expect(mix.output!.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(mix.output!.bytes).toBeGreaterThan(25_000_000);
  });

  it('finds a built corpus, and records it by name and checksum', () => {
    const p = places('the built toy corpus\n'.repeat(10));
    expect(namedCorpusPath('toy', p)).toBe(join(p.dir, 'toy.txt'));
    const { ref, text } = corpusRef('toy', scratch(), p);
    expect(ref).toEqual({ name: 'toy', sha256: createHash('sha256').update(text).digest('hex') });
    expect(findCorpus(ref, scratch(), undefined, p).text).toBe(text);
    expect(findCorpus(ref, scratch(), 'toy', p).text, '--data NAME on resume').toBe(text);
  });

  it('says how to build a corpus that is not built', () => {
    const p = places();
    expect(() => corpusRef('toy', scratch(), p)).toThrow(
      `the corpus 'toy' is not built (no ${join(p.dir, 'toy.txt')}); build it with \`npm run corpus -- --name toy\``);
    expect(() => findCorpus({ name: 'toy', sha256: 'ab'.repeat(32) }, scratch(), undefined, p)).toThrow(/npm run corpus -- --name toy/);
  });

  it('refuses a built file that is not the pinned corpus', () => {
    const p = places('something else\n');
    expect(() => corpusRef('toy', scratch(), p)).toThrow(/is not the corpus 'toy' its manifest pins .*npm run corpus -- --name toy/);
  });

  it('takes anything that is not a corpus name as a file, and keeps the embedded default', () => {
    const p = places();
    const file = join(scratch(), 'mine.txt');
    writeFileSync(file, 'my own text');
    expect(namedCorpusPath(file, p)).toBeUndefined();
    expect(namedCorpusPath('nosuchcorpus', p)).toBeUndefined();
    expect(corpusRef(file, scratch(), p).ref.name).toBe('mine.txt');
    expect(() => corpusRef('nosuchcorpus', scratch(), p)).toThrow('nosuchcorpus: no such file, and no corpus of that name (corpora: tinyshakespeare, toy)');
    expect(() => corpusRef('no/such.txt', scratch(), p)).toThrow(/no\/such\.txt: cannot read \(ENOENT/);
    expect(corpusRef(undefined, scratch(), p).ref.name).toBe('tinyshakespeare');
    expect(corpusRef('tinyshakespeare', scratch(), p).ref).toEqual(corpusRef(undefined, scratch(), p).ref);
  });

  it('names the corpora it knows when asked for another', () => {
    const p = places();
    mkdirSync(join(p.manifests, 'sub'));
    expect(() => readManifest('other', p.manifests)).toThrow(`no corpus named 'other' (known: toy; manifests in ${p.manifests})`);
    writeFileSync(join(p.manifests, 'broken.json'), '{ "name": ');
    expect(() => readManifest('broken', p.manifests)).toThrow(/broken\.json: not valid JSON/);
  });
});
