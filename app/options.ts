// Every option of a training run, checked in one place for the API and the CLI alike. Each option
// has one check; the CLI parses its flags through it and `checkTrainOptions` runs it on what the
// API is given, so a bad value reads the same wherever it came from: the option's name, its flag,
// what is accepted and what was given.
import { EXPERT_BACKENDS } from '../engine/devices.js';
import { GPUJS_MODES } from '../kernels/gpujs/device.js';
import { ARCHITECTURES, PRESETS } from '../model/config.js';
import { type TokenizerSpec, parseTokenizerChoice, tokenizerChoice } from './tokenizer.js';

/** What a check returns for a bad value: what is accepted. */
type Check = (v: unknown) => string | undefined;

const wholeAtLeast = (min: number): Check => (v) => (Number.isSafeInteger(v) && (v as number) >= min ? undefined : `expected a whole number ≥ ${min}`);
const finite = (accept: (n: number) => boolean, what: string): Check => (v) =>
  (typeof v === 'number' && Number.isFinite(v) && accept(v) ? undefined : `expected ${what}`);
const oneOf = (values: readonly string[]): Check => (v) => (values.includes(v as string) ? undefined : `expected one of ${values.join(', ')}`);
const text: Check = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'expected a non-empty text');
const flag: Check = (v) => (typeof v === 'boolean' ? undefined : 'expected true or false');

/**
 * `run`: the option defines the run (its model, tokenizer, data or seed), so a resumed run keeps
 * its own and refuses another; `schedule`: how the run proceeds, which a resume may change.
 */
type Kind = 'run' | 'schedule';

interface OptionSpec {
  /** Where it sits in TrainOptions: 'steps' is train.steps, 'workers' is top level. */
  path: string;
  flag?: string;
  kind: Kind;
  check: Check;
  /** The flag's text to a value (default: a number). */
  parse?: (text: string) => unknown;
}

const number = (s: string): number => (s.trim() === '' ? NaN : Number(s));

export const TRAIN_OPTIONS: readonly OptionSpec[] = [
  { path: 'preset', flag: '--preset', kind: 'run', check: oneOf(Object.keys(PRESETS)), parse: String },
  { path: 'arch', flag: '--arch', kind: 'run', check: oneOf(Object.keys(ARCHITECTURES)), parse: String },
  { path: 'data', flag: '--data', kind: 'run', check: text, parse: String },
  {
    path: 'tokenizer', flag: '--tokenizer', kind: 'run', parse: String,
    check: (v) => { try { parseTokenizerChoice(v as string); return undefined; } catch { return 'expected char, byte, gpt2 or gpt2-N (256 ≤ N ≤ 50256)'; } },
  },
  { path: 'model.numExperts', flag: '--experts', kind: 'run', check: wholeAtLeast(0) },
  {
    path: 'model.capacityFactor', flag: '--capacity-factor', kind: 'run',
    check: (v) => (v === null ? undefined : finite((n) => n > 0, 'a number > 0 or "dropless"')(v)),
    parse: (s) => (s === 'dropless' ? null : number(s)),
  },
  { path: 'model.expertDtype', flag: '--expert-dtype', kind: 'run', check: oneOf(['f32', 'bf16']), parse: String },
  { path: 'train.seed', flag: '--seed', kind: 'run', check: wholeAtLeast(0) },
  { path: 'train.steps', flag: '--steps', kind: 'schedule', check: wholeAtLeast(1) },
  { path: 'train.batch', flag: '--batch', kind: 'schedule', check: wholeAtLeast(1) },
  { path: 'train.learningRate', flag: '--lr', kind: 'schedule', check: finite((n) => n > 0, 'a number > 0') },
  { path: 'train.minLearningRate', kind: 'schedule', check: finite((n) => n >= 0, 'a number ≥ 0') },
  { path: 'train.warmupSteps', kind: 'schedule', check: wholeAtLeast(0) },
  { path: 'train.beta1', kind: 'schedule', check: finite((n) => n >= 0 && n < 1, 'a number in [0, 1)') },
  { path: 'train.beta2', kind: 'schedule', check: finite((n) => n >= 0 && n < 1, 'a number in [0, 1)') },
  { path: 'train.weightDecay', kind: 'schedule', check: finite((n) => n >= 0, 'a number ≥ 0') },
  { path: 'train.gradClip', kind: 'schedule', check: finite((n) => n >= 0, 'a number ≥ 0 (0: no clipping)') },
  { path: 'train.evalEvery', flag: '--eval-every', kind: 'schedule', check: wholeAtLeast(1) },
  { path: 'train.evalBatches', kind: 'schedule', check: wholeAtLeast(1) },
  { path: 'checkpointEvery', flag: '--checkpoint-every', kind: 'schedule', check: wholeAtLeast(1) },
  { path: 'keepBest', flag: '--keep-best', kind: 'schedule', check: flag },
  { path: 'workers', flag: '--workers', kind: 'schedule', check: wholeAtLeast(0) },
  { path: 'backend', flag: '--backend', kind: 'schedule', check: oneOf(EXPERT_BACKENDS), parse: String },
  { path: 'gpujsMode', flag: '--gpujs-mode', kind: 'schedule', check: oneOf(GPUJS_MODES), parse: String },
];

/** Model fields a run may be given besides those with flags (checked with the whole config by checkModelConfig). */
const MODEL_FIELDS = [
  'context', 'layers', 'heads', 'dModel', 'dFF', 'norm', 'positions', 'activation', 'bias', 'dropout', 'sparseStep', 'topK',
  'normalizeTopK', 'auxLossCoef', 'zLossCoef', 'routerJitter', 'expertDropout',
];

export class OptionError extends RangeError {
  override name = 'OptionError';
}

/** The value at `path` ('train.steps') of an options object, or undefined. */
function at(o: object, path: string): unknown {
  return path.split('.').reduce<unknown>((v, key) => (v && typeof v === 'object' ? (v as Record<string, unknown>)[key] : undefined), o);
}

const named = (s: OptionSpec) => (s.flag ? `${s.path} (${s.flag})` : s.path);

/** Throws an OptionError naming the first option that is wrong, or unknown. */
export function checkTrainOptions(o: object): void {
  for (const s of TRAIN_OPTIONS) {
    const v = at(o, s.path);
    const why = v === undefined ? undefined : s.check(v);
    if (why) throw new OptionError(`${named(s)}: ${why}, got ${JSON.stringify(v) ?? String(v)}`);
  }
  for (const group of ['model', 'train'] as const) {
    const given = at(o, group);
    if (given === undefined) continue;
    if (typeof given !== 'object' || given === null) throw new OptionError(`${group}: expected an object of ${group} settings`);
    const known = new Set([...TRAIN_OPTIONS.filter((s) => s.path.startsWith(`${group}.`)).map((s) => s.path.slice(group.length + 1)),
      ...(group === 'model' ? [...MODEL_FIELDS, 'vocabSize'] : [])]);
    for (const key of Object.keys(given)) {
      if (!known.has(key)) throw new OptionError(`${group}.${key}: not a ${group} setting (known: ${[...known].join(', ')})`);
    }
  }
}

/** What a resumed run recorded, as far as the options that define a run can be compared with it. */
export interface DefinedRun {
  preset?: string;
  model: object;
  train: { seed: number };
  tokenizer: TokenizerSpec;
}

/**
 * The options given that would change a resumed run (its model, tokenizer or seed), named; an
 * option equal to what the run already has is no change. The corpus is compared by its checksum
 * where it is read.
 */
export function runChanges(o: object, run: DefinedRun): string[] {
  const differs = (path: string, v: unknown): boolean => {
    if (path === 'preset') return v !== (run.preset ?? 'tiny');
    if (path === 'arch') return Object.entries(ARCHITECTURES[v as keyof typeof ARCHITECTURES]).some(([k, x]) => (run.model as Record<string, unknown>)[k] !== x);
    if (path === 'tokenizer') return v !== tokenizerChoice(run.tokenizer);
    if (path === 'data') return false;
    if (path === 'train.seed') return v !== run.train.seed;
    return v !== (run.model as Record<string, unknown>)[path.slice('model.'.length)];
  };
  return [...TRAIN_OPTIONS.filter((s) => s.kind === 'run'), ...MODEL_FIELDS.map((f) => ({ path: `model.${f}` }))]
    .filter((s) => at(o, s.path) !== undefined && differs(s.path, at(o, s.path)))
    .map((s) => ('flag' in s && s.flag ? `${s.path} (${s.flag})` : s.path));
}

/** A commander argument parser for `flag`: the same check, the same words. */
export function flagParser(flagName: string): (text: string) => unknown {
  const s = TRAIN_OPTIONS.find((spec) => spec.flag === flagName);
  if (!s) throw new Error(`no option has the flag ${flagName}`);
  return (given: string) => {
    const v = (s.parse ?? number)(given);
    const why = s.check(v);
    if (why) throw new OptionError(`${why}, got '${given}'`);
    return v;
  };
}
