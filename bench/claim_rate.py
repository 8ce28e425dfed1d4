"""Claim rate: claims + releases per second by 8 concurrent claimers, no containers, by queue depth.

Each claimer is a process with its own agent id running passes of the agent's own
``ClaimPass`` (agent/claim.py), as ``ClaimCycle.run_pass`` does: a read of the queue (its first
``lookahead`` ids, their records and the ledger: two pipelined round trips), placement's claim
order, one ``claim.lua`` call per claim that settles lost races inside it, a new read only when
the old one has nothing left), then ``Ledger.release`` after each claim as when the job ends. A
claim and a release count one each. Left out: what ``Agent._launch`` adds per claim (the RQ
"started" mirror, two record writes) and Docker.

Each depth has its own queue, holding depth + the round's claims when a round starts (so never
fewer than "depth" jobs); the depths take turns round by round. Records are written as the
client writes them (``Records.create``) and the ids pushed with rq's ``Queue.push_job_id``; rq's
own job hashes are left out (nothing on the claim path reads them), which puts 100k jobs in place
in seconds. The CPU the round cost (claimers' and Redis's) is reported per op as well: it does not
move with the machine's load as much as the rate does. Targets: >= 2,000 per second at every
depth, and the 100k median within 25% of the 1k median.

    .venv/bin/python bench/claim_rate.py [--depths 1000,10000,100000] [--rounds 5] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import time
import uuid
from typing import Any, Dict, List, Sequence

import redis
from _common import RedisServer, Row, at_least, chunks, emit, median
from launchbay.agent.claim import Claimer, ClaimPass, QueueReader
from launchbay.agent.ledger import Ledger
from launchbay.agent.placement import Policy
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import Capacity

CLAIMERS = 8
CLAIMS_PER_CLAIMER = 100
TARGET_PER_S = 2000
TARGET_DEPTH_RATIO = 0.75
LOOKAHEAD = AgentSettings.model_fields["lookahead"].default
CAPACITY = Capacity(cpus=64.0, memory_mib=256 * 1024, slots=8)
REQUEST = {"cpus": 1.0, "memory_mib": 1024, "gpus": 0, "gpu_model": "", "gpu_memory_mib": 0}
FILL_BATCH = 1000


def queue_for(depth: int) -> str:
    return f"bench-claim-{depth}"


def fill(conn: redis.Redis, name: str, count: int) -> None:
    """Append ``count`` queued jobs to queue ``name`` (records as the client writes them, ids through rq's Queue)."""
    records, queue = Records(conn, Keys()), rq_bridge.rq_queue(conn, name)
    fields = {
        "name": "bench-claim",
        "queue": name,
        "priority": "normal",
        "request": REQUEST,
        "constraints": {},
        "max_runtime_s": 600,
        "spec": {"image": "none", "command": None, "workdir": None, "env": {}, "docker": {}},
        "run_config": {},
        "file_overrides": {},
    }
    for batch in chunks(range(count), FILL_BATCH):
        with conn.pipeline(transaction=False) as pipe:
            for _ in batch:
                job_id = uuid.uuid4().hex[:16]
                records.create(job_id, fields, pipeline=pipe)
                queue.push_job_id(job_id, pipeline=pipe)
            pipe.execute()


def claimer(url: str, queue: str, index: int, quota: int, barrier: Any, results: Any) -> None:
    """One agent's claim loop, as ``ClaimCycle.run_pass`` runs it, with a release after each claim."""
    conn, keys = redis.Redis.from_url(url), Keys()
    agent_id = f"claimer-{index}"
    script, ledger = Claimer(conn, keys, agent_id=agent_id, host="bench"), Ledger(conn, keys, agent_id)
    reader = QueueReader(conn, keys, agent_id, [queue], LOOKAHEAD)
    conn.ping()
    barrier.wait()
    began, cpu, claimed, lost, reads = time.time(), time.process_time(), 0, 0, 0
    while claimed < quota:
        claims = ClaimPass(script, reader, policy=Policy())
        passed = 0
        while claimed < quota and (got := claims.next(CAPACITY)) is not None:
            passed, claimed = passed + 1, claimed + 1
            ledger.release(got[0].job_id)
        lost, reads = lost + claims.lost_races, reads + claims.reads
        if not passed:
            break  # the queue ran dry
    cpu_s = time.process_time() - cpu
    results.put(
        {"began": began, "ended": time.time(), "cpu_s": cpu_s, "claimed": claimed, "lost": lost, "reads": reads}
    )


def redis_cpu_s(conn: redis.Redis) -> float:
    info = conn.info("cpu")
    return info["used_cpu_user"] + info["used_cpu_sys"]


def one_round(url: str, queue: str) -> Dict[str, float]:
    """8 claimers, CLAIMS_PER_CLAIMER claims each; the rate, and the CPU it cost (claimers and Redis)."""
    conn = redis.Redis.from_url(url)
    redis_began = redis_cpu_s(conn)
    context = multiprocessing.get_context("fork")
    barrier, results = context.Barrier(CLAIMERS), context.Queue()
    procs = [
        context.Process(target=claimer, args=(url, queue, i, CLAIMS_PER_CLAIMER, barrier, results))
        for i in range(CLAIMERS)
    ]
    for proc in procs:
        proc.start()
    reports = [results.get(timeout=300) for _ in procs]
    for proc in procs:
        proc.join()
    wall = max(r["ended"] for r in reports) - min(r["began"] for r in reports)
    claimed = sum(r["claimed"] for r in reports)
    cpu_s = sum(r["cpu_s"] for r in reports) + redis_cpu_s(conn) - redis_began
    return {
        "per_s": 2 * claimed / wall,
        "cpu_ms_per_op": 1000 * cpu_s / (2 * claimed),
        "redis_cpu_ms_per_op": 1000 * (redis_cpu_s(conn) - redis_began) / (2 * claimed),
        "claimed": claimed,
        "lost_races": sum(r["lost"] for r in reports),
        "snapshot_reads": sum(r["reads"] for r in reports),
        "wall_s": wall,
    }


def measure(depths: Sequence[int], rounds: int) -> Dict[str, Any]:
    per_round = CLAIMERS * CLAIMS_PER_CLAIMER
    by_depth: Dict[str, List[Dict[str, float]]] = {}
    with RedisServer() as server:
        conn = redis.Redis.from_url(server.url)
        depths = sorted(depths)
        for index in range(rounds):  # depths take turns, so a machine that gets busier hurts them alike
            for depth in depths[index % len(depths) :] + depths[: index % len(depths)]:
                name = queue_for(depth)
                fill(conn, name, depth + per_round - conn.llen(rq_bridge.rq_queue(conn, name).key))
                by_depth.setdefault(str(depth), []).append(one_round(server.url, name))
    return {
        "claimers": CLAIMERS,
        "claims_per_round": per_round,
        "rounds": rounds,
        "lookahead": LOOKAHEAD,
        "rounds_by_depth": by_depth,
    }


def rows(result: Dict[str, Any]) -> List[Row]:
    rates = {int(d): [r["per_s"] for r in runs] for d, runs in result["rounds_by_depth"].items()}
    out = []
    for depth, samples in sorted(rates.items()):
        runs = result["rounds_by_depth"][str(depth)]
        lost = sum(r["lost_races"] for r in runs) / sum(r["claimed"] for r in runs)
        cpu_ms = median([r["cpu_ms_per_op"] for r in runs])
        redis_ms = median([r["redis_cpu_ms_per_op"] for r in runs])
        note = (
            f"{lost:.1f} lost races per claim; CPU per op {cpu_ms:.2f} ms (Redis {redis_ms:.2f} ms), "
            f"at that cost {os.cpu_count()} cores give at most {1000 * (os.cpu_count() or 1) / cpu_ms:,.0f}/s"
        )
        out.append(
            at_least(
                f"claim rate (ops/s): depth {depth:,}",
                samples,
                TARGET_PER_S,
                target=f"median >= {TARGET_PER_S:,}",
                note=note,
            )
        )
    shallow, deep = min(rates), max(rates)
    if shallow != deep:
        out.append(
            at_least(
                f"claim rate: depth {deep:,} vs {shallow:,}",
                rates[deep],
                TARGET_DEPTH_RATIO,
                baseline=median(rates[shallow]),
                ratio=median(rates[deep]) / median(rates[shallow]),
                target=f"median ratio >= {TARGET_DEPTH_RATIO}",
            )
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--depths", default="1000,10000,100000", help="queue depths, comma-separated")
    parser.add_argument("--rounds", type=int, help="rounds per depth (default 5, 3 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer rounds")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    depths = [int(d) for d in options.depths.split(",")]
    result = measure(depths, options.rounds or (3 if options.quick else 5))
    emit(
        rows(result),
        result,
        options.json,
        f"Claim rate, {CLAIMERS} claimers, {result['claims_per_round']} claims a round",
    )


if __name__ == "__main__":
    main()
