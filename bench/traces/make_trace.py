"""Write a packing trace: Poisson arrivals of GPU jobs at a chosen multiple of one host's capacity.

The default is the trace ``bench/simulate.py`` judges (``seed7-500.csv`` here): 500 jobs, seed 7,
GPUs 1/2/4/8 with probability .5/.25/.15/.10, 8 CPUs and 32 GiB per GPU, runtimes lognormal with
median 600 s and sigma 1 (whole seconds, at least 1), ``max_runtime`` = 2 x runtime, arrivals at
1.2 x the capacity of an 8-GPU host. The arrival rate comes from the distribution's expected GPU
time per job (E[gpus] x median x exp(sigma^2 / 2)), not from the sample.

    .venv/bin/python bench/traces/make_trace.py [--jobs 500] [--seed 7] [--load 1.2] [OUT.csv]
"""

from __future__ import annotations

import argparse
import csv
import math
import random
import sys
from pathlib import Path
from typing import TextIO

COLUMNS = ("job_id", "submit_s", "gpus", "cpus", "memory_gib", "runtime_s", "max_runtime_s")
GPU_CHOICES = (1, 2, 4, 8)
GPU_WEIGHTS = (0.50, 0.25, 0.15, 0.10)
CPUS_PER_GPU = 8
MEMORY_GIB_PER_GPU = 32
RUNTIME_MEDIAN_S = 600.0
RUNTIME_SIGMA = 1.0
HOST_GPUS = 8


def make_trace(jobs: int, seed: int, load: float) -> list:
    rng = random.Random(seed)
    mean_gpus = sum(g * w for g, w in zip(GPU_CHOICES, GPU_WEIGHTS))
    mean_runtime_s = RUNTIME_MEDIAN_S * math.exp(RUNTIME_SIGMA**2 / 2)
    arrivals_per_s = load * HOST_GPUS / (mean_gpus * mean_runtime_s)
    rows, now = [], 0.0
    for index in range(jobs):
        now += rng.expovariate(arrivals_per_s)
        gpus = rng.choices(GPU_CHOICES, GPU_WEIGHTS)[0]
        runtime_s = max(1, round(rng.lognormvariate(math.log(RUNTIME_MEDIAN_S), RUNTIME_SIGMA)))
        rows.append(
            {
                "job_id": f"j{index:04d}",
                "submit_s": round(now, 1),
                "gpus": gpus,
                "cpus": gpus * CPUS_PER_GPU,
                "memory_gib": gpus * MEMORY_GIB_PER_GPU,
                "runtime_s": runtime_s,
                "max_runtime_s": 2 * runtime_s,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="CSV file to write (default: stdout)")
    parser.add_argument("--jobs", type=int, default=500)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--load", type=float, default=1.2, help="offered GPU load as a multiple of one host")
    options = parser.parse_args()
    rows = make_trace(options.jobs, options.seed, options.load)
    if not options.out:
        write(rows, sys.stdout)
        return
    with Path(options.out).open("w", newline="") as out:
        write(rows, out)


def write(rows: list, out: TextIO) -> None:
    writer = csv.DictWriter(out, fieldnames=COLUMNS)
    writer.writeheader()
    writer.writerows(rows)


if __name__ == "__main__":
    main()
