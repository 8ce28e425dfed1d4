"""Metrics: what following a job's ``metrics.jsonl`` of 100,000 steps costs the agent and Redis.

A writer thread appends 100,000 steps in the contract's shape (``_step``, ``_timestamp``,
``_runtime`` and three keys, about 120 bytes a line) to a file in 1,000-step bursts, while the
agent's own :class:`~launchbay.metric_stream.follower.JobMetrics` follows it (polling every second, as in
the agent) and then reads the rest at the job's end; all against a private Redis. Two settings:
the agent's default caps (20,000 steps, 8 MiB: the stream is cut short) and caps above the job's
output (every step kept). Figures per setting: the agent's CPU time (this process, minus the
writer's, which is measured alone first), the stream's Redis memory (``MEMORY USAGE``) and the
wall time from the first line to the end.

Baseline, in the same run: the same lines XADDed with no checks in 500-entry pipelines, the least
any agent could spend to put them in Redis. Judged: agent CPU <= 3 x baseline with every step
kept; the default caps hold (entries, bytes, one truncated entry).

    .venv/bin/python bench/metrics_stream.py [--steps 100000] [--runs 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Dict, List

import redis
from _common import RedisServer, Row, at_most, emit, median, ratio
from launchbay.agent.settings import DEFAULT_METRICS_CAP_BYTES, DEFAULT_METRICS_CAP_ENTRIES
from launchbay.metric_stream.follower import JobMetrics

CPU_RATIO_TARGET = 3.0
BURST = 1000


def lines(steps: int) -> List[str]:
    return [
        json.dumps({"_step": n, "_timestamp": 1.7e9 + n, "_runtime": n * 0.01, "loss": 1 / (n + 1),
                    "train/acc": n / steps, "lr": 0.001}) + "\n"
        for n in range(steps)
    ]  # fmt: skip


def write(path: Path, data: List[str]) -> None:
    with open(path, "a") as handle:
        for start in range(0, len(data), BURST):
            handle.write("".join(data[start : start + BURST]))
            handle.flush()


def follow_once(conn: redis.Redis, data: List[str], caps: Dict[str, int], key: str) -> Dict[str, float]:
    conn.delete(key)
    with tempfile.TemporaryDirectory() as folder:
        output = Path(folder)
        stream = JobMetrics(conn, key, **caps)
        began_cpu, began = time.process_time(), time.monotonic()
        stream.start(output, resume=False)
        writer = threading.Thread(target=write, args=(output / "metrics.jsonl", data))
        writer.start()
        writer.join()
        stream.finish(output)
        return {
            "cpu_s": time.process_time() - began_cpu,
            "wall_s": time.monotonic() - began,
            "entries": conn.xlen(key),
            "memory_bytes": conn.memory_usage(key) or 0,
            "truncated": float(stream.truncated),
            "bytes": stream.bytes,
        }


def writer_cpu(data: List[str]) -> float:
    with tempfile.TemporaryDirectory() as folder:
        began = time.process_time()
        write(Path(folder) / "metrics.jsonl", data)
        return time.process_time() - began


def baseline_cpu(conn: redis.Redis, data: List[str], key: str) -> float:
    conn.delete(key)
    began = time.process_time()
    for start in range(0, len(data), 500):
        with conn.pipeline(transaction=True) as pipe:
            for line in data[start : start + 500]:
                pipe.xadd(key, {"m": line.rstrip("\n")})
            pipe.execute()
    return time.process_time() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    data = lines(args.steps)
    default_caps = {"cap_entries": DEFAULT_METRICS_CAP_ENTRIES, "cap_bytes": DEFAULT_METRICS_CAP_BYTES}
    open_caps = {"cap_entries": args.steps + 1, "cap_bytes": 1 << 30}
    with RedisServer() as server:
        conn = redis.Redis.from_url(server.url)
        runs: Dict[str, List[Dict[str, float]]] = {"default": [], "open": []}
        base, write_cost = [], []
        for _ in range(args.runs):
            write_cost.append(writer_cpu(data))
            base.append(baseline_cpu(conn, data, "bench:baseline"))
            runs["open"].append(follow_once(conn, data, open_caps, "bench:open"))
            runs["default"].append(follow_once(conn, data, default_caps, "bench:default"))
    rows = _rows(runs, base, median(write_cost), args.steps)
    emit(rows, {"steps": args.steps, "runs": runs, "baseline_cpu_s": base}, args.json, "metrics stream")


def _rows(runs: Dict[str, List[Dict[str, float]]], base: List[float], write_s: float, steps: int) -> List[Row]:
    def column(name: str, field: str) -> List[float]:
        return [r[field] for r in runs[name]]

    agent_cpu = [c - write_s for c in column("open", "cpu_s")]
    rows = [
        Row(f"XADD {steps} lines, no checks: CPU (s)", base, note="baseline"),
        at_most(
            f"agent CPU, {steps} steps all kept (s)", agent_cpu, CPU_RATIO_TARGET,
            baseline=median(base), ratio=ratio(median(agent_cpu), median(base)), target=f"<= {CPU_RATIO_TARGET:g} x baseline",
            note=f"writer's own CPU ({write_s:.3f} s) subtracted; wall {median(column('open', 'wall_s')):.2f} s",
        ),
        Row(f"Redis memory, {steps} steps all kept (MB)", [m / 1e6 for m in column("open", "memory_bytes")]),
        Row(
            "agent CPU, default caps (s)", [c - write_s for c in column("default", "cpu_s")],
            note=f"wall {median(column('default', 'wall_s')):.2f} s; the rest of the file is never read",
        ),
        at_most(
            "stream entries, default caps", column("default", "entries"), DEFAULT_METRICS_CAP_ENTRIES + 1,
            target=f"<= {DEFAULT_METRICS_CAP_ENTRIES} + 1 truncated", judged=max(column("default", "entries")),
        ),
        at_most(
            "Redis memory, default caps (MB)", [m / 1e6 for m in column("default", "memory_bytes")],
            DEFAULT_METRICS_CAP_BYTES * 1.5 / 1e6, target="<= 1.5 x metrics_cap",
            judged=max(column("default", "memory_bytes")) / 1e6,
        ),
    ]  # fmt: skip
    return rows


if __name__ == "__main__":
    main()
