"""Quotas: the queue option validated with clear errors, and enforced atomically by claim.lua.

The race runs two agents' claimers (real Redis, the real claim script) in threads released by
one barrier, many rounds over: however the claims interleave, the user never holds more than the
quota, and the usage counters come back to zero when everything is released.
"""

from __future__ import annotations

import threading

import pytest
from launchbay.agent.claim import Claimer
from launchbay.agent.ledger import Ledger
from launchbay.client import adhoc_spec, enqueue
from launchbay.queue_config.agents import LedgerEntry
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity, GpuInfo
from launchbay.queue_config.models import QueueConfig, parse_model
from launchbay.queue_config.quotas import Quotas
from launchbay.queue_config.store import QueueStore

from launchbay.errors import ConfigError


def queue(**quotas):
    return parse_model(QueueConfig, {"name": "share", "quotas": quotas}, source="share.yaml")


def test_quotas_parse_with_per_user_overrides_falling_back_to_default():
    config = queue(default={"gpus": 4, "jobs": 10}, users={"alice": {"gpus": 8}})
    assert config.quotas.for_user("alice") == {"gpus": 8.0, "jobs": 10.0}
    assert config.quotas.for_user("bob") == {"gpus": 4.0, "jobs": 10.0}
    assert QueueConfig(name="q").quotas.for_user("bob") == {}


@pytest.mark.parametrize(
    "quotas, message",
    [
        ({"default": {"gpus": -1}}, "quotas.default.gpus"),
        ({"users": {"alice": {"cpus": -0.5}}}, "quotas.users.alice.cpus"),
        ({"users": {"alice": {"gpu": 2}}}, "gpu"),  # a typo of gpus
        ({"defaults": {"gpus": 2}}, "defaults"),
        ({"users": {"al ice": {"gpus": 2}}}, "al ice"),
    ],
)
def test_a_bad_quota_is_one_clear_error(quotas, message):
    with pytest.raises(ConfigError) as info:
        queue(**quotas)
    assert message in str(info.value)


def test_queue_apply_refuses_a_negative_quota_with_exit_2(redis_url, tmp_path):
    from sharing_helpers import cli

    path = tmp_path / "share.yaml"
    path.write_text("name: share\nquotas:\n  default:\n    gpus: -2\n")
    result = cli(redis_url, "queue", "apply", str(path))
    assert result.returncode == 2, result.stderr
    assert "gpus" in result.stderr and "greater than or equal to 0" in result.stderr
    assert cli(redis_url, "queue", "list", "--json").stdout.strip() in ("[]", "")


def four_gpus() -> Capacity:
    return Capacity(cpus=64.0, memory_mib=1 << 20, slots=16, gpus=tuple(GpuInfo(str(i)) for i in range(4)))


def race(conn, keys, agents, jobs, quotas):
    """Each agent's claimer tries every job, all starting at one barrier; the ids each one claimed."""
    claimed = {agent: [] for agent in agents}
    barrier = threading.Barrier(len(agents))

    def claim_all(agent: str) -> None:
        claimer = Claimer(conn, keys, agent_id=agent, host=agent)
        barrier.wait()
        for index, job_id in enumerate(jobs):
            entry = LedgerEntry(job_id, "share", 0.0, 0, (str(index % 4),), 0.0, None, "alice")
            if claimer.claim(entry, four_gpus(), quotas=quotas).claimed:
                claimed[agent].append(job_id)

    threads = [threading.Thread(target=claim_all, args=(agent,)) for agent in agents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return claimed


def test_two_agents_racing_never_take_a_user_past_the_quota(redis_conn):
    keys = Keys()
    QueueStore(redis_conn, keys).apply(queue(users={"alice": {"gpus": 3, "jobs": 2}}))
    quotas = {"share": Quotas.model_validate({"users": {"alice": {"gpus": 3, "jobs": 2}}})}
    agents = ["racer-a", "racer-b"]
    for round_no in range(15):
        jobs = [
            enqueue(adhoc_spec("busybox", ["true"]), "share", conn=redis_conn, resources={"gpus": 1}, user="alice").id
            for _ in range(6)
        ]
        claimed = race(redis_conn, keys, agents, jobs, quotas)
        total = sum(len(ids) for ids in claimed.values())
        usage = redis_conn.hgetall(keys.user_usage("share", "alice"))
        assert total == 2, f"round {round_no}: {claimed}"  # jobs: 2 is the tighter limit
        assert float(usage[b"jobs"]) == 2 and float(usage[b"gpus"]) == 2
        for agent in agents:
            for job_id in claimed[agent]:
                assert Ledger(redis_conn, keys, agent).release(job_id)
        assert redis_conn.hgetall(keys.user_usage("share", "alice")) == {}
        for job_id in jobs:  # the rest leave the queue so the next round starts clean
            redis_conn.delete(keys.job(job_id))
        redis_conn.delete("rq:queue:share")


def test_a_user_without_a_quota_is_not_limited_and_not_counted_against_others(redis_conn):
    keys = Keys()
    QueueStore(redis_conn, keys).apply(queue(users={"alice": {"jobs": 1}}))
    quotas = {"share": Quotas.model_validate({"users": {"alice": {"jobs": 1}}})}
    claimer = Claimer(redis_conn, keys, agent_id="solo", host="solo")
    ids = [enqueue(adhoc_spec("busybox"), "share", conn=redis_conn, user="bob").id for _ in range(3)]
    for job_id in ids:
        entry = LedgerEntry(job_id, "share", 0.0, 0, (), 0.0, None, "bob")
        assert claimer.claim(entry, four_gpus(), quotas=quotas).claimed
    alice = enqueue(adhoc_spec("busybox"), "share", conn=redis_conn, user="alice").id
    assert claimer.claim(
        LedgerEntry(alice, "share", 0.0, 0, (), 0.0, None, "alice"), four_gpus(), quotas=quotas
    ).claimed
    second = enqueue(adhoc_spec("busybox"), "share", conn=redis_conn, user="alice")
    assert any("at their quota" in note for note in second.notes), second.notes
    result = claimer.claim(LedgerEntry(second.id, "share", 0.0, 0, (), 0.0, None, "alice"), four_gpus(), quotas=quotas)
    assert (result.claimed, result.why) == (False, "quota")
