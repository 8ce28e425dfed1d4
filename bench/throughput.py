"""Throughput: trivial jobs through 4 concurrent slots, agent against ``xargs -P4 docker run``.

A round times N jobs (default 200) from the first call to the last job done:

- agent: N ``launchbay.client.enqueue`` calls into a queue served by ``launchbay agent
  --max-jobs 4``; done at the N-th ``released`` event (the agent sends it once a job's end is
  recorded and its container removed: what ``docker run --rm`` waits for);
- baseline: ``seq N | xargs -P4 -I{} docker run --rm IMAGE date +%s.%N``.

Rounds alternate (baseline first in odd rounds, agent first in even ones). The figure is jobs
per second; the target is agent >= 0.9 x baseline, on the medians over rounds. The agent row's note
also gives the agent's own CPU per job (psutil over its process, children included, around each
agent round): what the agent spends that ``xargs`` does not.

    .venv/bin/python bench/throughput.py [--jobs 200] [--rounds 2] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from typing import Any, Dict, List

import psutil
import redis
from _common import FIRST_INSTRUCTION, IMAGE, AgentProcess, RedisServer, Row, apply_queues, at_least, emit, median
from idle_agent import cpu_seconds
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys

QUEUE = "bench-throughput"
SLOTS = 4
TARGET = 0.9


def agent_round(conn: redis.Redis, jobs: int, agent_id: str) -> float:
    """Enqueue ``jobs`` and wait for as many ``released`` events (sent after each container is removed)."""
    spec = {"name": "bench-throughput", "image": IMAGE, "command": FIRST_INSTRUCTION}
    keys = Keys()
    events = conn.pubsub(ignore_subscribe_messages=True)
    events.subscribe(keys.events)  # listening costs nothing while waiting, unlike polling 200 records
    began = time.monotonic()
    job_ids = [enqueue(spec, QUEUE, conn=conn).id for _ in range(jobs)]
    released, deadline = 0, time.monotonic() + 60
    while released < jobs:
        message = events.get_message(timeout=1.0)  # None also for the subscribe confirmation
        if message is not None and json.loads(message["data"]) == {"type": "released", "agent": agent_id}:
            released, deadline = released + 1, time.monotonic() + 60
        if time.monotonic() > deadline:
            raise TimeoutError(f"no job released for 60 s ({released} of {jobs} done)")
    elapsed = time.monotonic() - began
    events.close()
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(keys.job(job_id), "state")
        failed = [job_id for job_id, state in zip(job_ids, pipe.execute()) if state != b"finished"]
    if failed:
        raise RuntimeError(f"{len(failed)} agent jobs did not finish, e.g. {failed[0]}")
    return jobs / elapsed


def xargs_round(jobs: int) -> float:
    command = ["xargs", f"-P{SLOTS}", "-I{}", "docker", "run", "--rm", IMAGE, *FIRST_INSTRUCTION]
    lines = "".join(f"{i}\n" for i in range(jobs))
    began = time.monotonic()
    subprocess.run(command, input=lines, text=True, stdout=subprocess.DEVNULL, check=True)
    return jobs / (time.monotonic() - began)


def measure(jobs: int, rounds: int) -> Dict[str, Any]:
    samples: Dict[str, List[float]] = {"xargs": [], "agent": []}
    agent_cpu_ms: List[float] = []
    with RedisServer() as server:
        conn = redis.Redis.from_url(server.url)
        apply_queues(conn, QUEUE)
        with AgentProcess(server.url, [QUEUE], agent_id="bench-throughput", max_jobs=SLOTS) as agent:
            proc = psutil.Process(agent.proc.pid)
            for index in range(rounds):
                order = ["xargs", "agent"] if index % 2 == 0 else ["agent", "xargs"]
                for name in order:
                    if name == "xargs":
                        samples[name].append(xargs_round(jobs))
                        continue
                    cpu_before = cpu_seconds(proc)
                    samples[name].append(agent_round(conn, jobs, agent.agent_id))
                    agent_cpu_ms.append(1000 * (cpu_seconds(proc) - cpu_before) / jobs)
    return {
        "jobs": jobs,
        "rounds": rounds,
        "slots": SLOTS,
        "image": IMAGE,
        "jobs_per_s": samples,
        "agent_cpu_ms_per_job": agent_cpu_ms,
    }


def rows(result: Dict[str, Any]) -> List[Row]:
    samples = result["jobs_per_s"]
    baseline = median(samples["xargs"])
    return [
        Row(f"throughput (jobs/s): xargs -P{SLOTS} docker run", samples["xargs"], note="baseline"),
        at_least(
            f"throughput (jobs/s): agent, {SLOTS} slots",
            samples["agent"],
            TARGET,
            baseline=baseline,
            ratio=median(samples["agent"]) / baseline,
            target=f"median ratio >= {TARGET}",
            note=f"{result['jobs']} jobs per round, {result['rounds']} round(s); agent CPU per job, median: "
            f"{median(result['agent_cpu_ms_per_job']):.1f} ms",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, help="jobs per round (default 200, 40 with --quick)")
    parser.add_argument("--rounds", type=int, help="rounds of each way (default 2, 1 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer jobs and rounds")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    jobs = options.jobs or (40 if options.quick else 200)
    rounds = options.rounds or (1 if options.quick else 2)
    result = measure(jobs, rounds)
    emit(rows(result), result, options.json, f"Throughput, {jobs} jobs x {rounds} round(s), {SLOTS} slots")


if __name__ == "__main__":
    main()
