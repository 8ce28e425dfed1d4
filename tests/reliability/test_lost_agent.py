"""An agent killed (SIGKILL) and not started again: with the default heartbeat settings another
agent's reaper notices once heartbeat TTL + grace (25 s) have passed since the last beat (it looks
again right when an alive key is due to expire), and the job fails with ``agent_lost`` or goes
back to its queue, as the queue's ``retry`` policy says: within 30 s of the kill, as promised.

Both runs use the agent's default timings, so each takes about half a minute; the measured
detection time is printed (docs/reliability.md keeps the figures).
"""

from __future__ import annotations

import time

import pytest
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config.keys import Keys
from reliability_helpers import AgentFleet, agents_json, make_queue, put_job, record, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

DEFAULTS = AgentSettings(agent_id="defaults")
#: TTL + grace after the last beat (which came before the kill); the reaper looks right then.
WORST_CASE_S = DEFAULTS.alive_ttl_s
#: The survivor's loop waking and doing the work on a busy 2-core machine: the docs promise 30 s.
SLACK_S = 5.0


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client, beats={})  # the agent's defaults
    yield fleet
    fleet.close()


def _freed_at(conn, job_id: str, policy: str):
    """When the reaper acted on the job: its ``failed_at``, or the ``queued_at`` of its requeue."""
    rec = record(conn, job_id)
    if policy == "fail":
        return rec.get("failed_at")
    requeued = rec.get("reason") == "requeued_agent_lost" or (rec.get("attempts") or 0) >= 2
    return rec.get("queued_at") if requeued else None


@pytest.mark.parametrize("policy", ["fail", "requeue"])
def test_a_killed_agent_that_stays_down_has_its_job_freed_within_ttl_and_grace_by_queue_policy(
    redis_conn, redis_url, base_image, fleet, capsys, policy
):
    make_queue(redis_conn, "lost", retry={"on_agent_lost": policy, "max_requeues": 1})
    job_id = put_job(redis_conn, "lost", image=base_image, command=["sleep", "300"])
    doomed = fleet.start("doomed", queues=("lost",))
    wait_for(lambda: record(redis_conn, job_id).get("state") == "running", timeout_s=60, what=doomed.output())
    fleet.start("survivor", queues=("lost",))
    wait_for(
        lambda: {a["agent_id"] for a in agents_json(redis_url) if a["alive"]} == {"doomed", "survivor"},
        timeout_s=30,
        what="both agents to beat",
    )
    last_beat = next(a["beat_at"] for a in agents_json(redis_url) if a["agent_id"] == "doomed")
    killed_at = time.time()
    doomed.kill()

    freed_at = wait_for(lambda: _freed_at(redis_conn, job_id, policy), timeout_s=WORST_CASE_S + 30, what="the reaper")
    detection_s = freed_at - killed_at
    with capsys.disabled():
        print(
            f"\nlost agent ({policy}): job freed {detection_s:.1f} s after SIGKILL "
            f"({freed_at - last_beat:.1f} s after its last beat; TTL + grace {DEFAULTS.alive_ttl_s:g} s)"
        )

    rec = record(redis_conn, job_id)
    if policy == "fail":
        assert (rec["state"], rec["reason"]) == ("failed", "agent_lost")
        assert rec["message"] == "agent doomed stopped heartbeating"
    else:
        # The survivor may already have claimed it again: then it runs there, as attempt 2.
        ran_again = wait_for(
            lambda: (r := record(redis_conn, job_id)).get("agent") == "survivor" and r.get("state") == "running",
            timeout_s=60,
            what="the survivor to run the requeued job",
        )
        assert ran_again and record(redis_conn, job_id)["attempts"] == 2
    assert detection_s <= WORST_CASE_S + SLACK_S
    # The reaper records the job's end first, then releases the ledger entry and forgets the agent
    # (a few more round trips): wait for that last step, which deletes the ledger in one transaction.
    wait_for(lambda: not redis_conn.sismember(Keys().agents, "doomed"), timeout_s=10, what="the reaper to finish")
    assert redis_conn.hlen(Keys().agent_ledger("doomed")) == 0, "the lost agent's ledger is emptied"
    assert redis_conn.hget(Keys().agent("doomed"), "status") == b"lost"
    assert "doomed" not in {a["agent_id"] for a in agents_json(redis_url) if a["alive"]}


def test_a_lost_agent_that_comes_back_removes_the_container_of_the_job_it_lost(
    redis_conn, redis_url, base_image, fleet, docker_client
):
    """The reaper cannot reach another host's engine: the old container runs on until its agent returns."""
    make_queue(redis_conn, "lost", retry={"on_agent_lost": "fail"})
    job_id = put_job(redis_conn, "lost", image=base_image, command=["sleep", "300"])
    fast = {"LAUNCHBAY_AGENT_HEARTBEAT_INTERVAL_S": "0.5", "LAUNCHBAY_AGENT_HEARTBEAT_TTL_S": "2"}
    fast |= {"LAUNCHBAY_AGENT_LOST_GRACE_S": "1", "LAUNCHBAY_AGENT_REAPER_INTERVAL_S": "0.5"}
    doomed = fleet.start("doomed", queues=("lost",), env=fast)
    wait_for(lambda: record(redis_conn, job_id).get("state") == "running", timeout_s=60, what=doomed.output())
    container_id = record(redis_conn, job_id)["container"]
    doomed.kill()
    fleet.start("survivor", queues=("lost",), env=fast)
    wait_for(lambda: record(redis_conn, job_id).get("state") == "failed", timeout_s=30, what="the reaper")
    assert docker_client.containers.get(container_id).status == "running", "nobody could stop it"

    fleet.agents["doomed"].start()
    wait_for(lambda: fleet.containers() == [], timeout_s=30, what="the returning agent to remove its orphan")
    assert record(redis_conn, job_id)["reason"] == "agent_lost"
    assert "removing orphan container" in doomed.output()
