"""Continues training a Switchyard model under PyTorch distributed (torchrun, FSDP2 or DDP).

  torchrun --nproc_per_node 2 scripts/continue_fsdp.py --from EXPORT --data FILE --steps N --out DIR
  python scripts/continue_fsdp.py --from DIR --eval-only --batches-from BATCHES.json

EXPORT is a folder written by `switchyard export --format qwen2-moe`: transformers loads it as
Qwen2MoeForCausalLM (float32), its tokenizer.json encodes the corpus, and its config.json's
`switchyard` section gives the training settings (batch, learning rate, schedule, AdamW, clipping,
seed) and the router's loss coefficients. Training continues on the corpus's first 90% (the same
split as Switchyard's) with batches of random windows, on every process torchrun starts (gloo on
CPU, nccl on GPUs). Rank 0 prints one JSON line per step; at the end DIR holds a folder that
`switchyard import` reads back: transformers' save_pretrained (safetensors), the tokenizer files,
and the `switchyard` section with the corpus re-pointed. DIR/first-batch.json holds the first
step's batch, so its loss can be checked against Switchyard's on the same tokens.

The objective is Switchyard's, not transformers' own: cross-entropy plus, for every Switch layer,
the load-balancing loss alpha*E*sum_e f_e*P_e and the z-loss beta*mean(logsumexp(logits)^2),
with f (first choices) and P (mean router probabilities) over the whole batch of every process.
transformers would instead add router_aux_loss_coef times one load-balancing loss pooled over all
layers and counting all top-k choices, without a z-loss, and per process. Routing is dropless
(transformers' Qwen2-MoE has no capacity); router jitter is applied as Switchyard applies it.

--eval-only (one process, no torchrun) prints the mean cross-entropy of the model in --from over
the batches in --batches-from (the format of first-batch.json), with the router losses beside it.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

EMBEDDED_CORPUS = Path(__file__).resolve().parent.parent / "data" / "tinyshakespeare.txt"


def fail(message):
    print(f"continue_fsdp: {message}", file=sys.stderr)
    sys.exit(2)


def read_export(folder):
    config_file = folder / "config.json"
    if not config_file.is_file():
        fail(f"{folder}: no config.json (expected a folder written by `switchyard export --format qwen2-moe`)")
    config = json.loads(config_file.read_text())
    section = config.get("switchyard")
    if not isinstance(section, dict) or "train" not in section or "model" not in section:
        fail(f"{config_file}: no `switchyard` section; this script continues folders written by `switchyard export`")
    if not (folder / "tokenizer.json").is_file():
        fail(f"{folder}: no tokenizer.json")
    return config, section


def parse_args(argv):
    p = argparse.ArgumentParser(
        description="Continue training a `switchyard export` folder under torchrun with FSDP2 (or DDP).",
        epilog="Training options default to the export's switchyard.train settings. "
        "Example: torchrun --nproc_per_node 2 scripts/continue_fsdp.py --from hf/tiny --steps 100 --out hf/tiny-more",
    )
    p.add_argument("--from", dest="source", required=True, type=Path, help="the folder written by switchyard export")
    p.add_argument("--data", type=Path, help="the corpus (default: where the export's switchyard.data points)")
    p.add_argument("--steps", type=int, help="training steps to run (required unless --eval-only)")
    p.add_argument("--out", type=Path, help="the folder to write (required unless --eval-only)")
    p.add_argument("--batch", type=int, help="sequences per step over all processes (must divide by the number of processes)")
    p.add_argument("--lr", type=float, help="peak learning rate")
    p.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine decay")
    p.add_argument("--warmup", type=int, help="linear warm-up steps")
    p.add_argument("--weight-decay", type=float, help="AdamW's decoupled weight decay (matrices only)")
    p.add_argument("--beta1", type=float)
    p.add_argument("--beta2", type=float)
    p.add_argument("--grad-clip", type=float, help="clip the global gradient norm to this; 0: no clipping")
    p.add_argument("--seed", type=int, help="seed of the batches and the router jitter")
    p.add_argument("--parallel", choices=["fsdp", "ddp"], default="fsdp",
                   help="FSDP2 (fully_shard: parameters, gradients and optimizer state sharded) or DDP (replicated); default fsdp")
    p.add_argument("--eval-only", action="store_true", help="evaluate --from on --batches-from and exit (one process)")
    p.add_argument("--batches-from", type=Path, help="with --eval-only: a JSON file {\"batches\": [{\"inputs\": [[ids]], \"targets\": [[ids]]}]}")
    args = p.parse_args(argv)

    config, section = read_export(args.source)
    if args.eval_only:
        if args.batches_from is None:
            p.error("--eval-only needs --batches-from FILE")
        return args, config, section
    for flag in ("steps", "out"):
        if getattr(args, flag) is None:
            p.error(f"--{flag} is required (unless --eval-only)")
    if args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    if args.out.resolve() == args.source.resolve():
        p.error("--out must be another folder than --from (the export stays as it was)")
    t = section["train"]
    defaults = dict(batch=t["batch"], lr=t["learningRate"], min_lr=t["minLearningRate"], warmup=t["warmupSteps"],
                    weight_decay=t["weightDecay"], beta1=t["beta1"], beta2=t["beta2"], grad_clip=t["gradClip"], seed=t["seed"])
    for name, value in defaults.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.batch < 1:
        p.error(f"--batch must be at least 1, got {args.batch}")
    return args, config, section


# --- the corpus, its split and the batches ------------------------------------------------------------

def sha256(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def find_corpus(args, section):
    """The corpus file: --data, else where the export's section points (relative to the export), else the embedded one."""
    ref = section.get("data") or {}
    if args.data is not None:
        path = args.data
    elif "path" in ref:
        path = args.source / ref["path"]
    elif ref.get("name") == "tinyshakespeare":
        path = EMBEDDED_CORPUS
    else:
        fail(f"{args.source}/config.json records no corpus; name one with --data FILE")
    if not path.is_file():
        fail(f"the corpus {path} is not there; point at it with --data FILE")
    text = path.read_text(encoding="utf-8")
    same = ref.get("sha256") == sha256(text)
    return path, text, same


def encode(tokenizer_file, text):
    """Token ids of `text` with the export's tokenizer.json. Ours are BPEs without merges (one token a character or a
    byte), so encoding line by line in chunks gives the ids of the whole text; decoding must give the text back."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(tokenizer_file))
    lines = text.splitlines(keepends=True)
    chunks = ["".join(lines[i:i + 2000]) for i in range(0, len(lines), 2000)]
    ids = [i for encoding in tokenizer.encode_batch(chunks, add_special_tokens=False) for i in encoding.ids]
    if tokenizer.decode(ids) != text:
        fail(f"{tokenizer_file} does not encode the corpus losslessly (characters outside its vocabulary?)")
    return torch.tensor(ids, dtype=torch.long)


def split(tokens):
    """Switchyard's (and nanoGPT's) split: the first int(0.9 n) tokens train, the rest validate."""
    n = math.floor(len(tokens) * 0.9)
    return tokens[:n], tokens[n:]


def draw_batch(data, batch, context, generator):
    """`batch` windows at offsets uniform in [0, len - context - 1], as Switchyard's draw (another random stream)."""
    if len(data) < context + 2:
        fail(f"the training split has {len(data)} tokens, fewer than context + 2 = {context + 2}; use a longer text")
    starts = torch.randint(0, len(data) - context, (batch,), generator=generator)
    inputs = torch.stack([data[s:s + context] for s in starts])
    targets = torch.stack([data[s + 1:s + context + 1] for s in starts])
    return inputs, targets


def batches_json(batches):
    return {"batches": [{"inputs": i.tolist(), "targets": t.tolist()} for i, t in batches]}


def read_batches(file):
    try:
        data = json.loads(file.read_text())
        return [(torch.tensor(b["inputs"], dtype=torch.long), torch.tensor(b["targets"], dtype=torch.long)) for b in data["batches"]]
    except (OSError, ValueError, KeyError, TypeError) as error:
        fail(f"{file}: not a batches file ({{\"batches\": [{{\"inputs\": [[ids]], \"targets\": [[ids]]}}]}}): {error}")


# --- the model and Switchyard's objective -------------------------------------------------------------

def load_model(folder, section, device):
    import transformers
    from transformers import Qwen2MoeForCausalLM

    transformers.utils.logging.disable_progress_bar()
    model = Qwen2MoeForCausalLM.from_pretrained(folder, dtype=torch.float32).to(device)
    # Switchyard has no shared expert: the export writes it as zeros (it adds nothing) and import refuses a non-zero one,
    # so it stays frozen at zero. (Its gradients are zero anyway: every path through it is multiplied by a zero weight.)
    for name, p in model.named_parameters():
        if ".shared_expert" in name:
            if p.count_nonzero() > 0:
                fail(f"{folder}: {name} is not zero; not a Switchyard export")
            p.requires_grad_(False)
    jitter = section["model"].get("routerJitter", 0)
    if jitter > 0:
        # Switchyard multiplies the router's input (not the experts') by Uniform(1 - eps, 1 + eps) noise in training.
        def jittered(module, args):
            if not module.training:
                return None
            x = args[0]
            return (x * torch.empty_like(x).uniform_(1 - jitter, 1 + jitter),) + tuple(args[1:])

        for layer in model.model.layers:
            if hasattr(layer.mlp, "gate") and hasattr(layer.mlp, "experts"):
                layer.mlp.gate.register_forward_pre_hook(jittered)
    return model


def not_reproduced(section):
    """What of the run's behaviour transformers' Qwen2-MoE cannot do, for the user to know."""
    m = section["model"]
    notes = []
    if m.get("capacityFactor") is not None:
        notes.append(f"capacity factor {m['capacityFactor']}: routing here is dropless (transformers' Qwen2-MoE has no capacity)")
    if m.get("dropout", 0) > 0:
        notes.append(f"dropout {m['dropout']} on embeddings and residual branches: not applied (Qwen2-MoE has none)")
    if m.get("expertDropout", 0) > 0:
        notes.append(f"expert dropout {m['expertDropout']}: not applied")
    if m.get("expertDtype", "f32") != "f32":
        notes.append(f"expert weights stored as {m['expertDtype']}: trained here in float32")
    return notes


class _SumOverProcesses(torch.autograd.Function):
    """all_reduce(SUM) with a gradient: the gradient of every process's copy of the sum flows back to every process's
    addend. FSDP and DDP then average the parameters' gradients over the processes, which gives the sum's gradient."""

    @staticmethod
    def forward(ctx, x):
        y = x.clone()
        dist.all_reduce(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        grad = grad.clone()
        dist.all_reduce(grad)
        return grad


def router_losses(router_logits, aux_coef, z_coef, distributed):
    """Switchyard's router losses (model/router.ts), summed over the Switch layers: aux = alpha*E*sum_e f_e*P_e, with
    f_e the share of tokens whose first choice is e (a constant) and P_e the mean router probability of e, both over
    the tokens of every process when `distributed`; z = beta*mean(logsumexp(logits)^2), this process's mean (every
    process has the same number of tokens, so the mean over processes is the batch's)."""
    aux = z = torch.zeros(())
    for logits in router_logits:
        logits = logits.float()
        experts = logits.shape[-1]
        probs = logits.softmax(-1)
        counts = torch.bincount(probs.argmax(-1), minlength=experts).float()
        prob_sums = probs.sum(0)
        if distributed:
            dist.all_reduce(counts)
            prob_sums = _SumOverProcesses.apply(prob_sums)
        tokens = counts.sum()
        aux = aux + aux_coef * experts * ((counts / tokens) * (prob_sums / tokens)).sum()
        z = z + z_coef * logits.logsumexp(-1).pow(2).mean()
    return aux, z


def has_switch_layers(config):
    """As transformers decides which decoder layers are sparse (Qwen2MoeDecoderLayer)."""
    return config["num_experts"] > 0 and any(
        i not in config.get("mlp_only_layers", []) and (i + 1) % config.get("decoder_sparse_step", 1) == 0
        for i in range(config["num_hidden_layers"]))


def losses(model, inputs, targets, objective, distributed=False):
    """Cross-entropy, and Switchyard's router losses from the router logits of every Switch layer."""
    routed = objective["routed"]  # transformers' own aux loss fails on a model without Switch layers: ask only where there are
    out = model(input_ids=inputs, output_router_logits=routed, use_cache=False)
    ce = F.cross_entropy(out.logits.flatten(0, 1).float(), targets.flatten())
    router_logits = out.router_logits if routed else ()
    aux, z = router_losses(router_logits, objective["aux"], objective["z"], distributed)
    return ce, aux, z, router_logits


def switchyard_objective(config, section):
    return {"aux": section["model"]["auxLossCoef"], "z": section["model"]["zLossCoef"], "routed": has_switch_layers(config)}


def learning_rate(args, step):
    """Switchyard's schedule (model/optim.ts) over these --steps: linear warm-up, then cosine decay to --min-lr."""
    if step < args.warmup:
        return args.lr * (step + 1) / (args.warmup + 1)
    progress = (step - args.warmup) / max(1, args.steps - args.warmup)
    return args.min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (args.lr - args.min_lr)


# --- the two modes ------------------------------------------------------------------------------------

def evaluate(args, config, section):
    from transformers.models.qwen2_moe.modeling_qwen2_moe import load_balancing_loss_func

    model = load_model(args.source, section, torch.device("cpu"))
    model.eval()
    objective = switchyard_objective(config, section)
    sums = {"eval_loss": 0.0, "aux_loss": 0.0, "z_loss": 0.0, "transformers_aux_loss": 0.0}
    batches = read_batches(args.batches_from)
    with torch.no_grad():
        for inputs, targets in batches:
            ce, aux, z, router_logits = losses(model, inputs, targets, objective)
            theirs = load_balancing_loss_func(router_logits, config["num_experts"], config["num_experts_per_tok"]) if router_logits else 0.0
            for key, value in (("eval_loss", ce), ("aux_loss", aux), ("z_loss", z),
                               ("transformers_aux_loss", config["router_aux_loss_coef"] * theirs)):
                sums[key] += float(value)
    print(json.dumps({"batches": len(batches), **{k: v / len(batches) for k, v in sums.items()}}), flush=True)


def train(args, config, section):
    if "WORLD_SIZE" not in os.environ:
        fail("run under torchrun: torchrun --nproc_per_node N scripts/continue_fsdp.py ... (or --eval-only for one process)")
    cuda = torch.cuda.is_available()
    dist.init_process_group("nccl" if cuda else "gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    device = torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0))) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    say = (lambda line: print(line, file=sys.stderr, flush=True)) if rank == 0 else (lambda line: None)
    if args.batch % world != 0:
        fail(f"--batch {args.batch} does not divide among {world} processes")
    local = args.batch // world

    corpus, text, same = find_corpus(args, section)
    if not same:
        say(f"continue_fsdp: {corpus} is not the corpus the run was trained on (its sha256 differs); continuing on it")
    train_split, _ = split(encode(args.source / "tokenizer.json", text))
    context = config["max_position_embeddings"]
    for note in not_reproduced(section):
        say(f"continue_fsdp: {note}")

    model = load_model(args.source, section, device)
    if args.parallel == "fsdp":
        from torch.distributed.device_mesh import init_device_mesh
        from torch.distributed.fsdp import fully_shard

        mesh = init_device_mesh(device.type, (world,))
        for layer in model.model.layers:
            fully_shard(layer, mesh=mesh)
        fully_shard(model, mesh=mesh)  # the embedding, tied to the head, and the final norm
        wrapped = model
    else:
        from torch.nn.parallel import DistributedDataParallel

        wrapped = DistributedDataParallel(model, device_ids=[device.index] if cuda else None)
    model.train()
    held = sum(p.to_local().numel() if hasattr(p, "to_local") else p.numel() for p in model.parameters())
    total = sum(p.numel() for p in model.parameters())
    say(f"continue_fsdp: {world} processes ({'nccl' if cuda else 'gloo'}), {args.parallel}: rank 0 holds {held} of the "
        f"{total} parameters; {args.steps} steps of {args.batch}×{context} tokens from the training split "
        f"({len(train_split)} tokens) of {corpus}")

    trainable = [p for p in wrapped.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW([
        {"params": [p for p in trainable if p.dim() >= 2], "weight_decay": args.weight_decay},  # matrices decay, as ours
        {"params": [p for p in trainable if p.dim() < 2], "weight_decay": 0.0},
    ], lr=args.lr, betas=(args.beta1, args.beta2), eps=1e-8)
    objective = switchyard_objective(config, section)
    generator = torch.Generator().manual_seed(args.seed)  # every process draws the whole batch and keeps its rows
    torch.manual_seed(args.seed + 1 + rank)  # the router jitter: each process its own noise
    for step in range(args.steps):
        inputs, targets = draw_batch(train_split, args.batch, context, generator)
        if step == 0 and rank == 0:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / "first-batch.json").write_text(json.dumps(batches_json([(inputs, targets)])) + "\n")
        rows = slice(rank * local, (rank + 1) * local)
        ce, aux, z, _ = losses(wrapped, inputs[rows].to(device), targets[rows].to(device), objective, distributed=True)
        loss = ce + aux + z
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        # Every process's loss has the same aux term (of the whole batch) and its own rows' cross-entropy and z-loss;
        # FSDP and DDP average the gradients, which gives the gradient of the whole batch's loss.
        norm = torch.nn.utils.clip_grad_norm_(trainable, args.grad_clip if args.grad_clip > 0 else float("inf"))
        norm = norm.full_tensor() if hasattr(norm, "full_tensor") else norm
        if not torch.isfinite(norm):
            fail(f"the gradient norm is {float(norm)} at step {step}; training diverged")
        lr = learning_rate(args, step)
        for g in optimizer.param_groups:
            g["lr"] = lr
        optimizer.step()
        report = torch.stack([ce.detach(), z.detach()]).float()
        dist.all_reduce(report)
        ce_mean, z_mean = (report / world).tolist()
        aux_value = float(aux.detach())
        if rank == 0:
            print(json.dumps({"step": step + 1, "loss": ce_mean + aux_value + z_mean, "cross_entropy": ce_mean,
                              "aux_loss": aux_value, "z_loss": z_mean, "lr": lr, "grad_norm": float(norm)}), flush=True)

    save(args, wrapped, model, section, corpus, text, same, rank)
    dist.barrier()
    dist.destroy_process_group()


def save(args, wrapped, model, section, corpus, text, same, rank):
    """Gathers the full weights on rank 0 and writes the folder: save_pretrained (transformers writes the experts back
    under per-expert keys), the tokenizer files, and the switchyard section with the corpus re-pointed at --out."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(wrapped, options=StateDictOptions(full_state_dict=True, cpu_offload=True))  # collective
    if rank != 0:
        return
    if section.get("data", {}).get("path") is None and same:
        data = section.get("data")
    else:
        data = {"name": corpus.name, "path": os.path.relpath(corpus.resolve(), args.out.resolve()), "sha256": sha256(text)}
    model.config.switchyard = {**section, **({"data": data} if data else {})}
    model.save_pretrained(args.out, state_dict=state)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copyfile(args.source / name, args.out / name)
    print(f"continue_fsdp: wrote {args.out} (switchyard import --from {args.out} --out RUN reads it back)", file=sys.stderr)


def main(argv=None):
    args, config, section = parse_args(argv)
    if args.eval_only:
        evaluate(args, config, section)
    else:
        train(args, config, section)


if __name__ == "__main__":
    main()
