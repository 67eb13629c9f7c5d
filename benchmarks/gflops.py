#!/usr/bin/env python3
"""This machine's speed, the figure the book's time budget is stated against.

float32 1024x1024 matrix product, median of 15 runs after three warm-up runs, with one
thread and with two. The budget is stated for a machine that does 55 GFLOP/s on one
thread (the slowest of this kind seen): a notebook that takes t seconds on one thread
here takes about t * (this machine's one-thread figure / 55) seconds there.

It also says how many single-threaded jobs the machine runs well side by side: one per
core, or one in all where a second thread adds little (make test and make book use it).

Usage: python benchmarks/gflops.py [--json FILE] [--jobs-file FILE]   (make test prints it at its start)
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch

#: One-thread float32 matmul throughput (GFLOP/s) of the slowest machine the budget is for.
REFERENCE_GFLOPS = 55.0


def gflops(threads: int, n: int = 1024, runs: int = 15) -> float:
    """Median float32 ``n x n`` matmul throughput in GFLOP/s with ``threads`` threads."""
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        a, b = torch.randn(n, n), torch.randn(n, n)
        for _ in range(3):
            a @ b
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
    finally:
        torch.set_num_threads(before)
    times.sort()
    return 2 * n**3 / times[len(times) // 2] / 1e9


def parallel_jobs(one: float, two: float, cores: int) -> int:
    """How many single-threaded jobs to run side by side: one per core, unless a second
    thread adds less than half a core's speed (a second core that is a busy or shared
    one), where two jobs would only take turns and each would run twice as long."""
    return cores if cores > 1 and two >= 1.5 * one else 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="FILE", help="also write the figures to FILE")
    parser.add_argument("--jobs-file", metavar="FILE",
                        help="write the number of jobs to run side by side (see parallel_jobs) to FILE")
    args = parser.parse_args()
    one, two = gflops(1), gflops(2)
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    jobs = parallel_jobs(one, two, cores)
    print(f"machine speed: float32 matmul 1024x1024 at {one:.1f} GFLOP/s on 1 thread, {two:.1f} on 2; "
          f"times here x {one / REFERENCE_GFLOPS:.2f} = times on the {REFERENCE_GFLOPS:.0f} GFLOP/s reference; "
          f"{cores} core(s) to use, {jobs} job(s) side by side")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"gflops_1_thread": one, "gflops_2_threads": two, "reference_gflops": REFERENCE_GFLOPS,
                       "cores": cores, "jobs": jobs}, f)
    if args.jobs_file:
        with open(args.jobs_file, "w") as f:
            f.write(f"{jobs}\n")


if __name__ == "__main__":
    main()
