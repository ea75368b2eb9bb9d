// The language model's backward against finite differences, for every architecture option.
import { describe, expect, it } from 'vitest';
import { createKernels } from '../kernels/index.js';
import type { ModelConfig } from '../model/config.js';
import { Rng } from '../model/rng.js';
import { Transformer } from '../model/transformer.js';

const kernels = createKernels({ backend: 'wasm' });
const BASE: ModelConfig = {
  vocabSize: 11, context: 6, layers: 2, heads: 2, dModel: 8, dFF: 12, norm: 'layernorm', positions: 'learned',
  activation: 'gelu', bias: false, dropout: 0, numExperts: 3, sparseStep: 2, topK: 1, capacityFactor: 2,
  normalizeTopK: true, auxLossCoef: 0.01, zLossCoef: 0.001, routerJitter: 0, expertDropout: 0, expertDtype: 'f32',
};

const VARIANTS: [string, Partial<ModelConfig>][] = [
  ['layernorm, learned positions, gelu, Switch every 2nd layer', {}],
  ['rmsnorm, rope, swiglu, no bias (the Qwen2-MoE layout)', { norm: 'rmsnorm', positions: 'rope', activation: 'swiglu' }],
  ['biases, relu, dense', { bias: true, activation: 'relu', numExperts: 0 }],
  ['dropout, jitter, expert dropout, top-2', { dropout: 0.2, routerJitter: 0.1, expertDropout: 0.3, topK: 2, sparseStep: 1 }],
];

describe('transformer gradients match finite differences', () => {
  it.each(VARIANTS)('%s', async (_name, overrides) => {
    const config = { ...BASE, ...overrides };
    const model = new Transformer(kernels, config, { seed: 3 });
    // Larger than the reduced init, so every path carries a gradient well above float32 noise.
    for (const p of model.params.list) {
      if (p.shape.length > 1) {
        const rng = new Rng('scale', p.name);
        for (let i = 0; i < p.data.length; i++) p.data[i] = rng.normal() * 0.4;
      }
    }
    model.syncComputeCopies();
    const B = 2, T = 5, rng = new Rng('tokens');
    const tokens = Int32Array.from({ length: B * (T + 1) }, () => rng.nextU32() % config.vocabSize);
    const batch = {
      batch: B, context: T,
      inputs: Int32Array.from({ length: B * T }, (_, i) => tokens[Math.floor(i / T) * (T + 1) + (i % T)]!),
      targets: Int32Array.from({ length: B * T }, (_, i) => tokens[Math.floor(i / T) * (T + 1) + (i % T) + 1]!),
    };
    const training = (config.dropout > 0) || config.routerJitter > 0;
    const lossAt = async () => (await model.forward(batch, { training, step: 2 })).loss;
    await lossAt();
    await model.backward();
    const grads = new Map(model.params.list.map((p) => [p.name, Float32Array.from(p.grad)]));
    for (const p of model.params.list) {
      const v = new Rng('dir', p.name).fillNormal(new Float32Array(p.data.length));
      const original = Float32Array.from(p.data);
      const at = async (step: number) => {
        for (let i = 0; i < p.data.length; i++) p.data[i] = original[i]! + step * v[i]!;
        return lossAt();
      };
      // Routing is piecewise constant: where a token changes expert (or is dropped) within ±eps,
      // the two one-sided slopes disagree and the loss has a kink there, not a gradient; narrow eps past it.
      const center = await at(0);
      let eps = 1e-3, numeric = 0;
      for (let tries = 0; tries < 5; tries++, eps /= 2) {
        const up = ((await at(eps)) - center) / eps, down = (center - (await at(-eps))) / eps;
        numeric = (up + down) / 2;
        if (Math.abs(up - down) < 0.05 * Math.max(0.1, Math.abs(numeric))) break;
      }
      p.data.set(original);
      const g = grads.get(p.name)!;
      let exact = 0;
      for (let i = 0; i < g.length; i++) exact += g[i]! * v[i]!;
      expect(Math.abs(numeric - exact), `${p.name}: finite difference ${numeric}, backward ${exact}`)
        .toBeLessThan(1e-2 * Math.max(0.1, Math.abs(exact)));
    }
    await model.dispose();
  });
});
