// `switchyard train`: a live progress bar over the trainer, Ctrl-C to stop with a checkpoint.
import { SingleBar } from 'cli-progress';
import { type StepReport, type TrainOptions, train } from '../app/train.js';

export async function trainCommand(options: TrainOptions): Promise<void> {
  const bar = new SingleBar({
    format: 'step {value}/{total} {bar} loss {loss} val {val} | {tps} tok/s | ETA {eta_formatted} | dropped {dropped}% | load {load}',
    barsize: 20, hideCursor: true, noTTYOutput: true, notTTYSchedule: 10_000, etaBuffer: 50,
  });
  const stop = new AbortController();
  const onInterrupt = () => {
    if (stop.signal.aborted) process.exit(130); // a second Ctrl-C: leave now
    stop.abort();
    bar.stop();
    console.log('\nstopping after this step and saving a checkpoint (Ctrl-C again to quit at once)');
  };
  process.on('SIGINT', onInterrupt);
  let val = '—';
  let started = false;
  try {
    console.log(`run folder: ${options.out}${options.resume ? ' (resuming)' : ''}`);
    const result = await train({
      ...options,
      log: (line) => console.log(line),
      signal: stop.signal,
      onStep: (r: StepReport) => {
        if (!started) { bar.start(r.steps, r.step - 1, fields(r, val)); started = true; }
        if (r.valLoss !== undefined) val = r.valLoss.toFixed(4);
        if (!stop.signal.aborted) bar.update(r.step, fields(r, val));
      },
    });
    bar.stop();
    console.log(result.stopped
      ? `stopped at step ${result.stepsDone}; checkpoint saved. Continue with: switchyard train --resume --out ${result.dir}`
      : `done: ${result.stepsDone} steps, validation loss ${result.valLoss.toFixed(4)}. Log: ${result.dir}/log.jsonl`);
  } finally {
    bar.stop();
    process.off('SIGINT', onInterrupt);
  }
}

function fields(r: StepReport, val: string): Record<string, string> {
  // Expert load as the busiest and idlest expert's share against an even split (1.0×), over all Switch layers.
  const shares = r.expertLoad.flatMap((layer) => layer.map((s) => s * layer.length));
  const load = shares.length ? `${Math.min(...shares).toFixed(2)}–${Math.max(...shares).toFixed(2)}×` : 'dense';
  return {
    loss: r.loss.toFixed(4), val, tps: Math.round(r.tokensPerS).toString(),
    dropped: (100 * r.droppedFraction).toFixed(1), load,
  };
}
