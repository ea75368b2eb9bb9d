// SPEC step 5, the combine: y_t = Σ over t's kept assignments of gate · out. It runs in two
// stages so that experts computed apart (on other threads) never write the same row: each expert
// writes gate · out into its tokens' slots, one row per token and choice (model/expert.ts), then
// each token's k slots are summed here, in choice order. Dropped slots stay zero, so a dropped
// token gets y = 0 and the residual carries it. The backward combines the experts' input
// gradients the same way.
import type { Kernels } from '../kernels/index.js';
import type { Workspace } from './workspace.js';

/** A [T·k × d] slot buffer: the experts write the kept slots' rows; the dropped ones are zeroed here. */
export function slotBuffer(ws: Workspace, kept: Uint8Array, d: number): Float32Array {
  const slots = ws.scratch(kept.length * d);
  for (let s = 0; s < kept.length; s++) if (!kept[s]) slots.fill(0, s * d, (s + 1) * d);
  return slots;
}

/** out[t] = Σ_j slots[t·k + j], in choice order. For k = 1 the slots are the output itself: nothing to add. */
export function sumSlots(kernels: Kernels, ws: Workspace, topK: number, slots: Float32Array, out: Float32Array, d: number): void {
  if (topK === 1) return;
  const T = out.length / d;
  const token = ws.i32(T * topK);
  for (let i = 0; i < token.length; i++) token[i] = Math.floor(i / topK);
  kernels.scatterAddRows(slots, token, T * topK, d, out);
}
