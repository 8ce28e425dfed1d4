"""Wake-ups that do not grow with the fleet (queue_config/events.py): an enqueue wakes at most
``WAKE_AT_MOST`` idle agents, each on its own channel, and the poll still gets a job claimed when the
woken agents cannot take it. Real Redis, real agents in threads, the fake runtime.
"""

from __future__ import annotations

import json
import time
from typing import Dict, List

import pytest
import redis
from launchbay.agent.inventory import InventoryProbe
from launchbay.client import enqueue
from launchbay.queue_config import events
from launchbay.queue_config.keys import Keys
from test_control_support import agent_settings, make_queue, record, wait_for
from test_daemon import start_agent  # noqa: F401  (the fixture)

pytestmark = pytest.mark.integration

SPEC = {"name": "probe", "image": "launchbay-test:fake", "env": {"LAUNCHBAY_FAKE_RUN_S": "0"}}
#: No pass but those an event or a release sets off: the poll, the reaper's timer and the inventory a minute away.
QUIET = {"poll_interval_s": 60.0, "reaper_interval_s": 60.0, "inventory_refresh_s": 60.0}


def idle_list(conn) -> List[str]:
    return [a.decode() for a in conn.lrange(Keys().idle("default"), 0, -1)]


class WakeWatch:
    """Every message on ``{ns}:events`` and the per-agent channels under it, by channel."""

    def __init__(self, conn) -> None:
        self.pubsub = conn.pubsub(ignore_subscribe_messages=True)
        self.pubsub.psubscribe(Keys().events + "*")
        self.seen: Dict[str, List[dict]] = {}
        wait_for(lambda: conn.pubsub_numpat() >= 1, what="the subscription")

    def drain(self) -> Dict[str, List[dict]]:
        """What arrived so far (called once the job ended, so its wake-ups were sent before that)."""
        # get_message answers None for a subscribe confirmation too: read for a short while, not until None.
        deadline = time.monotonic() + 0.3
        while time.monotonic() < deadline:
            message = self.pubsub.get_message(timeout=0.05)
            if message is not None:
                self.seen.setdefault(message["channel"].decode(), []).append(json.loads(message["data"]))
        return self.seen

    def agents_woken(self) -> List[str]:
        prefix = Keys().agent_events("")
        return sorted(channel[len(prefix) :] for channel in self.drain() if channel.startswith(prefix))


def test_an_enqueue_wakes_two_idle_agents_not_the_whole_fleet(redis_conn, tmp_path, start_agent):  # noqa: F811
    make_queue(redis_conn)
    names = [f"agent-{i}" for i in range(6)]
    for name in names:
        start_agent(agent_settings(tmp_path / name, agent_id=name, poll_interval_s=60.0))
    wait_for(lambda: sorted(idle_list(redis_conn)) == names, what="every idle agent on the queue's idle list")
    watch = WakeWatch(redis_conn)

    job_id = enqueue(SPEC, "default", conn=redis_conn).id

    wait_for(lambda: record(redis_conn, job_id)["state"] == "finished", what="the job to finish")
    woken = watch.agents_woken()
    assert len(woken) == events.WAKE_AT_MOST, f"woken: {woken}"
    assert record(redis_conn, job_id)["agent"] in woken
    shared = [m["type"] for m in watch.drain().get(Keys().events, [])]
    assert "enqueued" not in shared, "no enqueued message to every agent on the shared channel"
    # The woken agents put themselves back at the end of the list on their pass.
    wait_for(lambda: sorted(idle_list(redis_conn)) == names, what="the woken agents back on the idle list")


def test_a_job_the_woken_agents_cannot_fit_is_claimed_by_the_poll(redis_conn, tmp_path, start_agent):  # noqa: F811
    make_queue(redis_conn)
    host_cpus = InventoryProbe(agent_settings(tmp_path / "probe")).read().cpus
    small_names = ["small-1", "small-2"]
    for name in small_names:  # they keep back half the host's CPUs: a job wanting all of them does not fit
        start_agent(agent_settings(tmp_path / name, agent_id=name, poll_interval_s=60.0, reserve_cpus=host_cpus / 2))
    wait_for(lambda: idle_list(redis_conn) == small_names, what="the small agents on the idle list")
    big = start_agent(agent_settings(tmp_path / "big", agent_id="big", poll_interval_s=1.0))
    wait_for(lambda: idle_list(redis_conn)[-1:] == ["big"], what="the big agent behind them")
    full = big.agent.capacity().cpus
    watch = WakeWatch(redis_conn)

    job_id = enqueue(SPEC, "default", conn=redis_conn, resources={"cpus": full}).id

    wait_for(lambda: record(redis_conn, job_id)["state"] == "finished", timeout_s=20, what="the job to finish")
    assert record(redis_conn, job_id)["agent"] == "big"
    assert watch.agents_woken() == small_names, "only the small agents were woken; the big one found it by polling"


def test_with_an_acl_from_before_the_agent_channels_an_enqueue_still_wakes_the_queue(redis_conn, redis_url, caplog):
    """``&launchbay:events`` without the ``*``: the wake-up falls back to the shared channel, with one warning."""
    older = "resetkeys ~* resetchannels &launchbay:events +@all"  # docs/security.md's channel rule before
    redis_conn.execute_command("ACL", "SETUSER", "older-acl", "on", ">pw", *older.split())
    try:
        user = redis.Redis.from_url(redis_url, username="older-acl", password="pw")
        redis_conn.rpush(Keys().idle("default"), "agent-x")
        watch = WakeWatch(redis_conn)

        assert events.wake_idle(user, Keys(), "default") == []

        assert watch.drain().get(Keys().events) == [{"type": "enqueued", "queue": "default"}]
        assert "allow the channels &launchbay:events*" in caplog.text
    finally:
        redis_conn.execute_command("ACL", "DELUSER", "older-acl")


def test_an_agent_woken_for_one_job_is_woken_again_for_the_next(redis_conn, tmp_path, start_agent):  # noqa: F811
    """The agent skips its offer while it knows it is listed; a wake-up takes it off, so it offers again."""
    make_queue(redis_conn)
    start_agent(agent_settings(tmp_path / "solo", agent_id="solo", poll_interval_s=60.0))
    wait_for(lambda: idle_list(redis_conn) == ["solo"], what="the agent on the idle list")
    for _ in range(3):
        watch = WakeWatch(redis_conn)
        job_id = enqueue(SPEC, "default", conn=redis_conn).id
        # the poll is a minute away: only the wake-up gets the job claimed this soon
        wait_for(lambda j=job_id: record(redis_conn, j)["state"] == "finished", timeout_s=20, what="the job to finish")
        assert watch.agents_woken() == ["solo"]
        wait_for(lambda: idle_list(redis_conn) == ["solo"], what="the agent back on the idle list")


def test_a_job_waiting_for_room_is_claimed_when_the_job_before_it_ends(redis_conn, tmp_path, start_agent):  # noqa: F811
    """The pass a release sets off is skipped only when the last pass left nothing queued: here it left one."""
    make_queue(redis_conn)
    start_agent(agent_settings(tmp_path / "one", agent_id="one", max_jobs=1, **QUIET))
    wait_for(lambda: idle_list(redis_conn) == ["one"], what="the agent on the idle list")
    first = enqueue({**SPEC, "env": {"LAUNCHBAY_FAKE_RUN_S": "1.0"}}, "default", conn=redis_conn).id
    wait_for(lambda: record(redis_conn, first)["state"] == "running", what="the first job to run")
    second = enqueue(SPEC, "default", conn=redis_conn).id  # no idle agent to wake: the only one is full

    wait_for(lambda: record(redis_conn, first)["state"] == "finished", what="the first job to finish")
    # the poll is a minute away: the release's pass claims it
    wait_for(lambda: record(redis_conn, second)["state"] == "finished", timeout_s=10, what="the second job to finish")


def test_after_a_release_that_left_nothing_queued_a_new_job_still_wakes_the_agent(
    redis_conn,
    tmp_path,
    start_agent,  # noqa: F811
):
    """The release's pass was skipped (nothing to find); the agent stays listed, and the next enqueue wakes it."""
    make_queue(redis_conn)
    start_agent(agent_settings(tmp_path / "solo", agent_id="solo", **QUIET))
    wait_for(lambda: idle_list(redis_conn) == ["solo"], what="the agent on the idle list")
    first = enqueue(SPEC, "default", conn=redis_conn).id
    wait_for(lambda: record(redis_conn, first)["state"] == "finished", what="the first job to finish")
    time.sleep(0.5)  # the release and whatever pass it set off are over
    watch = WakeWatch(redis_conn)
    second = enqueue(SPEC, "default", conn=redis_conn).id
    wait_for(lambda: record(redis_conn, second)["state"] == "finished", timeout_s=10, what="the second job to finish")
    assert watch.agents_woken() == ["solo"]
