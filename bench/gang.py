"""Multi-node start: enqueue to every member running, for a 2-node job against a single-node job's dispatch.

Two ``launchbay agent`` processes (as users run them, different ``--agent-id``s, one Docker engine)
serve one queue whose ``gang:`` allows 2 nodes. Each sample enqueues with ``launchbay.client.enqueue``
and takes the wall clock each container prints first thing (``date +%s.%N``) minus the clock just
before the enqueue: for the 2-node job the later of its two members (all running), for the single-node
job its one container. The two kinds are interleaved (the order rotates every round) so that a noisy
machine hurts them alike, and every sample starts from idle agents. Target: the 2-node job's median
<= 1.5 x the single-node job's (docs/multi-node.md says where the difference goes: a second agent's
hold, the wake-up of the first, the start barrier).

    .venv/bin/python bench/gang.py [--runs 20] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import time
from typing import Any, Dict, List

import redis
from _common import (
    FIRST_INSTRUCTION,
    IMAGE,
    AgentProcess,
    RedisServer,
    Row,
    at_most,
    emit,
    first_timestamp,
    interleaved,
    median,
    ratio,
    wait_until,
)
from launchbay.client import enqueue
from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

QUEUE = "bench-gang"
AGENTS = ("bench-gang-a", "bench-gang-b")
TARGET = 1.5


def first_lines(conn: redis.Redis, job_id: str, nodes: int) -> List[float]:
    """Each member's first printed timestamp, once the job finished."""
    records = Records(conn, Keys())
    wait_until(lambda: records.state(job_id) in (State.FINISHED, State.FAILED, State.CANCELED), 60, f"job {job_id}")
    if records.state(job_id) != State.FINISHED:
        raise RuntimeError(f"job {job_id}: {records.as_json(job_id)}")
    stamps = []
    for rank in range(nodes):
        key = Keys().job_log_rank(job_id, rank)
        wait_until(lambda key=key: conn.xlen(key) > 0, 10, f"rank {rank}'s log")
        lines = [f[b"line"].decode() for _, f in conn.xrange(key) if b"line" in f]
        stamps.append(first_timestamp("\n".join(lines)))
    return stamps


def sample(conn: redis.Redis, nodes: int) -> float:
    spec = {"name": f"bench-gang-{nodes}", "image": IMAGE, "command": FIRST_INSTRUCTION}
    began = time.time()
    handle = enqueue(spec, QUEUE, conn=conn, nodes=nodes, resources={"cpus": 0.1, "memory": "64MiB"})
    latency = max(first_lines(conn, handle.id, nodes)) - began
    ledgers = [Keys().agent_ledger(agent_id) for agent_id in AGENTS]
    wait_until(lambda: all(conn.hlen(key) == 0 for key in ledgers), 30, "the agents to release the job")
    return latency


def measure(runs: int) -> Dict[str, Any]:
    with RedisServer() as server:
        conn = redis.Redis.from_url(server.url)
        QueueStore(conn).apply(QueueConfig(name=QUEUE, gang={"max_nodes": 2}))
        with (
            AgentProcess(server.url, [QUEUE], agent_id=AGENTS[0]),
            AgentProcess(server.url, [QUEUE], agent_id=AGENTS[1]),
        ):
            samples = interleaved({"single": lambda: sample(conn, 1), "gang": lambda: sample(conn, 2)}, runs)
    return {"runs": runs, "image": IMAGE, "samples_s": samples}


def rows(result: Dict[str, Any]) -> List[Row]:
    single, gang = result["samples_s"]["single"], result["samples_s"]["gang"]
    return [
        Row("gang start (s): single-node dispatch", single, note="baseline, same two agents"),
        at_most(
            "gang start (s): 2-node job, enqueue to all running",
            gang,
            TARGET,
            baseline=median(single),
            ratio=ratio(median(gang), median(single)),
            target=f"median ratio <= {TARGET}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="samples of each kind (default 20, 6 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    result = measure(options.runs or (6 if options.quick else 20))
    emit(rows(result), result, options.json, f"Multi-node start, {result['runs']} samples each, image {IMAGE}")


if __name__ == "__main__":
    main()
