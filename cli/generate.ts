// `switchyard generate`: text as it is generated; --json for one object; --show-experts colours
// each token by the expert it went to (ANSI in a terminal, a plain listing otherwise).
import { pieceDecoder } from '../app/tokenizer.js';
import { type ContextPolicy, type GenerationResult, type InferenceOptions, type LayerRouting, loadRun, localInference } from '../index.js';

export interface GenerateCommand extends Pick<InferenceOptions, 'cache' | 'capacity'> {
  run: string; prompt: string; tokens: number; temperature: number; topK: number; seed: number;
  json?: boolean; showExperts?: boolean; atContext: ContextPolicy;
}

// Background colours (xterm-256) that stay apart from one another, with black text on them.
const PALETTE = [203, 215, 227, 120, 87, 75, 141, 213, 250, 180, 151, 225];

export async function generateCommand(o: GenerateCommand): Promise<void> {
  const run = loadRun(o.run);
  const inference = localInference(run, { ...(o.cache === false && { cache: false }), ...(o.capacity && { capacity: o.capacity }) });
  try {
    const stream = inference.stream({
      prompt: o.prompt, maxTokens: o.tokens, temperature: o.temperature, topK: o.topK, seed: o.seed, atContext: o.atContext,
      returnExperts: o.showExperts === true,
    });
    if (o.json) {
      console.log(JSON.stringify(asJson(o.prompt, await stream.result)));
      return;
    }
    const colour = o.showExperts === true && wantsColour();
    const out = (s: string) => process.stdout.write(s);
    if (colour && o.prompt !== '') {
      const { ids, routing } = await stream.prompt;
      const decoder = pieceDecoder(run.tokenizer);
      out(ids.map((id, t) => paint(decoder.piece(id), routing?.[t])).join(''));
    } else {
      out(o.prompt);
    }
    for await (const piece of stream) out(colour ? paint(piece.text, piece.routing) : piece.text);
    const result = await stream.result;
    out('\n');
    if (colour) console.error(legend(result, run.config.model.numExperts));
    else if (o.showExperts) out(listing((ids) => run.tokenizer.decode(ids), result));
    const note = finishNote(result, run.config.model.context);
    if (note) console.error(note);
  } finally {
    await inference.close();
    await run.model.dispose();
  }
}

/** The `--json` object: the prompt's ids, the new ids and their text, why it stopped, and the routing with --show-experts. */
function asJson(prompt: string, r: GenerationResult) {
  return {
    prompt, prompt_ids: r.promptIds, ids: r.ids, text: r.text, finish_reason: r.finishReason, slides: r.slides,
    ...(r.routing && { prompt_routing: r.promptRouting, routing: r.routing }),
  };
}

/** The text on the colour of its first Switch layer's expert. */
function paint(text: string, routing: LayerRouting[] | null | undefined): string {
  const expert = routing?.[0]?.experts[0];
  if (expert === undefined || text === '') return text;
  const on = `\x1b[48;5;${PALETTE[expert % PALETTE.length]}m\x1b[30m`, off = '\x1b[0m';
  // A newline stays uncoloured: the colour would fill the rest of the line.
  return text.split('\n').map((line) => (line ? on + line + off : line)).join('\n');
}

function legend(r: GenerationResult, experts: number): string {
  const layer = r.routing?.find((x) => x)?.[0]?.layer ?? r.promptRouting?.find((x) => x.length)?.[0]?.layer;
  if (layer === undefined) return '(no Switch layer: nothing to colour)';
  const swatches = Array.from({ length: experts }, (_, e) => paint(` ${e} `, [{ layer, experts: [e], gates: [1] }])).join(' ');
  return `experts of layer ${layer}: ${swatches}${experts > PALETTE.length ? ` (colours repeat after ${PALETTE.length})` : ''}`;
}

/** Without a terminal: one line per new token, its text and, per Switch layer, its experts and gates. */
function listing(decode: (ids: number[]) => string, r: GenerationResult): string {
  return r.ids.map((id, i) => {
    const routing = r.routing?.[i];
    const where = routing
      ? routing.map((l) => `layer ${l.layer}: ${l.experts.map((e, j) => `expert ${e} (gate ${l.gates[j]!.toFixed(3)})`).join(', ')}`).join('; ')
      : 'not routed (no room left in the context)';
    return `${JSON.stringify(decode([id]))}\t${where}\n`;
  }).join('');
}

function finishNote(r: GenerationResult, context: number): string | undefined {
  if (r.finishReason === 'context') return `[stopped after ${r.ids.length} tokens: the model's context of ${context} tokens is full; --at-context slide goes on]`;
  if (r.slides > 0) return `[the window slid ${r.slides} time${r.slides > 1 ? 's' : ''}, each time keeping its last ${Math.max(1, Math.floor(context / 2))} tokens]`;
  return undefined;
}

/** A terminal, unless NO_COLOR is set; FORCE_COLOR (not 0) colours anywhere (the conventions of both variables). */
function wantsColour(): boolean {
  const force = process.env.FORCE_COLOR;
  if (force !== undefined && force !== '' && force !== '0') return true;
  return process.stdout.isTTY === true && !process.env.NO_COLOR;
}
