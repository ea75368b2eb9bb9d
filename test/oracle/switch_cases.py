"""An independent oracle for the Switch layer: SPEC.md written in PyTorch float64 autograd.

  /usr/bin/python3 test/oracle/switch_cases.py verify FILE...   # recompute cases, compare to their outputs
  /usr/bin/python3 test/oracle/switch_cases.py generate DIR      # write new cases in the same format

Not a dependency of Switchyard: it checks that our reading of SPEC agrees with the project's
reference cases in test/reference (verify) and makes the extra cases in test/reference/generated (generate). Needs torch
(Debian: apt-get install python3-torch).
"""
import json
import math
import sys

import torch

torch.set_default_dtype(torch.float64)


def switch_layer(cfg, inp):
    T, d, E, k = cfg["tokens"], cfg["d_model"], cfg["num_experts"], cfg["top_k"]
    t = lambda name: torch.tensor(inp[name], dtype=torch.float64, requires_grad=True)
    x, wr, w_in, w_out = t("x"), t("router_weight"), t("expert_w_in"), t("expert_w_out")
    w_gate = t("expert_w_gate") if cfg["activation"] == "swiglu" else None
    grad_y = torch.tensor(inp["grad_y"], dtype=torch.float64)

    logits = x @ wr
    probs = torch.softmax(logits, dim=-1)
    # top-k by probability, ties to the lower index: a stable sort on -probs.
    order = torch.sort(-probs.detach(), dim=-1, stable=True).indices[:, :k]
    chosen = torch.gather(probs, 1, order)
    gates = chosen / chosen.sum(-1, keepdim=True) if (k > 1 and cfg["normalize_top_k"]) else chosen

    cf = cfg["capacity_factor"]
    C = k * T if cf is None else max(1, math.ceil(cf * k * T / E))
    kept = torch.zeros(T, k, dtype=torch.bool)
    counts = [0] * E
    for j in range(k):
        for tok in range(T):
            e = int(order[tok, j])
            if counts[e] < C:
                kept[tok, j] = True
                counts[e] += 1

    y = torch.zeros(T, d)
    for tok in range(T):
        for j in range(k):
            if not kept[tok, j]:
                continue
            e = int(order[tok, j])
            a = x[tok] @ w_in[e]
            if cfg["activation"] == "relu":
                h = torch.relu(a)
            elif cfg["activation"] == "gelu":
                h = torch.nn.functional.gelu(a)
            else:
                h = torch.nn.functional.silu(x[tok] @ w_gate[e]) * a
            y = y.index_add(0, torch.tensor([tok]), (gates[tok, j] * (h @ w_out[e]))[None])

    first = order[:, 0]
    f = torch.bincount(first, minlength=E).double() / T
    aux = cfg["aux_loss_coef"] * E * (f * probs.mean(0)).sum()
    z = cfg["z_loss_coef"] * (torch.logsumexp(logits, -1) ** 2).mean()
    loss = (y * grad_y).sum() + aux + z
    params = {"x": x, "router_weight": wr, "expert_w_in": w_in, "expert_w_out": w_out}
    if w_gate is not None:
        params["expert_w_gate"] = w_gate
    grads = torch.autograd.grad(loss, list(params.values()))
    return {
        "outputs": {
            "y": y.tolist(), "router_probs": probs.tolist(), "aux_loss": aux.item(), "z_loss": z.item(),
            "loss": loss.item(), "expert_index": order.tolist(), "kept": kept.tolist(),
            "tokens_per_expert": torch.bincount(first, minlength=E).tolist(),
            "kept_per_expert": counts, "capacity": C, "dropped": int((~kept).sum()),
        },
        "grads": {name: g.tolist() for name, g in zip(params, grads)},
    }


def rel(a, b):
    a, b = torch.tensor(a, dtype=torch.float64), torch.tensor(b, dtype=torch.float64)
    n = b.norm()
    return float((a - b).norm() / n) if n > 0 else float(a.norm())


def verify(files):
    ok = True
    for path in files:
        case = json.load(open(path))
        got = switch_layer(case["config"], case["inputs"])
        worst = 0.0
        for group in ("outputs", "grads"):
            for key, want in case[group].items():
                have = got[group][key]
                if key in ("expert_index", "kept", "tokens_per_expert", "kept_per_expert", "capacity", "dropped"):
                    if have != want:
                        print(f"{path}: {key} differs")
                        ok = False
                elif isinstance(want, list):
                    worst = max(worst, rel(have, want))
                else:
                    worst = max(worst, abs(have - want) / max(abs(want), 1e-12))
        print(f"{path}: worst relative error {worst:.2e}")
        ok = ok and worst < 1e-10
    return ok


GENERATED = [
    # name, E, k, cf, activation, d, d_ff, T, normalize
    ("top1-relu-e8-cf1.25-wide", 8, 1, 1.25, "relu", 16, 24, 48, True),
    ("top1-gelu-e2-cf1.0", 2, 1, 1.0, "gelu", 7, 13, 33, True),
    ("top1-swiglu-e6-dropless", 6, 1, None, "swiglu", 10, 6, 30, True),
    ("top1-relu-e1-cf1.0", 1, 1, 1.0, "relu", 5, 9, 11, True),
    ("top1-relu-e16-cf0.1-capacity-one", 16, 1, 0.1, "relu", 6, 8, 20, True),
    ("top1-gelu-one-token", 4, 1, 1.25, "gelu", 9, 5, 1, True),
    ("top2-swiglu-e3-cf1.5", 3, 2, 1.5, "swiglu", 8, 10, 25, True),
    ("top2-gelu-unnormalized-e5-cf0.75", 5, 2, 0.75, "gelu", 6, 11, 29, False),
    ("top2-relu-e2-dropless", 2, 2, None, "relu", 4, 7, 17, True),
    ("top3-relu-e6-cf1.0", 6, 3, 1.0, "relu", 8, 12, 21, True),
]


def generate(out_dir):
    import os
    os.makedirs(out_dir, exist_ok=True)
    for i, (name, E, k, cf, act, d, d_ff, T, norm) in enumerate(GENERATED):
        seed = 5000 + i
        g = torch.Generator().manual_seed(seed)
        f32 = lambda *shape, std=1.0: (torch.randn(*shape, generator=g) * std).float().double().tolist()
        cfg = {"num_experts": E, "top_k": k, "capacity_factor": cf, "activation": act, "aux_loss_coef": 0.01,
               "z_loss_coef": 0.001, "normalize_top_k": norm, "d_model": d, "d_ff": d_ff, "tokens": T}
        inputs = {"x": f32(T, d), "router_weight": f32(d, E, std=1 / math.sqrt(d)),
                  "expert_w_in": f32(E, d, d_ff, std=1 / math.sqrt(d)),
                  "expert_w_out": f32(E, d_ff, d, std=1 / math.sqrt(d_ff))}
        if act == "swiglu":
            inputs["expert_w_gate"] = f32(E, d, d_ff, std=1 / math.sqrt(d))
        inputs["grad_y"] = f32(T, d)
        case = {"name": name, "seed": seed, "config": cfg, "inputs": inputs, **switch_layer(cfg, inputs)}
        with open(os.path.join(out_dir, name + ".json"), "w") as fh:
            json.dump(case, fh)
        print("wrote", name)


if __name__ == "__main__":
    if len(sys.argv) < 3 or sys.argv[1] not in ("verify", "generate"):
        sys.exit(__doc__)
    if sys.argv[1] == "verify":
        sys.exit(0 if verify(sys.argv[2:]) else 1)
    generate(sys.argv[2])
