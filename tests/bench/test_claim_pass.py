"""The agent's claim pass after a lost race (agent/claim_cycle.py), found while measuring the claim rate.

With several agents on one queue they all pick the same head job and all but one lose the race.
The pass used to read the queues again after every lost race, then after every claim; it now hands
claim.lua its next candidates of the same read, best first, settles the lost races inside that one
call, keeps the read after a claim, and reads again only once an out-of-date read is used up.
"""

from __future__ import annotations

import time

import pytest
from launchbay.agent import claim
from launchbay.agent.claim import Claimer
from launchbay.agent.daemon import Agent
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.runtime_fake import FakeRuntime
from launchbay.agent.settings import AgentSettings
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.matching import Capacity
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

pytestmark = pytest.mark.integration


@pytest.fixture
def agent_with_rival(redis_conn, tmp_path, monkeypatch):
    """An agent on queue ``default`` holding 3 jobs; another agent claims the head job right after the first read."""
    QueueStore(redis_conn, Keys()).apply(QueueConfig(name="default"))
    job_ids = [enqueue({"name": "probe", "image": "img:1"}, "default", conn=redis_conn).id for _ in range(3)]
    reads = []
    real_read = claim.QueueReader.read

    def read_then_lose_the_head(self, could_run=None):
        snapshot = real_read(self, could_run)
        if not reads:
            rival = Claimer(redis_conn, Keys(), agent_id="rival", host="rival")
            taken = LedgerEntry(job_ids[0], "default", 0.0, 0, (), claimed_at=time.time())
            assert rival.claim(taken, Capacity(cpus=1.0, memory_mib=1, slots=1)).claimed
        reads.append([c.job_id for c in snapshot.candidates])
        return snapshot

    monkeypatch.setattr(claim.QueueReader, "read", read_then_lose_the_head)

    def make(lookahead: int) -> Agent:
        settings = AgentSettings(
            agent_id="agent-a",
            host="test-host",
            queues=["default"],
            lookahead=lookahead,
            state_dir=tmp_path / "state",
            nvidia_smi=str(tmp_path / "no-nvidia-smi"),
        )
        return Agent(settings, conn=redis_conn, runtime=FakeRuntime())

    yield make, job_ids, reads


def test_a_lost_race_tries_the_next_candidate_without_reading_the_queues_again(agent_with_rival, redis_conn):
    make, job_ids, reads = agent_with_rival
    agent = make(lookahead=64)
    assert agent.claims.run_pass() == 2
    agent.supervisor.wait_all(timeout_s=30)
    assert agent.counters["lost_races"] == 1
    # the first read serves both claims and the lost race; one more read finds the queue empty
    assert reads == [job_ids, []]
    records = Records(redis_conn, Keys())
    assert [records.as_json(j)["agent"] for j in job_ids] == ["rival", "agent-a", "agent-a"]


def test_when_an_out_of_date_read_has_nothing_left_the_agent_reads_once_more(agent_with_rival):
    make, job_ids, reads = agent_with_rival
    agent = make(lookahead=1)  # the read holds only the head, which the rival takes
    assert agent.claims.run_pass() == 2
    agent.supervisor.wait_all(timeout_s=30)
    assert reads == [job_ids[:1], job_ids[1:2], job_ids[2:3], []]
