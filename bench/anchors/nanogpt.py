"""nanoGPT's Shakespeare-char CPU run in plain PyTorch: the anchor for `npm run bench:train`.

The run nanoGPT's README gives for a CPU (train.py config/train_shakespeare_char.py --device=cpu
--compile=False --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4
--n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0), written afresh in
the style of its model.py: a GPT with bias-free LayerNorm and Linears, learned positions, a 4×
GELU MLP, causal attention through F.scaled_dot_product_attention, the embedding tied to the
output head, N(0, 0.02) weights with the residual projections at 0.02/sqrt(2·n_layer); AdamW
(betas 0.9, 0.99; weight decay 0.1 on 2-D parameters only; torch's default, unfused, loop, as
nanoGPT gets on a CPU), warm-up over 100 steps then cosine from 1e-3 to 1e-4 at the last step,
gradient clipping at 1.0; batches of 12 × 64 characters at random offsets of the 90% train split.
Its modules are built and initialised in nanoGPT's order, so with the same seed it draws the same
random numbers (docs/anchors.md compares the two).

Prints a JSON line per evaluation (step 0, every 250 steps and the last: step, train_loss and
val_loss, each the mean of 20 batches, and elapsed_s, the training time before that evaluation),
then one with wall_s (the whole loop, evaluations included), steps, threads, params and torch's version.
"""
import argparse
import json
import math
import os
import time

import common  # first: it sets up OpenMP before torch loads
import torch
import torch.nn as nn
import torch.nn.functional as F

N_LAYER, N_HEAD, N_EMBD, BLOCK, BATCH = 4, 4, 128, 64, 12
LR, MIN_LR, WARMUP, BETAS, WEIGHT_DECAY, GRAD_CLIP = 1e-3, 1e-4, 100, (0.9, 0.99), 0.1, 1.0
EVAL_EVERY, EVAL_BATCHES, SEED = 250, 20, 1337


class LayerNorm(nn.Module):
    """LayerNorm with a gain and no bias (nn.LayerNorm had no bias=False when nanoGPT was written)."""

    def __init__(self, n):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(n))

    def forward(self, x):
        return F.layer_norm(x, (x.shape[-1],), self.weight, None, 1e-5)


class Attention(nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = nn.Linear(N_EMBD, 3 * N_EMBD, bias=False)
        self.proj = nn.Linear(N_EMBD, N_EMBD, bias=False)

    def forward(self, x):
        B, T, C = x.shape
        heads = lambda t: t.view(B, T, N_HEAD, C // N_HEAD).transpose(1, 2)
        q, k, v = (heads(t) for t in self.qkv(x).split(C, dim=2))
        y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.proj(y.transpose(1, 2).contiguous().view(B, T, C))


class Block(nn.Module):
    def __init__(self):
        super().__init__()
        self.ln_1, self.attn, self.ln_2 = LayerNorm(N_EMBD), Attention(), LayerNorm(N_EMBD)
        self.fc, self.proj = nn.Linear(N_EMBD, 4 * N_EMBD, bias=False), nn.Linear(4 * N_EMBD, N_EMBD, bias=False)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.proj(F.gelu(self.fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, vocab):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, N_EMBD), nn.Embedding(BLOCK, N_EMBD)
        self.blocks = nn.ModuleList(Block() for _ in range(N_LAYER))
        self.ln_f = LayerNorm(N_EMBD)
        self.head = nn.Linear(N_EMBD, vocab, bias=False)
        self.tok.weight = self.head.weight
        self.apply(self._init)
        for name, p in self.named_parameters():
            if name.endswith("proj.weight"):  # the projections back into the residual stream
                nn.init.normal_(p, std=0.02 / math.sqrt(2 * N_LAYER))

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)

    def forward(self, idx, targets):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1]))
        for block in self.blocks:
            x = block(x)
        logits = self.head(self.ln_f(x))
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def lr_at(step, steps):
    if step < WARMUP:
        return LR * (step + 1) / (WARMUP + 1)
    return MIN_LR + 0.5 * (1 + math.cos(math.pi * min(1.0, (step - WARMUP) / (steps - WARMUP)))) * (LR - MIN_LR)


def main():
    default_data = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "data", "tinyshakespeare.txt")
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000, help="training steps (default 2000)")
    p.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    p.add_argument("--data", default=default_data, help="a UTF-8 text (default: the repository's data/tinyshakespeare.txt)")
    args = p.parse_args()
    if args.steps < 1:
        p.error(f"--steps must be at least 1, got {args.steps}")
    common.set_threads(args.threads)
    torch.manual_seed(SEED)

    with open(args.data, encoding="utf-8") as f:
        text = f.read()
    chars = sorted(set(text))
    code = {c: i for i, c in enumerate(chars)}
    data = torch.tensor([code[c] for c in text], dtype=torch.long)
    split = {"train": data[:int(len(data) * 0.9)], "val": data[int(len(data) * 0.9):]}

    def batch(name):
        d = split[name]
        starts = torch.randint(len(d) - BLOCK, (BATCH,))
        return torch.stack([d[i:i + BLOCK] for i in starts]), torch.stack([d[i + 1:i + 1 + BLOCK] for i in starts])

    model = GPT(len(chars))
    params = list(model.parameters())  # the tied weight once
    optimizer = torch.optim.AdamW([
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": WEIGHT_DECAY},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ], lr=LR, betas=BETAS)

    @torch.no_grad()
    def evaluate():
        model.eval()
        losses = {name: sum(model(*batch(name)).item() for _ in range(EVAL_BATCHES)) / EVAL_BATCHES for name in ("train", "val")}
        model.train()
        return losses

    x, y = batch("train")
    began = time.perf_counter()
    for step in range(args.steps + 1):
        if step % EVAL_EVERY == 0 or step == args.steps:
            elapsed = time.perf_counter() - began
            losses = evaluate()
            print(json.dumps({"step": step, "train_loss": losses["train"], "val_loss": losses["val"], "elapsed_s": elapsed}), flush=True)
        if step == args.steps:
            break
        for group in optimizer.param_groups:
            group["lr"] = lr_at(step, args.steps)
        loss = model(x, y)
        x, y = batch("train")  # drawn where nanoGPT draws it, between forward and backward
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, GRAD_CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    print(json.dumps({"wall_s": time.perf_counter() - began, "steps": args.steps, "threads": args.threads,
                      "params": sum(p.numel() for p in params), "torch": torch.__version__}))


if __name__ == "__main__":
    main()
