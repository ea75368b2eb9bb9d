// `switchyard train`: a live progress bar over the trainer. Ctrl-C, SIGTERM (docker stop, systemd,
// a cancelled CI job) and SIGHUP (a closed terminal) stop after the current step with a
// checkpoint and exit with the signal's status; a second signal quits at once.
import { SingleBar } from 'cli-progress';
import { type StepReport, type TrainOptions, train } from '../app/train.js';

const SIGNALS = { SIGINT: 130, SIGTERM: 143, SIGHUP: 129 } as const;
type Signal = keyof typeof SIGNALS;

export async function trainCommand(options: TrainOptions): Promise<void> {
  const bar = new SingleBar({
    format: 'step {value}/{total} {bar} loss {loss} val {val} | {tps} tok/s | ETA {left} | dropped {dropped}% | load {load}',
    barsize: 20, hideCursor: true, noTTYOutput: true, notTTYSchedule: 10_000,
  });
  const stop = new AbortController();
  let caught: Signal | undefined;
  const onSignal = (signal: Signal) => {
    if (caught) process.exit(SIGNALS[signal]); // a second signal: leave now
    caught = signal;
    stop.abort();
    bar.stop();
    console.log(`\n${signal}: stopping after this step and saving a checkpoint (send it again to quit at once)`);
  };
  for (const signal of Object.keys(SIGNALS) as Signal[]) process.on(signal, onSignal);
  let val = '—', first: StepReport | undefined;
  try {
    console.log(`run folder: ${options.out}${options.resume ? ' (resuming)' : ''}`);
    const result = await train({
      ...options,
      log: (line) => console.log(line),
      signal: stop.signal,
      onStep: (r: StepReport) => {
        if (!first) { first = r; bar.start(r.steps, r.step - 1, fields(r, val, r)); }
        if (r.valLoss !== undefined) val = r.valLoss.toFixed(4);
        if (!stop.signal.aborted) bar.update(r.step, fields(r, val, first));
      },
    });
    bar.stop();
    if (result.alreadyFinished) return;
    if (result.stopped) {
      console.log(`stopped at step ${result.stepsDone}; checkpoint saved. Continue with: npx switchyard train --resume --out ${result.dir}`);
      process.exitCode = caught ? SIGNALS[caught] : 1;
    } else {
      console.log(`done: ${result.stepsDone} steps, validation loss ${result.valLoss.toFixed(4)}. Log: ${result.dir}/log.jsonl`);
    }
  } finally {
    bar.stop();
    for (const signal of Object.keys(SIGNALS) as Signal[]) process.off(signal, onSignal);
  }
}

function fields(r: StepReport, val: string, first: StepReport): Record<string, string> {
  // Expert load as the busiest and idlest expert's share against an even split (1.0×), over all Switch layers.
  const shares = r.expertLoad.flatMap((layer) => layer.map((s) => s * layer.length));
  const load = shares.length ? `${Math.min(...shares).toFixed(2)}–${Math.max(...shares).toFixed(2)}×` : 'dense';
  // From this session's pace: steps done since it began, over the time they took.
  const done = r.step - first.step, seconds = r.elapsedS - first.elapsedS;
  const left = done > 0 ? ((r.steps - r.step) * seconds) / done : NaN;
  return {
    loss: r.loss.toFixed(4), val, tps: Math.round(r.tokensPerS).toString(),
    dropped: (100 * r.droppedFraction).toFixed(1), load, left: duration(left),
  };
}

/** Whole seconds as 1h02m03s, 2m05s or 7s. */
export function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return '—';
  const s = Math.round(seconds), h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), rest = s % 60;
  const two = (n: number) => String(n).padStart(2, '0');
  return h > 0 ? `${h}h${two(m)}m${two(rest)}s` : m > 0 ? `${m}m${two(rest)}s` : `${rest}s`;
}
