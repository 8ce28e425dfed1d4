"""gang.lua's steps on their own (``lifecycle.GangScript``), on a real redis-server: what a multi-node job's
holds do to the user's quota, and what a submitter's forged fields or a member of another round get.

A submitter may rewrite her own job record (never the member table: tests/security/test_redis_roles.py),
so every step re-reads what it acts on; a member of an older or newer round can never join this one.
"""

from __future__ import annotations

import pytest
from gang_helpers import hold, script
from launchbay.agent.ledger import Ledger
from launchbay.client import enqueue
from launchbay.queue_config import gang
from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from queue_helpers import wait_for

pytestmark = pytest.mark.integration

QUEUE = "multi"
SPEC = {"name": "ddp", "image": "trainer:1", "command": ["python", "train.py"]}
KEYS = Keys()


def gang_job(conn, nodes: int = 2) -> str:
    QueueStore(conn, KEYS).apply(QueueConfig.model_validate({"name": QUEUE, "gang": {"max_nodes": 3}}))
    return enqueue(SPEC, QUEUE, resources={"cpus": 2}, nodes=nodes, conn=conn, keys=KEYS, user="alice").id


def usage(conn) -> dict:
    return {k.decode(): float(v) for k, v in conn.hgetall(KEYS.user_usage(QUEUE, "alice")).items()}


def round_over(conn) -> None:
    """The queue's assembling key expires (the round ran out of its assemble_timeout)."""
    wait_for(lambda: not conn.exists(KEYS.gang_assembling(QUEUE)), timeout_s=5, what="the round to run out")


# -- quotas: all N members or none ----------------------------------------------------------------------


def test_a_gang_the_users_quota_cannot_cover_in_full_holds_no_member(redis_conn):
    job_id = gang_job(redis_conn, nodes=3)  # 3 x 2 CPUs, the quota allows 4
    held, why, _rank, _round = hold(redis_conn, job_id, QUEUE, "node-a", nodes=3, user="alice", limits={"cpus": 4})
    assert (held, why) == (False, "quota")
    assert redis_conn.hgetall(KEYS.agent_ledger("node-a")) == {} and usage(redis_conn) == {}
    assert not redis_conn.exists(KEYS.gang_assembling(QUEUE))  # no round began: another gang may assemble


def test_the_first_hold_reserves_every_members_quota_and_a_complete_gang_charges_each_once(redis_conn):
    job_id = gang_job(redis_conn)
    held, why, _rank, _round = hold(redis_conn, job_id, QUEUE, "node-a", user="alice", limits={"cpus": 4})
    assert (held, why) == (True, "held")
    assert usage(redis_conn) == {
        "cpus": 4.0,
        "jobs": 2.0,
    }  # both members, before the second is held (a GPU count it does not ask for is not written)
    held, why, _rank, _round = hold(redis_conn, job_id, QUEUE, "node-b", user="alice", limits={"cpus": 4})
    assert (held, why) == (True, "complete")  # the reservation was its own: the quota is not counted twice
    assert usage(redis_conn) == {"cpus": 4.0, "jobs": 2.0}
    assert Records(redis_conn, KEYS).state(job_id) is State.STARTING
    for agent_id in ("node-a", "node-b"):  # each member's end frees its share
        assert Ledger(redis_conn, KEYS, agent_id).release(job_id)
    assert usage(redis_conn) == {}


def test_a_round_that_runs_out_gives_back_the_quota_of_the_members_never_held(redis_conn):
    job_id = gang_job(redis_conn, nodes=3)
    held, _why, rank, round_ = hold(
        redis_conn, job_id, QUEUE, "node-a", nodes=3, user="alice", limits={"cpus": 6}, timeout_s=0.2
    )
    assert held and usage(redis_conn)["cpus"] == 6.0
    round_over(redis_conn)
    assert script(redis_conn, "node-a").drop(job_id, round_, QUEUE, "alice")  # the gang service gives it up
    assert usage(redis_conn) == {"cpus": 2.0, "jobs": 1.0}  # only node-a's own entry's share is left
    assert Ledger(redis_conn, KEYS, "node-a").release(job_id)
    assert usage(redis_conn) == {}
    assert gang.read(redis_conn, KEYS, job_id).members[rank].state == gang.RELEASED


def test_a_new_round_takes_back_a_reservation_no_holder_gave_back(redis_conn):
    job_id = gang_job(redis_conn)
    hold(redis_conn, job_id, QUEUE, "node-a", user="alice", limits={"cpus": 4}, timeout_s=0.2)
    Ledger(redis_conn, KEYS, "node-a").release(job_id)  # node-a was lost: the reaper emptied its ledger
    round_over(redis_conn)
    held, why, _rank, round_ = hold(redis_conn, job_id, QUEUE, "node-b", user="alice", limits={"cpus": 4})
    assert (held, why, round_) == (True, "held", 2)
    assert usage(redis_conn) == {"cpus": 4.0, "jobs": 2.0}  # round 2's reservation, not 2's + 1's


# -- forged fields and other rounds --------------------------------------------------------------------------


def test_a_record_whose_nodes_the_submitter_rewrote_is_not_held(redis_conn):
    job_id = gang_job(redis_conn)
    redis_conn.hset(KEYS.job(job_id), "nodes", "1")  # after the agent read nodes: 2
    held, why, _rank, _round = hold(redis_conn, job_id, QUEUE, "node-a")
    assert (held, why) == (False, "nodes_changed")
    assert redis_conn.hgetall(KEYS.agent_ledger("node-a")) == {} and not redis_conn.exists(KEYS.gang(job_id))


@pytest.mark.parametrize("forged", [{"state": "running"}, {"cancel_requested": "1"}])
def test_a_record_that_is_not_a_queued_uncanceled_job_is_not_held(redis_conn, forged):
    job_id = gang_job(redis_conn)
    redis_conn.hset(KEYS.job(job_id), mapping=forged)
    held, _why, _rank, _round = hold(redis_conn, job_id, QUEUE, "node-a")
    assert not held and redis_conn.hgetall(KEYS.agent_ledger("node-a")) == {}


def test_only_the_agent_holding_a_rank_in_this_round_sets_its_state(redis_conn):
    job_id = gang_job(redis_conn)
    _held, _why, rank, round_ = hold(redis_conn, job_id, QUEUE, "node-a")
    before = gang.read(redis_conn, KEYS, job_id)
    assert script(redis_conn, "node-b").member(job_id, round_, rank, gang.RUNNING, container="evil") == []
    assert script(redis_conn, "node-a").member(job_id, round_ + 1, rank, gang.RUNNING) == []  # a newer round
    assert gang.read(redis_conn, KEYS, job_id) == before


def test_a_member_of_an_older_round_cannot_join_the_newer_one(redis_conn):
    job_id = gang_job(redis_conn)
    _held, _why, _rank, old_round = hold(redis_conn, job_id, QUEUE, "node-a", timeout_s=0.2)
    round_over(redis_conn)
    held, _why, rank, new_round = hold(redis_conn, job_id, QUEUE, "node-b")
    assert held and (rank, new_round) == (0, old_round + 1)
    # node-a still believes it holds rank 0 of the old round: its ready, or its end, changes nothing
    assert script(redis_conn, "node-a").member(job_id, old_round, 0, gang.READY, port=29500) == []
    assert script(redis_conn, "node-a").member(job_id, new_round, 0, gang.READY, port=29500) == []
    table = gang.read(redis_conn, KEYS, job_id)
    assert [(m.rank, m.agent, m.state, m.round) for m in table.current()] == [(0, "node-b", gang.HELD, new_round)]
    assert table.port is None
    # and its drop of the old round leaves the new round's hold alone
    assert script(redis_conn, "node-a").drop(job_id, old_round, QUEUE, "")
    assert gang.read(redis_conn, KEYS, job_id) == table
