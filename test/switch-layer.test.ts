// The Switch layer beyond the shared cases: finite-difference gradients for every configuration
// (including the training-only jitter and dropout), routing invariants, determinism, bad input.
import { describe, expect, it } from 'vitest';
import { createKernels } from '../kernels/index.js';
import type { SwitchLayerOptions } from '../model/config.js';
import { Rng } from '../model/rng.js';
import { SwitchLayer, type SwitchWeights } from '../model/switch-layer.js';

const reference = createKernels({ backend: 'reference' });
const wasm = createKernels({ backend: 'wasm' });

function randomLayer(options: SwitchLayerOptions, seed: number, backend = reference): SwitchLayer {
  const layer = new SwitchLayer(backend, options, { seed });
  const rng = new Rng('weights', seed);
  const { dModel: d, dFF: f, numExperts: E } = options;
  layer.setWeights({
    router: rng.fillNormal(new Float32Array(d * E), 0.8),
    wIn: rng.fillNormal(new Float32Array(E * d * f), 0.5),
    wOut: rng.fillNormal(new Float32Array(E * f * d), 0.5),
    ...(options.activation === 'swiglu' && { wGate: rng.fillNormal(new Float32Array(E * d * f), 0.5) }),
  });
  return layer;
}

const FD_CASES: [string, SwitchLayerOptions][] = [
  ['relu, top-1, cf 1.25', { dModel: 6, dFF: 10, numExperts: 4, capacityFactor: 1.25 }],
  ['gelu, dropless', { dModel: 5, dFF: 7, numExperts: 3, capacityFactor: null, activation: 'gelu' }],
  ['swiglu, cf 0.5 (heavy drops)', { dModel: 6, dFF: 8, numExperts: 4, capacityFactor: 0.5, activation: 'swiglu' }],
  ['top-2 normalized', { dModel: 6, dFF: 9, numExperts: 4, topK: 2, capacityFactor: 1.0 }],
  ['top-2 unnormalized, gelu', { dModel: 6, dFF: 9, numExperts: 5, topK: 2, normalizeTopK: false, capacityFactor: 2, activation: 'gelu' }],
  ['training: jitter and expert dropout', { dModel: 6, dFF: 10, numExperts: 4, routerJitter: 0.1, expertDropout: 0.3, activation: 'swiglu' }],
  ['large loss coefficients', { dModel: 4, dFF: 6, numExperts: 3, auxLossCoef: 0.5, zLossCoef: 0.2 }],
];

describe('finite-difference gradients', () => {
  it.each(FD_CASES)('%s', (_name, options) => {
    const T = 14;
    const layer = randomLayer(options, 7);
    const rng = new Rng('fd', _name);
    const x = rng.fillNormal(new Float32Array(T * options.dModel));
    const dy = rng.fillNormal(new Float32Array(T * options.dModel));
    const training = (options.routerJitter ?? 0) > 0 || (options.expertDropout ?? 0) > 0;
    const run = () => {
      const { y, stats } = layer.forward(x, T, { training, step: 3 });
      let loss = stats.auxLoss + stats.zLoss;
      for (let i = 0; i < y.length; i++) loss += y[i]! * dy[i]!;
      return { loss, routing: Array.from(stats.expertIndex).join() + '|' + Array.from(stats.kept).join() };
    };
    const base = run();
    const dx = Float32Array.from(layer.backward(dy));
    const grads: Record<string, Float32Array> = { x: dx };
    for (const [name, g] of Object.entries(layer.grads) as [keyof SwitchWeights, Float32Array | undefined][]) {
      if (g) grads[name] = Float32Array.from(g);
    }
    const params: Record<string, Float32Array> = { x, ...(layer.weights as unknown as Record<string, Float32Array>) };

    for (const [name, analytic] of Object.entries(grads)) {
      const p = params[name]!;
      const v = new Rng('direction', name).fillNormal(new Float32Array(p.length));
      const original = Float32Array.from(p);
      const eps = 1e-3; // small enough that few relu pre-activations cross zero
      const at = (sign: number) => {
        for (let i = 0; i < p.length; i++) p[i] = original[i]! + sign * eps * v[i]!;
        const r = run();
        expect(r.routing, `${name}: a perturbation of ${eps} changed the routing`).toBe(base.routing);
        return r.loss;
      };
      const numeric = (at(1) - at(-1)) / (2 * eps);
      p.set(original);
      let exact = 0;
      for (let i = 0; i < p.length; i++) exact += analytic[i]! * v[i]!;
      expect(Math.abs(numeric - exact), `${name}: finite difference ${numeric}, backward ${exact}`)
        .toBeLessThan(5e-3 * Math.max(1, Math.abs(exact)));
    }
    layer.dispose();
  });
});

describe('routing', () => {
  it('keeps capacity, counts drops, and sends dropped tokens to zero', () => {
    const T = 64, d = 8;
    const layer = randomLayer({ dModel: d, dFF: 16, numExperts: 4, capacityFactor: 0.5 }, 11, wasm);
    const x = new Rng('x').fillNormal(new Float32Array(T * d));
    const { y, stats } = layer.forward(x, T);
    expect(stats.capacity).toBe(8);
    expect(stats.tokensPerExpert.reduce((a, b) => a + b, 0)).toBe(T);
    for (const kept of stats.keptPerExpert) expect(kept).toBeLessThanOrEqual(stats.capacity);
    expect(stats.dropped).toBe(T - stats.keptPerExpert.reduce((a, b) => a + b, 0));
    expect(stats.dropped).toBeGreaterThan(0);
    for (let t = 0; t < T; t++) {
      const row = y.subarray(t * d, (t + 1) * d);
      if (!stats.kept[t]) expect(Array.from(row).every((v) => v === 0), `dropped token ${t}`).toBe(true);
      else expect(Array.from(row).some((v) => v !== 0)).toBe(true);
    }
    // Token-order priority: an expert's kept tokens are its first `capacity` choosers.
    for (let e = 0; e < 4; e++) {
      let seen = 0;
      for (let t = 0; t < T; t++) {
        if (stats.expertIndex[t] !== e) continue;
        expect(stats.kept[t]).toBe(seen < stats.capacity ? 1 : 0);
        seen++;
      }
    }
    layer.dispose();
  });

  it('routes with the same numbers on the wasm and reference backends', () => {
    const options: SwitchLayerOptions = { dModel: 16, dFF: 32, numExperts: 8, topK: 2, activation: 'swiglu' };
    const T = 50;
    const x = new Rng('x2').fillNormal(new Float32Array(T * 16));
    const a = randomLayer(options, 5, wasm).forward(x, T);
    const b = randomLayer(options, 5, reference).forward(x, T);
    expect(Array.from(a.stats.expertIndex)).toEqual(Array.from(b.stats.expertIndex));
    expect(Array.from(a.stats.kept)).toEqual(Array.from(b.stats.kept));
  });

  it('reproduces its random draws from (seed, step), and only in training', () => {
    const options: SwitchLayerOptions = { dModel: 8, dFF: 16, numExperts: 4, routerJitter: 0.2, expertDropout: 0.5 };
    const T = 32;
    const x = new Rng('x3').fillNormal(new Float32Array(T * 8));
    const out = (seed: number, step: number, training: boolean) =>
      Array.from(randomLayer(options, seed, wasm).forward(x, T, { training, step }).y);
    expect(out(1, 4, true)).toEqual(out(1, 4, true));
    expect(out(1, 4, true)).not.toEqual(out(1, 5, true));
    expect(out(1, 4, true)).not.toEqual(out(2, 4, true));
    expect(out(1, 4, false)).toEqual(out(1, 5, false));
    expect(out(1, 4, false)).not.toEqual(out(1, 4, true));
  });

  it('initializes with the reduced scale: truncated normal, std sqrt(0.1 / fan_in)', () => {
    const layer = new SwitchLayer(wasm, { dModel: 64, dFF: 256, numExperts: 4 }, { seed: 3 });
    const std = (a: Float32Array) => Math.sqrt(a.reduce((s, v) => s + v * v, 0) / a.length);
    // A normal truncated at 2σ keeps 0.88 of its standard deviation.
    expect(std(layer.weights.wIn) / Math.sqrt(0.1 / 64)).toBeCloseTo(0.88, 1);
    expect(std(layer.weights.wOut) / Math.sqrt(0.1 / 256)).toBeCloseTo(0.88, 1);
    const bound = 2 * Math.sqrt(0.1 / 64);
    expect(layer.weights.wIn.every((v) => Math.abs(v) <= bound)).toBe(true);
    layer.dispose();
  });
});

describe('bad input is an error that names the problem', () => {
  const ok: SwitchLayerOptions = { dModel: 4, dFF: 8, numExperts: 2 };
  it.each([
    [{ ...ok, numExperts: 0 }, /numExperts must be a positive integer, got 0/],
    [{ ...ok, numExperts: -3 }, /numExperts must be a positive integer, got -3/],
    [{ ...ok, capacityFactor: 0 }, /capacityFactor must be a number > 0/],
    [{ ...ok, capacityFactor: -1 }, /capacityFactor must be a number > 0/],
    [{ ...ok, topK: 3 }, /topK \(3\) cannot exceed numExperts \(2\)/],
    [{ ...ok, dModel: 2.5 }, /dModel must be a positive integer/],
    [{ ...ok, activation: 'tanh' as 'relu' }, /activation must be one of relu, gelu, swiglu; got tanh/],
    [{ ...ok, expertDropout: 1 }, /expertDropout must be in \[0, 1\)/],
  ])('config %o', (options, message) => {
    expect(() => new SwitchLayer(wasm, options)).toThrow(message);
  });

  it('inputs and weights of the wrong size, or with NaN or Inf', () => {
    const layer = new SwitchLayer(wasm, ok);
    expect(() => layer.forward(new Float32Array(12), 4)).toThrow(/x has 12 values, expected tokens × dModel = 4 × 4 = 16/);
    expect(() => layer.forward(new Float32Array(16).fill(NaN), 4)).toThrow(/input x contains NaN at index 0/);
    const x = new Float32Array(16); x[5] = Infinity;
    expect(() => layer.forward(x, 4)).toThrow(/input x contains Infinity at index 5/);
    expect(() => layer.backward(new Float32Array(16))).toThrow(/backward called before forward/);
    layer.forward(new Float32Array(16), 4);
    expect(() => layer.backward(new Float32Array(15))).toThrow(/dy has 15 values, expected 4 × 4 = 16/);
    expect(() => layer.backward(new Float32Array(16).fill(-Infinity))).toThrow(/gradient dy contains -Infinity/);
    const weights = { router: new Float32Array(8), wIn: new Float32Array(64), wOut: new Float32Array(64) };
    expect(() => layer.setWeights({ ...weights, router: new Float32Array(9) })).toThrow(/weight router has 9 values, expected 8 \(\[4×2\]\)/);
    expect(() => layer.setWeights({ ...weights, wOut: new Float32Array(64).fill(NaN) })).toThrow(/weight wOut contains NaN/);
    expect(() => layer.setWeights({ ...weights, wGate: new Float32Array(64) })).toThrow(/only swiglu has a gate/);
    layer.dispose();
  });
});
