"""Sweep trials: what a sweep's driver adds between one trial's end and the next trial's start.

A real ``launchbay agent`` serves one queue; its ``sweeps`` thread drives the sweeps. Each trial
is a real container that writes one line to ``$LAUNCHBAY_OUTPUT_DIR/metrics.jsonl`` and exits.
Rounds alternate (the order rotates every round, so a noisy machine hurts both alike):

- sweep: a ``random`` sweep (``--method``) of ``--trials`` trials with ``max_parallel: 1``; the
  driver tells the study each trial's value, asks for the next and writes its job;
- chain (baseline): as many plain jobs of the same spec, each enqueued by this script the moment
  the previous one's log says eof (XREAD BLOCK), i.e. a plain enqueue and an agent's dispatch.

Turnaround is the next job's ``running_at`` minus the previous one's ``finished_at`` (both
written by the agent, one clock). CPU: the agent's whole process (children included) around each
round, per job; and the driver's own thread (OS name ``launchbay-sweep``, read from
``/proc/PID/task/TID``) around each sweep round, per trial. Rows: medians and p90s of the
turnarounds, sweep / chain; driver CPU per trial against the agent's CPU per plain job.

    .venv/bin/python bench/sweeps.py [--rounds 4] [--trials 8] [--method random] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Dict, List

import psutil
import redis
import yaml
from _common import (
    IMAGE,
    AgentProcess,
    RedisServer,
    Row,
    apply_queues,
    emit,
    job_output,
    thread_cpu_seconds,
    wait_until,
)
from _common import ratio as ratio_of
from idle_agent import cpu_seconds
from launchbay.client import enqueue
from launchbay.client.sweeps import create
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.store import QueueStore
from launchbay.sweeps.store import SweepStore, trial_job_id

QUEUE = "bench-sweeps"
JOB = "bench-trial"
DRIVER_THREAD = "launchbay-sweep"  # "launchbay-sweeps", cut to the OS's 15 bytes
_WRITE_METRIC = (
    "import json, os; "
    "open(os.path.join(os.environ['LAUNCHBAY_OUTPUT_DIR'], 'metrics.jsonl'), 'a')"
    ".write(json.dumps({'_step': 0, 'loss': 0.5}) + '\\n')"
)
SPEC = {"name": JOB, "image": IMAGE, "command": ["python3", "-c", _WRITE_METRIC], "config": {"x": 0.5}}
#: What the trial job records as its inputs (so a sweep may set ``x``).
INPUTS = {
    "run_config": {
        "include": ["x"],
        "types": {"x": "float"},
        "schema": {"type": "object", "properties": {"x": {"type": "number"}}},
    }
}


def turnarounds(conn: redis.Redis, job_ids: List[str]) -> Dict[str, List[float]]:
    """Each job's ``running_at`` minus the previous one's ``finished_at``, and the part of it until the
    job was enqueued (``queued_at``); raises unless every job finished."""
    records = [Records(conn, Keys()).as_json(job_id) or {} for job_id in job_ids]
    for job_id, record in zip(job_ids, records):
        if record.get("state") != "finished":
            raise RuntimeError(f"job {job_id} ended {record.get('state')}: {record.get('message')}")
    pairs = list(zip(records, records[1:]))
    return {
        "turnaround_s": [later["running_at"] - earlier["finished_at"] for earlier, later in pairs],
        "end_to_enqueue_s": [later["queued_at"] - earlier["finished_at"] for earlier, later in pairs],
    }


def sweep_round(conn: redis.Redis, agent: AgentProcess, job_path: Path, trials: int, method: str) -> Dict[str, Any]:
    keys, proc = Keys(), psutil.Process(agent.proc.pid)
    body = {
        "method": method,
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
        "run_cap": trials,
        "max_parallel": 1,
        "job": str(job_path),
    }
    driver_before, agent_before = thread_cpu_seconds(proc.pid, DRIVER_THREAD), cpu_seconds(proc)
    sweep_id, _ = create(body, QUEUE, conn=conn, keys=keys)
    store = SweepStore(conn, keys)
    wait_until(lambda: store.get(sweep_id)["state"] == "finished", 30 + 10 * trials, "the sweep", every_s=0.05)
    driver_after, agent_after = thread_cpu_seconds(proc.pid, DRIVER_THREAD), cpu_seconds(proc)
    return {
        **turnarounds(conn, [trial_job_id(sweep_id, n) for n in range(trials)]),
        "driver_cpu_per_trial_s": (driver_after - driver_before) / trials,
        "agent_cpu_per_job_s": (agent_after - agent_before) / trials,
    }


def chain_round(conn: redis.Redis, agent: AgentProcess, jobs: int) -> Dict[str, Any]:
    proc, ledger = psutil.Process(agent.proc.pid), Keys().agent_ledger(agent.agent_id)
    agent_before = cpu_seconds(proc)
    job_ids = [enqueue(SPEC, QUEUE, conn=conn).id]
    while True:
        job_output(conn, job_ids[-1])
        if len(job_ids) == jobs:
            break
        job_ids.append(enqueue(SPEC, QUEUE, conn=conn).id)
    wait_until(lambda: conn.hlen(ledger) == 0, 30, "the agent to release the last job")
    return {
        **turnarounds(conn, job_ids),
        "agent_cpu_per_job_s": (cpu_seconds(proc) - agent_before) / jobs,
    }


def measure(rounds: int, trials: int, method: str) -> Dict[str, Any]:
    folder = Path(tempfile.mkdtemp(prefix="lb-bench-sweeps-"))
    job_path = folder / "job.yaml"
    job_path.write_text(yaml.safe_dump(SPEC))
    out: Dict[str, List[Dict[str, Any]]] = {"sweep": [], "chain": []}
    with RedisServer() as server:
        conn = redis.Redis.from_url(server.url)
        apply_queues(conn, QUEUE)
        QueueStore(conn, Keys()).record_inputs(JOB, INPUTS, "bench-seed")
        with AgentProcess(server.url, [QUEUE], agent_id="bench-sweeps") as agent:
            kinds: Dict[str, Callable[[], Dict[str, Any]]] = {
                "sweep": lambda: sweep_round(conn, agent, job_path, trials, method),
                "chain": lambda: chain_round(conn, agent, trials),
            }
            # Warm-up: the image's first start, the agent's first Docker calls, the driver's import of Optuna.
            chain_round(conn, agent, 2)
            first = sweep_round(conn, agent, job_path, 2, method)
            for index in range(rounds):
                for name in ["sweep", "chain"] if index % 2 == 0 else ["chain", "sweep"]:
                    out[name].append(kinds[name]())
    return {"rounds": rounds, "trials": trials, "method": method, "image": IMAGE, "warm_up_sweep": first, **out}


def p90(values: List[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def rows(result: Dict[str, Any]) -> List[Row]:
    sweep = [t for r in result["sweep"] for t in r["turnaround_s"]]
    chain = [t for r in result["chain"] for t in r["turnaround_s"]]
    driver_ms = [1000 * r["driver_cpu_per_trial_s"] for r in result["sweep"]]
    trial_ms = [1000 * r["agent_cpu_per_job_s"] for r in result["sweep"]]
    plain_ms = [1000 * r["agent_cpu_per_job_s"] for r in result["chain"]]
    chain_med, chain_p90, plain_med = statistics.median(chain), p90(chain), statistics.median(plain_ms)
    enqueued = {
        k: 1000 * statistics.median([t for r in result[k] for t in r["end_to_enqueue_s"]]) for k in ("sweep", "chain")
    }
    how = (
        f"{result['method']} sweep, max_parallel 1, {result['trials']} trials x {result['rounds']} round(s); "
        f"end to next enqueue, median: sweep {enqueued['sweep']:.0f} ms, chain {enqueued['chain']:.0f} ms"
    )
    return [
        Row("sweep turnaround (s): plain chain", chain, note="baseline"),
        _against("sweep turnaround (s): sweep vs chain", sweep, chain_med, f"median ratio; {how}"),
        _against("sweep turnaround p90 (s): sweep vs chain", [p90(sweep)], chain_p90, "p90 of each"),
        Row("agent CPU per plain job (ms)", plain_ms, note="baseline"),
        _against("agent CPU per trial (ms), whole agent", trial_ms, plain_med, "per round"),
        _against(
            "driver thread CPU per trial (ms)",
            driver_ms,
            plain_med,
            "the launchbay-sweeps thread only; baseline: the agent's CPU per plain job",
        ),
    ]


def _against(label: str, values: List[float], baseline: float, note: str) -> Row:
    """A row of ``values`` with the ratio of their median to ``baseline``."""
    return Row(label, values, baseline=baseline, ratio=ratio_of(statistics.median(values), baseline), note=note)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, help="rounds of each kind (default 4, 1 with --quick)")
    parser.add_argument("--trials", type=int, help="trials (and chained jobs) per round (default 8, 4 with --quick)")
    parser.add_argument("--method", default="random", choices=["random", "bayes"], help="the sweep's method")
    parser.add_argument("--quick", action="store_true", help="one short round of each")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    rounds, trials = options.rounds or (1 if options.quick else 4), options.trials or (4 if options.quick else 8)
    if trials < 2:
        parser.error("--trials must be at least 2 (a turnaround is between two jobs)")
    began = time.monotonic()
    result = measure(rounds, trials, options.method)
    result["elapsed_s"] = round(time.monotonic() - began, 1)
    emit(rows(result), result, options.json, f"Sweep trial turnaround, {trials} trials x {rounds} rounds, {IMAGE}")


if __name__ == "__main__":
    main()
