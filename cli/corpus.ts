// `npm run corpus -- --name NAME`: builds a named corpus (data/corpora/NAME.json) into the cache
// folder, from packages fetched by name and version and checked against their pinned sha256.
import { Command } from 'commander';
import { buildCommand, buildCorpus, corporaDir, corpusNames, readManifest } from '../app/corpora.js';

const program = new Command('corpus')
  .description('build a named corpus from its pinned npm and Debian packages into the cache folder, for `train --data NAME`')
  .option('--name <name>', `the corpus to build (one of: ${corpusNames().join(', ')})`)
  .option('--list', 'list the corpora, their sources and licences, and where they are built')
  .option('--dir <dir>', 'where built corpora go (default: $SWITCHYARD_CACHE/corpora or ~/.cache/switchyard/corpora)')
  .option('--downloads <dir>', 'where fetched packages are kept and looked for (default: <dir>/downloads)')
  .option('--update-manifest', 'write the output\'s size and sha256 into the manifest instead of checking them (when changing a recipe)')
  .showHelpAfterError('(add --help to list the flags)')
  .parse();
const o = program.opts<{ name?: string; list?: boolean; dir?: string; downloads?: string; updateManifest?: boolean }>();

try {
  if (o.list) {
    for (const name of corpusNames()) {
      const m = readManifest(name);
      console.log(`${name}: ${m.output ? `${(m.output.bytes / 1e6).toFixed(1)} MB, ${m.output.documents} documents, sha256 ${m.output.sha256}` : 'not pinned yet'}`);
      for (const s of m.sources) console.log(`  ${s.id}: ${s.from} ${s.package}@${s.version} (${s.domain}), ${s.licence}`);
      console.log(`  build: ${buildCommand(name)}; built into ${o.dir ?? corporaDir()}/${name}.txt`);
    }
  } else {
    if (!o.name) throw new Error(`--name: which corpus? (one of: ${corpusNames().join(', ')}); --help lists the flags`);
    const began = performance.now();
    const { path, output } = buildCorpus(o.name, {
      ...(o.dir && { dir: o.dir }), ...(o.downloads && { downloads: o.downloads }), ...(o.updateManifest && { updateManifest: true }),
      log: (line) => console.log(line),
    });
    console.log(`built ${path}: ${output.bytes} bytes, ${output.documents} documents, sha256 ${output.sha256} `
      + `(${((performance.now() - began) / 1000).toFixed(0)} s)${o.updateManifest ? '; manifest updated' : '; matches the manifest'}`);
    console.log(`train on it with: npx switchyard train --data ${o.name}`);
  }
} catch (error) {
  console.error(`corpus: ${(error as Error).message}`);
  process.exitCode = 1;
}
