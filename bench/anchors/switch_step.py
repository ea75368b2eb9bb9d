"""One Switch layer training step in PyTorch eager float32, the anchor for `npm run bench:engine`.

The step bench/suites.ts switchStepper times through our engine: top-1 routing with capacity
factor 1.25, relu experts, the load-balancing and z losses of docs/SPEC.md; forward, then
backward from a fixed dy to x and every weight; no optimizer. Weights are initialised as ours
(truncated normal, std sqrt(0.1 / fan_in)); x and dy are standard normal.

The experts run as most MoE code runs them, and as fast as we found eager PyTorch to go
(docs/anchors.md compares the alternatives): tokens gathered once in expert order, a matmul pair
per expert on that expert's own weight tensors (an nn.ModuleList of experts), index_add to combine.

Prints one JSON object: tokens_per_s (from the mean step time), best_tokens_per_s (the fastest
sample), step_ms, samples, dropped (the fraction of tokens over capacity), the shape, threads and
torch's version. --check instead compares the step with the float64 oracle in
test/oracle/switch_cases.py on a small case, prints the relative errors, and exits non-zero past
float32 rounding.
"""
import argparse
import json
import math
import os
import sys

import common  # first: it sets up OpenMP before torch loads
import torch

CHECK_TOLERANCE = 1e-5


def switch_forward(x, router, w_in, w_out, capacity_factor, aux_coef, z_coef):
    """y (zero for tokens over capacity), the two router losses, each token's expert, and the kept tokens.

    w_in and w_out are lists of per-expert tensors: slicing one stacked [E, …] tensor instead
    (w_in[e]) cost more than the matmuls at MEDIUM, as each slice's backward writes into a zeroed
    copy of the whole stack."""
    T, E = x.shape[0], router.shape[1]
    logits = x @ router
    probs = logits.softmax(-1)
    gate, expert = probs.max(-1)  # ties go to the lower index, as SPEC says
    capacity = max(1, math.ceil(capacity_factor * T / E))
    with torch.no_grad():
        # Tokens grouped by expert, in token order within each: the first `capacity` of each group are kept.
        order = torch.argsort(expert, stable=True)
        counts = torch.bincount(expert, minlength=E)
        slot = torch.arange(T) - (counts.cumsum(0) - counts)[expert[order]]
        idx = order[slot < capacity]
    parts = x[idx].split(counts.clamp(max=capacity).tolist())
    out = torch.cat([torch.relu(p @ a) @ b for p, a, b in zip(parts, w_in, w_out)]) * gate[idx, None]
    y = x.new_zeros(x.shape).index_add(0, idx, out)
    aux = aux_coef * E * (counts.float() / T * probs.mean(0)).sum()
    z = z_coef * torch.logsumexp(logits, -1).square().mean()
    return y, aux, z, expert, idx


def backward(y, aux, z, dy):
    """dy goes straight in as y's gradient: no Σ y ⊙ dy to build and differentiate."""
    torch.autograd.backward([y, aux + z], [dy, None])


def leaves(w):
    return [t.requires_grad_() for t in w]


def init_weights(d, d_ff, E, g):
    """Ours (model/switch-layer.ts): truncated normal (±2σ), σ = sqrt(0.1 / fan_in)."""
    def w(*shape, fan_in):
        std = math.sqrt(0.1 / fan_in)
        return torch.nn.init.trunc_normal_(torch.empty(*shape), std=std, a=-2 * std, b=2 * std, generator=g)
    return w(d, E, fan_in=d), [w(d, d_ff, fan_in=d) for _ in range(E)], [w(d_ff, d, fan_in=d_ff) for _ in range(E)]


def check():
    """This step in float32 against SPEC's float64 oracle on a case where tokens drop: the relative errors and the drops."""
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "test", "oracle"))
    import switch_cases  # sets torch's default dtype to float64, which the oracle needs: this case names float32 throughout

    T, d, d_ff, E, cf, aux_coef, z_coef = 64, 16, 24, 4, 1.25, 0.01, 0.001
    g = torch.Generator().manual_seed(7)
    # The oracle cases' scales (std 1/sqrt(fan_in)) make confident routing, so experts overflow and tokens drop.
    normal = lambda *shape, std=1.0: torch.randn(*shape, generator=g, dtype=torch.float32) * std
    x, router, dy = normal(T, d).requires_grad_(), normal(d, E, std=1 / math.sqrt(d)).requires_grad_(), normal(T, d)
    w_in = leaves([normal(d, d_ff, std=1 / math.sqrt(d)) for _ in range(E)])
    w_out = leaves([normal(d_ff, d, std=1 / math.sqrt(d_ff)) for _ in range(E)])
    y, aux, z, expert, idx = switch_forward(x, router, w_in, w_out, cf, aux_coef, z_coef)
    backward(y, aux, z, dy)

    stack = lambda ts: torch.stack([t.detach() for t in ts]).tolist()
    cfg = {"tokens": T, "d_model": d, "num_experts": E, "top_k": 1, "capacity_factor": cf, "activation": "relu",
           "aux_loss_coef": aux_coef, "z_loss_coef": z_coef, "normalize_top_k": True}
    want = switch_cases.switch_layer(cfg, {"x": x.tolist(), "router_weight": router.tolist(), "expert_w_in": stack(w_in),
                                           "expert_w_out": stack(w_out), "grad_y": dy.tolist()})
    kept = torch.zeros(T, 1, dtype=torch.bool)
    kept[idx] = True
    if expert[:, None].tolist() != want["outputs"]["expert_index"] or kept.tolist() != want["outputs"]["kept"]:
        raise SystemExit("check failed: the experts chosen or the tokens kept differ from the oracle's")
    if want["outputs"]["dropped"] == 0:
        raise SystemExit("check failed: no token dropped, so the capacity limit went untested")

    def rel(have, ref):
        ref = torch.tensor(ref, dtype=torch.float64)
        return float((torch.as_tensor(have).detach().double() - ref).norm() / ref.norm())
    errors = {
        "y": rel(y, want["outputs"]["y"]), "aux_loss": rel(aux, want["outputs"]["aux_loss"]), "z_loss": rel(z, want["outputs"]["z_loss"]),
        "grad_x": rel(x.grad, want["grads"]["x"]), "grad_router_weight": rel(router.grad, want["grads"]["router_weight"]),
        "grad_expert_w_in": rel(torch.stack([w.grad for w in w_in]), want["grads"]["expert_w_in"]),
        "grad_expert_w_out": rel(torch.stack([w.grad for w in w_out]), want["grads"]["expert_w_out"]),
    }
    return errors, want["outputs"]["dropped"]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=1024, help="tokens per step (default 1024, SMALL)")
    p.add_argument("--d-model", type=int, default=128, help="default 128 (SMALL)")
    p.add_argument("--d-ff", type=int, default=512, help="default 512 (SMALL)")
    p.add_argument("--experts", type=int, default=8, help="default 8")
    p.add_argument("--capacity-factor", type=float, default=1.25, help="default 1.25")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1)")
    p.add_argument("--max-time", type=float, default=5.0, help="seconds of timed samples (default 5, as bench:engine)")
    p.add_argument("--check", action="store_true", help="compare with the float64 oracle on a small case instead of timing")
    args = p.parse_args()
    common.set_threads(args.threads)
    if args.check:
        errors, dropped = check()
        worst = max(errors.values())
        ok = worst < CHECK_TOLERANCE
        print(json.dumps({"check": "ok" if ok else "failed", "worst_rel_err": worst, "tolerance": CHECK_TOLERANCE,
                          "dropped": dropped, "rel_err": errors}))
        sys.exit(0 if ok else 1)

    T, d, d_ff, E = args.tokens, args.d_model, args.d_ff, args.experts
    g = torch.Generator().manual_seed(1)
    router, w_in, w_out = init_weights(d, d_ff, E, g)
    params = leaves([router, *w_in, *w_out])
    x, dy = torch.randn(T, d, generator=g).requires_grad_(), torch.randn(T, d, generator=g)
    kept = []

    def step():
        for t in [x, *params]:
            t.grad = None
        y, aux, z, _, idx = switch_forward(x, router, w_in, w_out, args.capacity_factor, 0.01, 0.001)
        backward(y, aux, z, dy)
        kept.append(len(idx))

    mean, best, samples = common.time_calls(step, args.max_time, min_samples=3)
    print(json.dumps({
        "suite": "switch-layer", "backend": "pytorch", "tokens": T, "d_model": d, "d_ff": d_ff, "num_experts": E,
        "capacity_factor": args.capacity_factor, "threads": args.threads, "tokens_per_s": T / mean, "best_tokens_per_s": T / best,
        "step_ms": mean * 1e3, "samples": samples, "dropped": 1 - kept[-1] / T, "torch": torch.__version__,
    }))


if __name__ == "__main__":
    main()
