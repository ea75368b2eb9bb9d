"""PyTorch's float32 GEMM GFLOP/s, the anchor for `npm run bench:kernels`.

Prints one JSON object per line, one per shape and form, with the fields of our rows
(bench/suites.ts measureGemm): backend "pytorch", form, m, k, n, threads, gflops (from the mean
call time), gflops_best (from the fastest sample), ms, samples; and torch's version.

Forms as our kernels name them, C[m×n] = op(A)·op(B): nn A[m×k]·B[k×n]; nt A·B[n×k]ᵀ; tn
A[k×m]ᵀ·B. The transposes are views, so torch.mm hands MKL the transpose flag, as a PyTorch
user's `x @ w.T` does; `out=` writes into a preallocated C, as our kernels do.
"""
import argparse
import time
import json

import common  # first: it sets up OpenMP before torch loads
import torch

FORMS = ("nn", "nt", "tn")


def operands(form, m, k, n, g):
    a = torch.randn(m, k, generator=g) if form[0] == "n" else torch.randn(k, m, generator=g).t()
    b = torch.randn(k, n, generator=g) if form[1] == "n" else torch.randn(n, k, generator=g).t()
    return a, b


def shape(text):
    try:
        m, k, n = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a shape m×k×n such as 512x512x512")
    return m, k, n


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--shapes", type=lambda s: [shape(x) for x in s.split(",")], default=[(512, 512, 512)],
                   help="comma-separated m×k×n, e.g. 512x512x512,640x512x2048 (default 512x512x512)")
    p.add_argument("--forms", type=lambda s: s.split(","), default=list(FORMS), help="comma-separated of nn, nt, tn (default all)")
    p.add_argument("--max-time", type=float, default=1.0, help="seconds of timed samples per shape and form (default 1)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default 1, as our kernel rows)")
    p.add_argument("--cpu-time", action="store_true", help="time by process CPU time, as bench:kernels --cpu-time does")
    args = p.parse_args()
    for form in args.forms:
        if form not in FORMS:
            p.error(f"unknown form '{form}' (use {', '.join(FORMS)})")
    common.set_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    for m, k, n in args.shapes:
        for form in args.forms:
            a, b = operands(form, m, k, n, g)
            c = torch.empty(m, n)
            clock = time.process_time if args.cpu_time else time.perf_counter
            mean, best, samples = common.time_calls(lambda: torch.mm(a, b, out=c), args.max_time, clock=clock)
            flop = 2 * m * n * k
            print(json.dumps({
                "suite": "kernels", "backend": "pytorch", "form": form, "m": m, "k": k, "n": n, "threads": args.threads,
                "gflops": flop / mean / 1e9, "gflops_best": flop / best / 1e9, "ms": mean * 1e3, "samples": samples,
                "torch": torch.__version__, "clock": "cpu" if args.cpu_time else "wall",
            }), flush=True)


if __name__ == "__main__":
    main()
