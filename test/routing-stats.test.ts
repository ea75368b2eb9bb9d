// The routing figures each evaluation logs, per Switch layer and expert, and the dead-expert watch.
import { describe, expect, it } from 'vitest';
import { DEAD_EXPERT_STEPS, DeadExperts, RoutingTally } from '../app/routing-stats.js';
import type { SwitchStats } from '../model/switch-layer.js';

/** A forward's stats for E experts: each token's choices, which were kept, and the router's probabilities. */
function stats(E: number, choices: number[], kept: number[], probs: number[][]): SwitchStats {
  const keptPerExpert = new Int32Array(E), tokensPerExpert = new Int32Array(E);
  choices.forEach((e, i) => { if (kept[i]) keptPerExpert[e]!++; tokensPerExpert[e]!++; });
  return {
    expertIndex: Int32Array.from(choices), gates: new Float32Array(choices.length), kept: Uint8Array.from(kept), tokensPerExpert, keptPerExpert, capacity: 2,
    dropped: kept.filter((k) => !k).length, routerProbs: Float32Array.from(probs.flat()), auxLoss: 0, zLoss: 0,
  };
}

describe('RoutingTally', () => {
  it('gives each expert its load and dropped share, and the layer its entropy and overload', () => {
    const tally = new RoutingTally([1], 2);
    tally.add([stats(2, [0, 0, 0, 1], [1, 1, 0, 1], [[0.5, 0.5], [0.5, 0.5], [0.5, 0.5], [0.5, 0.5]])]);
    const [layer] = tally.summary();
    expect(layer).toEqual({
      layer: 1, load: [0.75, 0.25], dropped: [0.333333, 0], dropped_fraction: 0.25, entropy: Number(Math.log(2).toFixed(6)),
      overload: 1.5, overload_max: 1.5, dead: [],
    });
  });

  it('adds forwards: counts summed, overload averaged and its largest kept, a certain router has entropy 0', () => {
    const tally = new RoutingTally([0, 2], 2);
    const certain = [[1, 0], [0, 1]];
    tally.add([stats(2, [0, 1], [1, 1], certain), stats(2, [0, 0], [1, 1], [[1, 0], [1, 0]])]);
    tally.add([stats(2, [0, 0], [1, 0], certain), stats(2, [1, 1], [1, 1], [[0, 1], [0, 1]])]);
    const [a, b] = tally.summary();
    expect(a).toMatchObject({ layer: 0, load: [0.75, 0.25], dropped: [0.333333, 0], entropy: 0, overload: 1.5, overload_max: 2 });
    expect(b).toMatchObject({ layer: 2, load: [0.5, 0.5], dropped: [0, 0], dropped_fraction: 0, overload: 2, overload_max: 2 });
  });

  it('counts every one of a token\'s k choices', () => {
    const tally = new RoutingTally([1], 4);
    // Two tokens, top-2: (0, 1) and (0, 2).
    tally.add([stats(4, [0, 1, 0, 2], [1, 1, 1, 1], [[0.4, 0.3, 0.2, 0.1], [0.4, 0.1, 0.3, 0.2]])]);
    expect(tally.summary()[0]).toMatchObject({ load: [0.5, 0.25, 0.25, 0], overload: 2 });
  });
});

describe('DeadExperts', () => {
  it(`warns once when an expert has had no first choice for ${DEAD_EXPERT_STEPS} steps, and lists it until it has one`, () => {
    const watch = new DeadExperts([1, 3], 3);
    const warnings: string[] = [];
    for (let step = 1; step <= 150; step++) warnings.push(...watch.observe(step, [[5, 0, 3], [4, 4, 0]]));
    expect(warnings).toEqual([
      `expert 1 of the Switch layer at layer 1 has received no token as first choice for ${DEAD_EXPERT_STEPS} steps (since step 1): a dead expert`,
      `expert 2 of the Switch layer at layer 3 has received no token as first choice for ${DEAD_EXPERT_STEPS} steps (since step 1): a dead expert`,
    ]);
    expect(watch.dead(0)).toEqual([{ expert: 1, idle_steps: 150 }]);
    expect(watch.dead(1)).toEqual([{ expert: 2, idle_steps: 150 }]);
    watch.observe(151, [[5, 1, 3], [4, 4, 0]]);
    expect(watch.dead(0), 'revived').toEqual([]);
    expect(watch.dead(1)).toEqual([{ expert: 2, idle_steps: 151 }]);
  });

  it('takes shares as well as counts, so a resumed run replays its log', () => {
    const fromCounts = new DeadExperts([1], 2), fromShares = new DeadExperts([1], 2);
    for (let step = 1; step <= 120; step++) {
      fromCounts.observe(step, [[7, 0]]);
      fromShares.observe(step, [[1, 0]]);
    }
    expect(fromShares.dead(0)).toEqual(fromCounts.dead(0));
  });
});
