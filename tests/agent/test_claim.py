"""The claim script (queue_config/claim.lua) against a real redis-server: all or nothing, and exclusive."""

from __future__ import annotations

import multiprocessing
import random
import threading
import time
from collections import Counter

import pytest
import redis
from launchbay.agent.claim import Claimer, ClaimPass, QueueReader, read_snapshot
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.agent.placement import Policy
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import Capacity, GpuInfo
from launchbay.queue_config.store import QueueStore
from test_control_support import make_queue, put_job, record

pytestmark = pytest.mark.integration


def four_gpus(**kwargs) -> Capacity:
    gpus = tuple(
        GpuInfo(id=str(i), uuid=f"GPU-{i}", name="NVIDIA H200-141C", memory_total_mib=144384) for i in range(4)
    )
    return Capacity(
        cpus=kwargs.get("cpus", 8.0),
        memory_mib=kwargs.get("memory_mib", 16384),
        slots=kwargs.get("slots", 8),
        gpus=gpus,
    )


def entry(job_id: str, *, cpus: float = 1.0, memory_mib: int = 0, gpus=(), queue: str = "default") -> LedgerEntry:
    return LedgerEntry(job_id, queue, cpus, memory_mib, tuple(gpus), claimed_at=time.time(), max_runtime_s=None)


def queued_ids(conn, queue: str = "default") -> list:
    return rq_bridge.rq_queue(conn, queue).get_job_ids()


def test_a_claim_moves_the_job_out_of_its_queue_into_the_ledger_and_to_starting(redis_conn):
    make_queue(redis_conn)
    job_id = put_job(redis_conn, gpus=2, cpus=1)
    claimer = Claimer(redis_conn, Keys(), agent_id="agent-a", host="host-a")
    result = claimer.claim(entry(job_id, gpus=("0", "1")), four_gpus())
    assert result.claimed and result.why == "claimed"
    rec = record(redis_conn, job_id)
    assert rec["state"] == "starting" and rec["agent"] == "agent-a" and rec["host"] == "host-a"
    assert rec["gpus"] == ["0", "1"] and rec["attempts"] == 1 and rec["starting_at"]
    assert job_id not in queued_ids(redis_conn)
    assert Ledger(redis_conn, Keys(), "agent-a").get(job_id).gpus == ("0", "1")


def snapshot_of_redis(conn, job_id: str) -> tuple:
    return (
        conn.hgetall(Keys().job(job_id)),
        conn.hgetall(Keys().agent_ledger("agent-a")),
        tuple(queued_ids(conn)),
    )


@pytest.mark.parametrize(
    ("setup", "alloc", "why"),
    [
        ("cancel_requested", {}, "cancel_requested"),
        ("canceled", {}, "not_queued"),
        ("gpu_held", {"gpus": ("1",)}, "gpu_taken"),
        ("none", {"gpus": ("1", "1")}, "gpu_taken"),
        ("none", {"gpus": ("7",)}, "gpu_unknown"),
        ("cpus_held", {"cpus": 2.0}, "cpus"),
        ("none", {"memory_mib": 20000}, "memory"),
        ("slots_full", {}, "max_jobs"),
        ("not_in_queue", {}, "not_in_queue"),
    ],
)
def test_a_refused_claim_writes_nothing(redis_conn, setup, alloc, why):
    make_queue(redis_conn)
    job_id = put_job(redis_conn)
    ledger_key = Keys().agent_ledger("agent-a")
    slots = 8
    if setup == "cancel_requested":
        Records(redis_conn, Keys()).update(job_id, cancel_requested=1)
    elif setup == "canceled":
        Records(redis_conn, Keys()).transition(job_id, State.CANCELED, allowed_from=[State.QUEUED])
    elif setup == "gpu_held":
        redis_conn.hset(ledger_key, "other", entry("other", cpus=0, gpus=("1",)).to_json())
    elif setup == "cpus_held":
        redis_conn.hset(ledger_key, "other", entry("other", cpus=7.0).to_json())
    elif setup == "slots_full":
        redis_conn.hset(ledger_key, "other", entry("other", cpus=0).to_json())
        slots = 1
    elif setup == "not_in_queue":
        redis_conn.lrem(rq_bridge.rq_queue(redis_conn, "default").key, 1, job_id)
    before = snapshot_of_redis(redis_conn, job_id)
    result = Claimer(redis_conn, Keys(), agent_id="agent-a", host="h").claim(
        entry(job_id, **alloc), four_gpus(slots=slots)
    )
    assert not result.claimed and result.why == why
    assert snapshot_of_redis(redis_conn, job_id) == before


def test_one_call_claims_the_first_candidate_redis_still_agrees_to(redis_conn):
    make_queue(redis_conn)
    taken, canceled, wanted, after = (put_job(redis_conn) for _ in range(4))
    rival = Claimer(redis_conn, Keys(), agent_id="rival", host="r")
    assert rival.claim(entry(taken), four_gpus()).claimed
    Records(redis_conn, Keys()).transition(canceled, State.CANCELED, allowed_from=[State.QUEUED])
    claimer = Claimer(redis_conn, Keys(), agent_id="agent-a", host="host-a")
    result = claimer.claim_first([entry(j) for j in (taken, canceled, wanted, after)], four_gpus())
    assert (result.claimed, result.why, result.index) == (True, "claimed", 2)
    assert record(redis_conn, wanted)["agent"] == "agent-a" and record(redis_conn, after)["state"] == "queued"
    assert wanted not in queued_ids(redis_conn) and after in queued_ids(redis_conn)
    assert list(Ledger(redis_conn, Keys(), "agent-a").entries()) == [wanted]


def test_when_no_candidate_may_be_claimed_the_call_says_why_the_first_was_refused_and_writes_nothing(redis_conn):
    make_queue(redis_conn)
    taken, big = put_job(redis_conn), put_job(redis_conn)
    assert Claimer(redis_conn, Keys(), agent_id="rival", host="r").claim(entry(taken), four_gpus()).claimed
    before = snapshot_of_redis(redis_conn, big)
    result = Claimer(redis_conn, Keys(), agent_id="agent-a", host="h").claim_first(
        [entry(taken), entry(big, cpus=99.0)], four_gpus()
    )
    assert (result.claimed, result.why, result.index) == (False, "not_queued", 2)
    assert snapshot_of_redis(redis_conn, big) == before


def test_the_snapshot_lists_queued_jobs_in_queue_order_and_skips_paused_queues(redis_conn):
    make_queue(redis_conn, "gpu")
    make_queue(redis_conn, "cpu")
    first = put_job(redis_conn, "gpu", gpus=1, max_runtime_s=60)
    second = put_job(redis_conn, "gpu", priority="high")
    canceling = put_job(redis_conn, "gpu")
    Records(redis_conn, Keys()).update(canceling, cancel_requested=1)
    cpu_job = put_job(redis_conn, "cpu", cpus=2, constraints={"zone": "eu"})
    redis_conn.hset(Keys().agent_ledger("agent-a"), "running", entry("running", gpus=("3",)).to_json())

    snapshot = read_snapshot(redis_conn, Keys(), "agent-a", ["gpu", "cpu"], lookahead=10)
    assert [c.job_id for c in snapshot.candidates] == [second, first, cpu_job]  # high was put at the front
    by_id = {c.job_id: c for c in snapshot.candidates}
    assert by_id[first].request.gpus == 1 and by_id[first].max_runtime_s == 60
    assert by_id[cpu_job].queue_rank == 1 and by_id[cpu_job].constraints == {"zone": "eu"}
    assert [e.job_id for e in snapshot.running] == ["running"]

    QueueStore(redis_conn, Keys()).pause("gpu")
    snapshot = read_snapshot(redis_conn, Keys(), "agent-a", ["gpu", "cpu"], lookahead=10)
    assert [c.job_id for c in snapshot.candidates] == [cpu_job]


def test_a_reader_reads_a_job_it_knows_again_only_for_its_state_and_whole_once_it_was_queued_again(redis_conn):
    make_queue(redis_conn)
    first, canceling, changed = (put_job(redis_conn, cpus=1) for _ in range(3))
    records = Records(redis_conn, Keys())
    reader = QueueReader(redis_conn, Keys(), "agent-a", ["default"], lookahead=10)
    assert [c.job_id for c in reader.read().candidates] == [first, canceling, changed]

    records.update(canceling, cancel_requested=1)  # state fields are read on every pass
    records.update(changed, request={"cpus": 4.0})  # a waiting job's request never changes: not read again
    later = reader.read()
    assert [c.job_id for c in later.candidates] == [first, changed]
    assert later.candidates[1].request.cpus == 1.0

    records.update(changed, queued_at=time.time() + 1)  # what a requeue does: the record is read whole
    assert reader.read().candidates[1].request.cpus == 4.0
    assert read_snapshot(redis_conn, Keys(), "agent-a", ["default"], lookahead=10).candidates[1].request.cpus == 4.0


def test_the_snapshot_reads_only_lookahead_jobs_per_queue(redis_conn):
    make_queue(redis_conn)
    ids = [put_job(redis_conn) for _ in range(5)]
    snapshot = read_snapshot(redis_conn, Keys(), "agent-a", ["default"], lookahead=2)
    assert [c.job_id for c in snapshot.candidates] == ids[:2]


# -- races ------------------------------------------------------------------------------------------


def claim_loop(url: str, agent_id: str, capacity: Capacity, held: dict, lock: threading.Lock, wins: list) -> None:
    """One claimer, as the agent's claim pass runs: claim what fits, hold each a moment, release; until the queue is empty."""
    conn = redis.Redis.from_url(url)
    keys = Keys()
    claimer = Claimer(conn, keys, agent_id=agent_id, host=agent_id)
    reader = QueueReader(conn, keys, agent_id, ["default"], lookahead=16)
    ledger = Ledger(conn, keys, agent_id)
    records = Records(conn, keys)
    rng = random.Random(agent_id + threading.current_thread().name)
    while True:
        claims = ClaimPass(claimer, reader, policy=Policy())
        got = claims.next(capacity)
        if got is None:
            if not queued_ids(conn):
                return
            time.sleep(0.001)
            continue
        while got is not None:
            alloc = got[0]
            with lock:
                for gpu in alloc.gpus:
                    assert held.get((agent_id, gpu)) is None, f"GPU {gpu} of {agent_id} handed out twice"
                    held[(agent_id, gpu)] = alloc.job_id
                wins.append(alloc.job_id)
            time.sleep(rng.random() * 0.003)
            records.transition(alloc.job_id, State.FINISHED, allowed_from=[State.STARTING])
            with lock:
                for gpu in alloc.gpus:
                    del held[(agent_id, gpu)]
            ledger.release(alloc.job_id)
            got = claims.next(capacity)


def test_eight_claimers_over_200_jobs_claim_each_once_and_never_share_a_gpu(redis_url, redis_conn):
    make_queue(redis_conn)
    rng = random.Random(7)
    job_ids = [put_job(redis_conn, gpus=rng.choice([0, 1, 1, 2]), cpus=rng.choice([0.5, 1.0])) for _ in range(200)]
    held: dict = {}
    wins: list = []
    lock = threading.Lock()
    errors: list = []

    def run(agent_id: str) -> None:
        try:
            claim_loop(redis_url, agent_id, four_gpus(cpus=4.0, slots=4), held, lock, wins)
        except BaseException as exc:
            errors.append(exc)

    # Two agents, four claimer threads each sharing that agent's ledger and GPUs.
    threads = [threading.Thread(target=run, args=(f"agent-{i % 2}",), name=f"c{i}") for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors[0]
    assert sorted(wins) == sorted(job_ids), "every job claimed exactly once"
    assert Counter(record(redis_conn, j)["attempts"] for j in job_ids) == {1: 200}
    assert queued_ids(redis_conn) == []


def process_claimer(url: str, agent_id: str, results, start) -> None:
    held: dict = {}
    wins: list = []
    start.wait(60)  # the first process ready would otherwise claim everything before the rest have imported
    claim_loop(url, agent_id, four_gpus(cpus=64.0, slots=64), held, threading.Lock(), wins)
    results.put((agent_id, wins))


def test_eight_claimer_processes_claim_each_job_exactly_once(redis_url, redis_conn):
    make_queue(redis_conn)
    job_ids = [put_job(redis_conn, cpus=1.0) for _ in range(200)]
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    start = context.Barrier(8)
    processes = [
        context.Process(target=process_claimer, args=(redis_url, f"proc-{i}", results, start)) for i in range(8)
    ]
    for process in processes:
        process.start()
    try:
        collected = [results.get(timeout=120) for _ in processes]
    finally:
        for process in processes:
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    wins = [job_id for _, won in collected for job_id in won]
    assert sorted(wins) == sorted(job_ids)
    assert len({agent for agent, won in collected if won}) > 1, "the claimers really competed"
    winner_of = {job_id: agent for agent, won in collected for job_id in won}
    assert all(record(redis_conn, j)["agent"] == winner_of[j] for j in job_ids), "the record names the winner"
