// The dense feed-forward block of the non-Switch layers: act(x·W_up (+ b)) · W_down (+ b), or
// SwiGLU's silu(x·W_gate) ⊙ (x·W_up). The experts compute the same thing without biases.
import type { Kernels } from '../kernels/index.js';
import type { Activation } from './config.js';
import { type LinearParams, linearBackward, linearForward } from './linear.js';
import type { Workspace } from './workspace.js';

export interface MlpParams { up: LinearParams; down: LinearParams; gate?: LinearParams }
export interface MlpCache { x: Float32Array; a: Float32Array; g?: Float32Array; h: Float32Array }

export function mlpForward(k: Kernels, ws: Workspace, p: MlpParams, activation: Activation, x: Float32Array, n: number,
  d: number, f: number, out: Float32Array): MlpCache {
  const a = ws.scratch(n * f), h = ws.scratch(n * f);
  linearForward(k, p.up, x, n, d, f, a);
  let g: Float32Array | undefined;
  if (activation === 'swiglu') {
    g = ws.scratch(n * f);
    linearForward(k, p.gate!, x, n, d, f, g);
    k.swiglu(g, a, h);
  } else if (activation === 'gelu') k.gelu(a, h);
  else k.relu(a, h);
  linearForward(k, p.down, h, n, f, d, out);
  return { x, a, ...(g && { g }), h };
}

export function mlpBackward(k: Kernels, ws: Workspace, p: MlpParams, activation: Activation, c: MlpCache, dy: Float32Array,
  n: number, d: number, f: number): Float32Array {
  const dh = ws.scratch(n * f);
  linearBackward(k, p.down, c.h, dy, n, f, d, dh);
  const dx = ws.scratch(n * d);
  if (activation === 'swiglu') {
    const dg = ws.scratch(n * f);
    k.swigluBackward(c.g!, c.a, dh, dg, dh);
    linearBackward(k, p.gate!, c.x, dg, n, d, f, dx);
    linearBackward(k, p.up, c.x, dh, n, d, f, dx, true);
    return dx;
  }
  if (activation === 'gelu') k.geluBackward(c.a, dh, dh);
  else k.reluBackward(c.a, dh, dh);
  linearBackward(k, p.up, c.x, dh, n, d, f, dx);
  return dx;
}
