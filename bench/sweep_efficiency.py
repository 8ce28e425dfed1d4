"""Sweep efficiency: how close launchbay's ``bayes`` gets to a function's optimum in few trials, against W&B's engine.

Engines (``sweep_engines.py``): launchbay's ``bayes`` and ``random`` through the sweep driver's
own study code on a real redis-server, and W&B's engine (PyPI ``sweeps``, what ``wandb sweep``
runs). Functions (``sweep_functions.py``): Branin (2-D), a log-scale learning rate (2-D),
Hartmann-6 (6-D), a mixed categorical/integer space (5 parameters) and a noisy Branin. Each seed
runs one sweep of the largest cap per engine, function and ``max_parallel`` (1, and 4 at a time);
a smaller cap is its first trials (none of the engines reads the cap: a 12-trial sweep *is* the
first 12 trials of a 60-trial one, seed for seed; ``--check-prefix`` runs both and compares).

A cell is a function, a cap and a ``max_parallel``. Success: the trial a sweep reports as best is,
in truth, within 1% of the function's range above its optimum. Verdict: PASS when launchbay's
successes are at least W&B's minus one and its median best is at most W&B's plus 1% of the range.
Suggestion time: each engine's time per ``ask`` at trials 49-60 (launchbay's includes its Redis
round trips); bayes passes under 100 ms (median).

    .venv-bench/bin/python bench/sweep_efficiency.py [--seeds 20] [--quick] [--jobs 2] [--json]

W&B's engine lives in its own virtual environment (``bench/setup-wandb``), never launchbay's:
run by another interpreter, this script runs itself again with ``.venv-bench/bin/python``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from _common import REPO_ROOT, RedisServer, Row, emit
from sweep_engines import ENGINES, one, wandb_sweeps
from sweep_functions import functions

BENCH_PYTHON = REPO_ROOT / ".venv-bench" / "bin" / "python"
SUGGEST_TARGET_MS = 100.0
PARALLEL = [1, 4]  # max_parallel values (--parallel)
_conn: Any = None


def _worker(url: str) -> None:
    import redis

    global _conn
    _conn = redis.Redis.from_url(url)


def _task(job: Tuple[str, str, int, int, int]) -> Tuple[Tuple[str, str, int, int, int], Dict[str, Any]]:
    engine, name, cap, parallel, seed = job
    return job, one(engine, _conn, functions()[name], cap, parallel, seed)


def measure(names: List[str], caps: List[int], seeds: int, jobs: int, check_prefix: bool,
            done_before: Dict[str, Any], save: Optional[Path]) -> Dict[str, Any]:  # fmt: skip
    """Every engine's sweeps: ``{"engine/function/parallel/cap/seed": one()}`` at the largest cap
    (those in ``done_before``, from an earlier run of the same code, are not run again)."""
    top = max(caps)
    work = [(e, n, top, p, s) for n in names for p in PARALLEL for s in range(seeds) for e in ENGINES]
    if check_prefix:  # the same sweeps at the smallest cap, to compare with the largest's first trials
        work += [(e, n, min(caps), p, 0) for n in names for p in PARALLEL for e in ENGINES]
    out: Dict[str, Any] = {key: done_before[key] for key in map(_key, work) if key in done_before}
    work = [job for job in work if _key(job) not in out]
    with RedisServer() as server:
        if jobs <= 1:
            _worker(server.url)
            done = map(_task, work)
        else:
            pool = ProcessPoolExecutor(jobs, initializer=_worker, initargs=(server.url,))
            done = pool.map(_task, work, chunksize=1)
        for count, (job, result) in enumerate(done, 1):
            out[_key(job)] = result
            if count % 30 == 0 or count == len(work):
                print(f"{count}/{len(work)} sweeps", file=sys.stderr, flush=True)
                if save:
                    save.write_text(json.dumps(out))
        if jobs > 1:
            pool.shutdown()
    return out


def _key(job: Tuple[str, str, int, int, int]) -> str:
    engine, name, cap, parallel, seed = job
    return f"{engine}/{name}/{parallel}/{cap}/{seed}"


def best_at(sweep: Dict[str, Any], cap: int) -> float:
    reported, true = sweep["reported"][:cap], sweep["true"][:cap]
    return true[min(range(cap), key=reported.__getitem__)]


def cells(runs: Dict[str, Any], names: List[str], caps: List[int], seeds: int) -> List[Dict[str, Any]]:
    fns, top, out = functions(), max(caps), []
    for name in names:
        for parallel in PARALLEL:
            for cap in caps:
                bests = {
                    e: [best_at(runs[f"{e}/{name}/{parallel}/{top}/{s}"], cap) for s in range(seeds)] for e in ENGINES
                }
                out.append(_cell(fns[name], cap, parallel, bests))
    return out


def _cell(fn: Any, cap: int, parallel: int, bests: Dict[str, List[float]]) -> Dict[str, Any]:
    lb, wb = bests["launchbay-bayes"], bests["wandb-bayes"]
    tie = 1e-6 * fn.range
    cell = {"function": fn.name, "cap": cap, "parallel": parallel, "range": fn.range, "optimum": fn.optimum,
            "bests": bests, "paired": {"better": sum(a < b - tie for a, b in zip(lb, wb)),
                                       "equal": sum(abs(a - b) <= tie for a, b in zip(lb, wb)),
                                       "worse": sum(a > b + tie for a, b in zip(lb, wb))}}  # fmt: skip
    cell["successes"] = {e: sum(fn.success(v) for v in values) for e, values in bests.items()}
    cell["median"] = {e: statistics.median(values) for e, values in bests.items()}
    cell["passed"] = (
        cell["successes"]["launchbay-bayes"] >= cell["successes"]["wandb-bayes"] - 1
        and cell["median"]["launchbay-bayes"] <= cell["median"]["wandb-bayes"] + 0.01 * fn.range
    )
    return cell


def suggest_times(runs: Dict[str, Any], top: int) -> Dict[str, List[float]]:
    """Per engine, each sweep's median time per suggestion over its last 12 (trials 49-60 at cap 60)."""
    out: Dict[str, List[float]] = {e: [] for e in ENGINES}
    for key, sweep in runs.items():
        engine, _name, _parallel, cap, _seed = key.split("/")
        if int(cap) == top:
            out[engine].append(statistics.median(sweep["suggest_ms"][-12:]))
    return out


def prefix_mismatches(runs: Dict[str, Any], caps: List[int]) -> List[str]:
    low, top = min(caps), max(caps)
    return [key for key, sweep in runs.items() if key.split("/")[3] == str(low) and low != top
            and sweep["true"] != runs[key.rsplit("/", 2)[0] + f"/{top}/0"]["true"][:low]]  # fmt: skip


def rows(result: Dict[str, Any]) -> List[Row]:
    out = []
    n = result["seeds"]
    for cell in result["cells"]:
        s, m, p = cell["successes"], cell["median"], cell["paired"]
        note = (f"successes of {n}: launchbay {s['launchbay-bayes']}, W&B {s['wandb-bayes']}, random "
                f"{s['launchbay-random']}; median best {m['launchbay-bayes']:.4g} / {m['wandb-bayes']:.4g} / "
                f"{m['launchbay-random']:.4g} (optimum {cell['optimum']:.4g}, 1% of range {0.01 * cell['range']:.3g}); "
                f"paired by seed, launchbay better {p['better']}, equal {p['equal']}, worse {p['worse']}")  # fmt: skip
        row = Row(f"sweep best: {cell['function']}, {cell['cap']} trials, {cell['parallel']} at a time",
                  cell["bests"]["launchbay-bayes"], baseline=m["wandb-bayes"], target="successes >= W&B's - 1",
                  judged=s["launchbay-bayes"], passed=cell["passed"], note=note)  # fmt: skip
        out.append(row)
    for engine, values in result["suggest_ms"].items():
        last = f"{max(result['caps']) - 11}-{max(result['caps'])}"
        row = Row(f"sweep suggestion at trials {last} (ms): {engine}", values, note="median of each sweep's last 12")
        if engine == "launchbay-bayes":
            row.target, row.judged = f"median < {SUGGEST_TARGET_MS:g} ms", row.median
            row.passed = row.median < SUGGEST_TARGET_MS
        out.append(row)
    if result.get("prefix_mismatches") is not None:
        bad = result["prefix_mismatches"]
        out.append(Row("sweep prefix check: cap-12 sweeps that differ from a cap-60 sweep's first 12", [len(bad)],
                       target="0", judged=len(bad), passed=not bad, note=", ".join(bad)))  # fmt: skip
    return out


def _reexec_in_bench_venv() -> Optional[str]:
    """None when W&B's engine imports here; else runs this script again in .venv-bench (or says why not)."""
    try:
        wandb_sweeps()
        return None
    except ImportError:
        pass
    in_bench_venv = os.path.realpath(sys.prefix) == os.path.realpath(BENCH_PYTHON.parent.parent)
    if not BENCH_PYTHON.exists() and not in_bench_venv:
        # The first run makes it (a minute, from PyPI), as scripts/test makes .venv: no step to remember.
        print("making .venv-bench with W&B's engine (bench/setup-wandb) ...", file=sys.stderr, flush=True)
        made = subprocess.run(["bash", str(REPO_ROOT / "bench" / "setup-wandb")], stdout=sys.stderr, timeout=900)
        if made.returncode != 0:
            return "W&B's engine (PyPI sweeps) could not be installed: bench/setup-wandb failed (see above)"
    if BENCH_PYTHON.exists() and not in_bench_venv:
        os.execv(str(BENCH_PYTHON), [str(BENCH_PYTHON), __file__, *sys.argv[1:]])
    return "W&B's engine (PyPI sweeps) is not installed: run bench/setup-wandb (it makes .venv-bench)"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, help="seeds per cell (default 20, 4 with --quick)")
    parser.add_argument(
        "--functions", nargs="+", choices=sorted(functions()), help="default: all (--quick: branin loglr)"
    )
    parser.add_argument("--caps", nargs="+", type=int, help="run caps (default 12 30 60; --quick: 12)")
    parser.add_argument("--jobs", type=int, default=1, help="worker processes (default 1)")
    parser.add_argument("--check-prefix", action="store_true", help="also run seed 0 at the smallest cap and compare")
    parser.add_argument("--quick", action="store_true", help="2 functions, 12 trials, 4 seeds")
    parser.add_argument("--parallel", type=int, nargs="+", choices=[1, 4], help="max_parallel (default: 1 and 4)")
    parser.add_argument("--save", type=Path, help="write every sweep's trials here as they finish (JSON)")
    parser.add_argument(
        "--reuse", type=Path, nargs="+", default=[], help="sweeps --save wrote (same code): not run again"
    )
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    why = _reexec_in_bench_venv()
    if why:
        print(why, file=sys.stderr)
        sys.exit(2)
    seeds = options.seeds or (4 if options.quick else 20)
    names = options.functions or (["branin", "loglr"] if options.quick else list(functions()))
    caps = sorted(options.caps or ([12] if options.quick else [12, 30, 60]))
    if seeds < 1 or min(caps) < 1:
        parser.error("--seeds and --caps must be positive")
    began = time.monotonic()
    PARALLEL[:] = options.parallel or PARALLEL
    done_before: Dict[str, Any] = {}
    for path in options.reuse:
        done_before.update(json.loads(path.read_text()))
    runs = measure(names, caps, seeds, options.jobs, options.check_prefix, done_before, options.save)
    if options.save:
        options.save.write_text(json.dumps(runs))
    result: Dict[str, Any] = {"seeds": seeds, "functions": names, "caps": caps,
                              "cells": cells(runs, names, caps, seeds), "suggest_ms": suggest_times(runs, max(caps))}  # fmt: skip
    if options.check_prefix:
        result["prefix_mismatches"] = prefix_mismatches(runs, caps)
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    title = f"Sweep efficiency, {seeds} seeds, caps {caps}, launchbay bayes vs W&B's engine and random"
    emit(rows(result), result, options.json, title)


if __name__ == "__main__":
    main()
