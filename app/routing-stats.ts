// What a Switch model's routing looks like, per layer and per expert: the figures each evaluation
// logs (measured on the fixed validation batches, so they depend on the weights alone and a resumed
// run logs what an uninterrupted one would), and the watch for dead experts over training steps.
import type { SwitchStats } from '../model/switch-layer.js';

/** One Switch layer's routing over a set of batches (log.jsonl's `routing`, on evaluation lines). */
export interface LayerRouting {
  /** The model layer (0-based) this Switch layer is. */
  layer: number;
  /** Per expert: its share of all token assignments (k per token), before drops; sums to 1. */
  load: number[];
  /** Per expert: the fraction of its assignments dropped for capacity. */
  dropped: number[];
  /** Over the layer: the fraction of all assignments dropped. */
  dropped_fraction: number;
  /** Mean over tokens of the router distribution's entropy, in nats (log E: uniform; 0: certain). */
  entropy: number;
  /** Mean over batches of max_e(assignments_e) / mean_e(assignments_e): how far the busiest expert is over an even split. */
  overload: number;
  /** The largest such factor in any batch. */
  overload_max: number;
  /** Experts given no token as first choice for at least DEAD_EXPERT_STEPS training steps, with their idle steps. */
  dead: { expert: number; idle_steps: number }[];
}

/** An expert that no token chose first for this many training steps in a row is reported dead. */
export const DEAD_EXPERT_STEPS = 100;

const round = (x: number, digits = 6) => Number(x.toFixed(digits));

/**
 * Each Switch layer's routing over several forwards, added one forward at a time (a forward's stats
 * are views of the model's workspace, which the next forward reuses). `layers`: the Switch layers'
 * model layer indices.
 */
export class RoutingTally {
  private readonly perLayer: { assigned: Float64Array; kept: Float64Array; entropy: number; tokens: number; overload: number; overloadMax: number; batches: number }[];

  constructor(private readonly layers: number[], experts: number) {
    this.perLayer = layers.map(() => ({
      assigned: new Float64Array(experts), kept: new Float64Array(experts), entropy: 0, tokens: 0, overload: 0, overloadMax: 0, batches: 0,
    }));
  }

  /** One forward's stats, one per Switch layer in order. */
  add(stats: SwitchStats[]): void {
    stats.forEach((s, i) => {
      const L = this.perLayer[i]!, E = L.assigned.length;
      const counts = new Float64Array(E);
      for (let j = 0; j < s.expertIndex.length; j++) counts[s.expertIndex[j]!]!++;
      for (let e = 0; e < E; e++) { L.assigned[e]! += counts[e]!; L.kept[e]! += s.keptPerExpert[e]!; }
      const factor = Math.max(...counts) / (s.expertIndex.length / E);
      L.overload += factor;
      L.overloadMax = Math.max(L.overloadMax, factor);
      L.batches++;
      const T = s.routerProbs.length / E;
      for (let t = 0; t < T; t++) {
        for (let e = 0; e < E; e++) {
          const p = s.routerProbs[t * E + e]!;
          if (p > 0) L.entropy -= p * Math.log(p);
        }
      }
      L.tokens += T;
    });
  }

  summary(dead?: DeadExperts): LayerRouting[] {
    return this.perLayer.map((L, i) => {
      const total = L.assigned.reduce((a, b) => a + b, 0);
      const kept = L.kept.reduce((a, b) => a + b, 0);
      return {
        layer: this.layers[i]!,
        load: Array.from(L.assigned, (a) => round(a / total)),
        dropped: Array.from(L.assigned, (a, e) => (a > 0 ? round((a - L.kept[e]!) / a) : 0)),
        dropped_fraction: round((total - kept) / total),
        entropy: round(L.entropy / L.tokens),
        overload: round(L.overload / L.batches, 4),
        overload_max: round(L.overloadMax, 4),
        dead: dead?.dead(i) ?? [],
      };
    });
  }
}

/**
 * Counts, per Switch layer and expert, the training steps since a token last chose it first, and
 * says once per idle spell when that reaches DEAD_EXPERT_STEPS.
 */
export class DeadExperts {
  /** idle[i][e]: consecutive steps, up to the last observed, in which expert e of Switch layer i had no first choice. */
  private readonly idle: number[][];

  constructor(private readonly layers: number[], experts: number, private readonly after = DEAD_EXPERT_STEPS) {
    this.idle = layers.map(() => new Array<number>(experts).fill(0));
  }

  /** One training step, from its per-layer first-choice counts (or shares); returns the warnings it raises. */
  observe(step: number, firstChoices: ArrayLike<number>[]): string[] {
    const warnings: string[] = [];
    firstChoices.forEach((counts, i) => {
      const idle = this.idle[i]!;
      for (let e = 0; e < idle.length; e++) {
        idle[e] = counts[e]! > 0 ? 0 : idle[e]! + 1;
        if (idle[e] === this.after) {
          warnings.push(`expert ${e} of the Switch layer at layer ${this.layers[i]} has received no token as first choice `
            + `for ${this.after} steps (since step ${step - this.after + 1}): a dead expert`);
        }
      }
    });
    return warnings;
  }

  /** The experts of Switch layer `i` idle for at least the threshold. */
  dead(i: number): { expert: number; idle_steps: number }[] {
    return this.idle[i]!.flatMap((n, expert) => (n >= this.after ? [{ expert, idle_steps: n }] : []));
  }
}
