"""What the anchor scripts share: the OpenMP set-up, the thread count and the timing loop.

Import this before torch: OpenMP reads OMP_WAIT_POLICY once, when torch loads it.
"""
import math
import os
import time

# Idle OpenMP threads sleep instead of spinning: a spinning thread holds a core that the other
# side's run (or the next process) needs, which skews whatever is measured next on a 2-core host.
os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

import torch  # noqa: E402  (after the environment is set)

MIN_SAMPLE_S = 0.05


def set_threads(threads):
    if threads < 1:
        raise SystemExit(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(threads)


def time_calls(fn, max_time, min_samples=5, warmup=2, clock=time.perf_counter):
    """Seconds per call of `fn`, timed as bench/suites.ts times ours with Benchmark.js: untimed
    warm-up calls, then samples of enough calls to last MIN_SAMPLE_S each, until `max_time` is
    spent and at least `min_samples` are taken. Returns the mean over the samples, the fastest
    sample (other tenants slow this machine in phases) and the number of samples. `clock`:
    time.process_time measures CPU time instead, which a neighbour on the core does not inflate
    (meaningful on one thread)."""
    for _ in range(warmup):
        fn()
    start = clock()
    fn()
    reps = max(1, math.ceil(MIN_SAMPLE_S / max(clock() - start, 1e-9)))
    samples = []
    until = clock() + max_time
    while len(samples) < min_samples or clock() < until:
        start = clock()
        for _ in range(reps):
            fn()
        samples.append((clock() - start) / reps)
    return sum(samples) / len(samples), min(samples), len(samples)
