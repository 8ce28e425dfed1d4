"""The agent loop end to end on real Redis, with the fake container runtime (agent/daemon.py).

Agents run in threads of the test (``AgentThread``) or, where a crash or a race between
processes matters, in their own process (``spawn_agent``).
"""

from __future__ import annotations

import json
import multiprocessing
import os
import threading
import time
from collections import defaultdict
from typing import Any, Dict, List, Optional

import pytest
import redis
from conftest import free_port, run_cli
from launchbay.agent.daemon import Agent
from launchbay.agent.ledger import Ledger, LedgerEntry
from launchbay.agent.reaper import Reaper
from launchbay.agent.runtime import AGENT_ID_LABEL, JOB_ID_LABEL, MANAGED_LABEL
from launchbay.agent.runtime_fake import FakeProgram, FakeRuntime
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config import lifecycle, rq_bridge
from launchbay.queue_config.agents import read_agents
from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.store import QueueStore
from test_control_support import agent_settings, make_queue, put_job, record, wait_for

pytestmark = pytest.mark.integration

TERMINAL = {"finished", "failed", "canceled"}


class AgentThread:
    """An Agent running in a thread of the test; ``stop`` is what SIGTERM does."""

    def __init__(self, conn, settings: AgentSettings, runtime: FakeRuntime, *, once: bool = False) -> None:
        self.agent = Agent(settings, conn=conn, runtime=runtime)
        self.runtime = runtime
        self.exit_code: Optional[int] = None
        self.thread = threading.Thread(target=self._run, args=(once,), daemon=True)
        self.thread.start()

    def _run(self, once: bool) -> None:
        self.exit_code = self.agent.run(once=once)

    def stop(self, *, drain: bool = False, timeout_s: float = 30) -> None:
        self.agent.request_stop(drain=drain)
        self.join(timeout_s)

    def join(self, timeout_s: float = 30) -> None:
        self.thread.join(timeout_s)
        assert not self.thread.is_alive(), "the agent did not stop"


@pytest.fixture
def start_agent(redis_conn):
    started: List[AgentThread] = []

    def start(settings: AgentSettings, runtime: Optional[FakeRuntime] = None, *, once: bool = False) -> AgentThread:
        agent = AgentThread(redis_conn, settings, runtime or FakeRuntime(), once=once)
        started.append(agent)
        return agent

    yield start
    for agent in started:
        if agent.thread.is_alive():
            agent.agent.request_stop(drain=False)
            agent.thread.join(30)
        agent.agent.supervisor.detach_all()
        for container_id in list(agent.runtime.containers):
            agent.runtime.remove(container_id)


def run_agent_process(url: str, settings: Dict[str, Any], once: bool, env: Dict[str, str]) -> None:
    """Entry point of an agent in its own process, with the fake runtime (its containers die with it)."""
    os.environ.update(env)
    conn = redis.Redis.from_url(url)
    agent = Agent(AgentSettings(**settings), conn=conn, runtime=FakeRuntime(default=FakeProgram(run_s=0.01)))
    agent.run(once=once)


@pytest.fixture
def spawn_agent(redis_url):
    context = multiprocessing.get_context("spawn")
    processes: List[Any] = []

    def spawn(settings: AgentSettings, *, once: bool = False, env: Optional[Dict[str, str]] = None):
        values = settings.model_dump()
        process = context.Process(target=run_agent_process, args=(redis_url, values, once, env or {}), daemon=True)
        process.start()
        processes.append(process)
        return process

    yield spawn
    for process in processes:
        if process.is_alive():
            process.kill()
        process.join(10)


def state_of(conn, job_id: str) -> Optional[str]:
    return record(conn, job_id).get("state")


def ended(conn, job_ids) -> bool:
    return all(state_of(conn, j) in TERMINAL for j in job_ids)


def agent_hash(conn, agent_id: str) -> Dict[str, str]:
    return {k.decode(): v.decode() for k, v in conn.hgetall(Keys().agent(agent_id)).items()}


# -- claiming and waking ------------------------------------------------------------------------------


def test_a_job_enqueued_to_an_idle_agent_starts_without_waiting_for_the_poll_timer(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    running = start_agent(agent_settings(tmp_path, poll_interval_s=60, reaper_interval_s=60))
    wait_for(lambda: redis_conn.exists(Keys().agent_alive("agent-a")), what="the first heartbeat")
    time.sleep(0.3)  # let the agent settle into its wait
    enqueued_at = time.monotonic()
    job_id = put_job(redis_conn)
    wait_for(lambda: state_of(redis_conn, job_id) == "finished", timeout_s=30, what="the job to finish")
    assert time.monotonic() - enqueued_at < 20, "woken by the enqueued event, not the 60 s poll"
    wait_for(lambda: running.agent.counters["finished"] == 1, what="the finished count")
    assert running.agent.counters["claimed"] == 1


def test_once_mode_runs_every_job_that_fits_then_exits(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    job_ids = [put_job(redis_conn, cpus=0.5) for _ in range(6)]
    never = put_job(redis_conn, cpus=4096)  # no host this big: it stays queued
    running = start_agent(agent_settings(tmp_path, max_jobs=2), once=True)
    running.join(30)
    assert running.exit_code == 0
    assert {state_of(redis_conn, j) for j in job_ids} == {"finished"}
    assert state_of(redis_conn, never) == "queued"
    counters = running.agent.counters.snapshot()
    assert counters["claimed"] == 6 and counters["finished"] == 6 and counters["released"] == 6
    assert Ledger(redis_conn, Keys(), "agent-a").entries() == {}
    assert agent_hash(redis_conn, "agent-a")["status"] == "stopped"


def test_two_agent_processes_racing_over_100_jobs_run_each_exactly_once(redis_conn, tmp_path, spawn_agent):
    make_queue(redis_conn)
    job_ids = [put_job(redis_conn) for _ in range(100)]
    processes = [
        spawn_agent(agent_settings(tmp_path / name, agent_id=name, max_jobs=4), once=True)
        for name in ("agent-a", "agent-b")
    ]
    for process in processes:
        process.join(120)
        assert process.exitcode == 0
    records = [record(redis_conn, j) for j in job_ids]
    assert {r["state"] for r in records} == {"finished"}
    assert {r["attempts"] for r in records} == {1}, "no job was claimed twice"
    claimed = {name: json.loads(agent_hash(redis_conn, name)["counters"])["claimed"] for name in ("agent-a", "agent-b")}
    assert sum(claimed.values()) == 100
    assert {r["agent"] for r in records} <= {"agent-a", "agent-b"}
    assert rq_bridge.rq_queue(redis_conn, "default").count == 0


def test_jobs_needing_one_or_two_gpus_never_share_a_gpu(redis_conn, tmp_path, start_agent, monkeypatch):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h200x4")
    make_queue(redis_conn)
    job_ids = [
        put_job(redis_conn, gpus=1 + i % 2, env={"LAUNCHBAY_FAKE_RUN_S": str(0.05 + (i % 3) * 0.05)}) for i in range(24)
    ]
    running = start_agent(agent_settings(tmp_path, max_jobs=8), once=True)
    running.join(60)
    windows: Dict[str, list] = defaultdict(list)
    for job_id in job_ids:
        rec = record(redis_conn, job_id)
        assert rec["state"] == "finished"
        assert (
            len(rec["gpus"])
            == len(set(rec["gpus"]))
            == json.loads(redis_conn.hget(Keys().job(job_id), "request"))["gpus"]
        )
        for gpu in rec["gpus"]:
            windows[gpu].append((rec["starting_at"], rec["finished_at"], job_id))
    assert set(windows) <= {"0", "1", "2", "3"}
    for gpu, spans in windows.items():
        spans.sort()
        for (_, end, first), (start, _, second) in zip(spans, spans[1:]):
            assert start >= end, f"jobs {first} and {second} overlapped on GPU {gpu}"
    assert max(len(s) for s in windows.values()) > 1, "GPUs were reused"


def test_a_gpu_that_disappears_gets_no_new_jobs(redis_conn, tmp_path, start_agent, monkeypatch):
    listing = tmp_path / "gpus.csv"
    gpu0 = "# fields: index, uuid, name, memory.total, memory.used, memory.free, utilization.gpu\n"
    gpu0 += "0, GPU-a, NVIDIA A100-SXM4-80GB, 81920, 0, 81920, 0\n"
    listing.write_text(gpu0 + "1, GPU-b, NVIDIA A100-SXM4-80GB, 81920, 0, 81920, 0\n")
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "file")
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI_FILE", str(listing))
    make_queue(redis_conn)
    start_agent(agent_settings(tmp_path, inventory_refresh_s=0.1))

    def capacity_gpus() -> List[str]:
        raw = redis_conn.get(Keys().agent_capacity("agent-a"))
        return [g["id"] for g in json.loads(raw)["gpus"]] if raw else []

    wait_for(lambda: capacity_gpus() == ["0", "1"], what="both GPUs in the capacity")
    listing.write_text(gpu0)
    wait_for(lambda: capacity_gpus() == ["0"], what="GPU 1 to leave the capacity")
    job_ids = [put_job(redis_conn, gpus=1, env={"LAUNCHBAY_FAKE_RUN_S": "0.1"}) for _ in range(3)]
    wait_for(lambda: ended(redis_conn, job_ids), what="the jobs to end")
    assert [record(redis_conn, j)["gpus"] for j in job_ids] == [["0"]] * 3


def test_constraints_route_a_job_only_to_an_agent_with_matching_labels(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    start_agent(agent_settings(tmp_path / "us", agent_id="agent-us", labels={"zone": "us"}))
    start_agent(agent_settings(tmp_path / "eu", agent_id="agent-eu", labels={"zone": "eu"}))
    job_ids = [put_job(redis_conn, constraints={"zone": "eu"}) for _ in range(5)]
    wait_for(lambda: ended(redis_conn, job_ids), what="the jobs to end")
    assert {record(redis_conn, j)["agent"] for j in job_ids} == {"agent-eu"}


def test_a_paused_queue_is_not_served_until_resumed(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    QueueStore(redis_conn, Keys()).pause("default")
    running = start_agent(agent_settings(tmp_path))
    job_id = put_job(redis_conn)
    wait_for(lambda: redis_conn.exists(Keys().agent_alive("agent-a")), what="the first heartbeat")
    time.sleep(0.5)
    assert state_of(redis_conn, job_id) == "queued"
    QueueStore(redis_conn, Keys()).resume("default")
    wait_for(lambda: state_of(redis_conn, job_id) == "finished", what="the job to run after resume")
    assert running.agent.counters["claimed"] == 1


# -- cancel, docker health, stopping --------------------------------------------------------------------


def test_a_cancel_stops_the_running_container_and_records_it(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    start_agent(agent_settings(tmp_path, poll_interval_s=60))
    job_id = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "60"})
    wait_for(lambda: state_of(redis_conn, job_id) == "running", what="the job to run")
    assert lifecycle.cancel(redis_conn, Keys(), job_id) == "cancel_requested"
    wait_for(lambda: state_of(redis_conn, job_id) == "canceled", timeout_s=10, what="the cancel")
    assert record(redis_conn, job_id)["reason"] == "canceled_by_user"


def test_with_docker_unreachable_the_agent_claims_nothing_reports_unhealthy_and_resumes(
    redis_conn, tmp_path, start_agent
):
    make_queue(redis_conn)
    runtime = FakeRuntime()
    runtime.engine_down = True
    start_agent(agent_settings(tmp_path), runtime)
    job_id = put_job(redis_conn)
    wait_for(lambda: agent_hash(redis_conn, "agent-a").get("status") == "unhealthy", what="the unhealthy status")
    assert agent_hash(redis_conn, "agent-a")["docker"] == "down"
    # the last beat as `launchbay agents` shows it (the fleet summary; the hash is rewritten only on a change)
    first_beat = read_agents(redis_conn, Keys())[0]["beat_at"]
    wait_for(lambda: read_agents(redis_conn, Keys())[0]["beat_at"] > first_beat, what="the next heartbeat")
    assert redis_conn.exists(Keys().agent_alive("agent-a"))
    assert state_of(redis_conn, job_id) == "queued"
    runtime.engine_down = False
    wait_for(lambda: state_of(redis_conn, job_id) == "finished", what="the job once Docker is back")
    wait_for(lambda: agent_hash(redis_conn, "agent-a")["status"] == "healthy", what="the healthy status")


def test_drain_waits_for_running_jobs_before_exiting(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    running = start_agent(agent_settings(tmp_path))
    job_id = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "1"})
    wait_for(lambda: state_of(redis_conn, job_id) == "running", what="the job to run")
    later = put_job(redis_conn)
    running.stop(drain=True)
    assert state_of(redis_conn, job_id) == "finished"
    assert state_of(redis_conn, later) in ("queued", "finished")
    assert agent_hash(redis_conn, "agent-a")["status"] == "stopped"


def test_stopping_without_drain_leaves_the_container_running_and_the_hash_says_stopping(
    redis_conn, tmp_path, start_agent
):
    make_queue(redis_conn)
    runtime = FakeRuntime()
    running = start_agent(agent_settings(tmp_path), runtime)
    job_id = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "60"})
    wait_for(lambda: state_of(redis_conn, job_id) == "running", what="the job to run")
    running.stop()
    assert runtime.container_for(job_id).status == "running"
    assert state_of(redis_conn, job_id) == "running"
    assert agent_hash(redis_conn, "agent-a")["status"] == "stopping"
    assert Ledger(redis_conn, Keys(), "agent-a").get(job_id) is not None


# -- restarts, adoption and orphans ----------------------------------------------------------------------


def test_a_restarted_agent_adopts_its_running_job_which_finishes_once(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    runtime = FakeRuntime()
    settings = agent_settings(tmp_path)
    first = start_agent(settings, runtime)
    job_id = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "1.5"})
    wait_for(lambda: state_of(redis_conn, job_id) == "running", what="the job to run")
    container_id = runtime.container_for(job_id).container_id
    first.stop()
    second = start_agent(settings, runtime)
    wait_for(lambda: state_of(redis_conn, job_id) == "finished", what="the adopted job to finish")
    assert second.agent.counters["adopted"] == 1 and second.agent.counters["claimed"] == 0
    assert record(redis_conn, job_id)["attempts"] == 1
    wait_for(lambda: runtime.removed == [container_id], what="the one container, not started again, to be removed")
    wait_for(lambda: not Ledger(redis_conn, Keys(), "agent-a").entries(), what="the ledger to be released")


def test_a_job_claimed_but_never_started_goes_back_to_the_front_of_its_queue(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    behind = put_job(redis_conn)
    job_id = put_job(redis_conn, priority="high")
    # What a claim leaves when the agent dies before creating the container.
    redis_conn.lrem(rq_bridge.rq_queue(redis_conn, "default").key, 1, job_id)
    Records(redis_conn, Keys()).transition(
        job_id, State.STARTING, allowed_from=[State.QUEUED], agent="agent-a", host="h", attempts=1
    )
    entry = LedgerEntry(job_id, "default", 0.0, 0, (), time.time(), None)
    redis_conn.hset(Keys().agent_ledger("agent-a"), job_id, entry.to_json())
    running = start_agent(agent_settings(tmp_path, max_jobs=1), once=True)
    running.join(30)
    assert running.agent.counters["requeued_unstarted"] == 1
    first, second = sorted([record(redis_conn, job_id), record(redis_conn, behind)], key=lambda r: r["starting_at"])
    assert first["id"] == job_id, "it went back to the front"
    assert first["state"] == "finished" and first["attempts"] == 2
    assert second["state"] == "finished"


def managed_container(runtime: FakeRuntime, job_id: str, agent_id: str = "agent-a", run_s: float = 60) -> str:
    labels = {MANAGED_LABEL: "1", JOB_ID_LABEL: job_id, AGENT_ID_LABEL: agent_id}
    return runtime.create_and_start({"labels": labels, "environment": {"LAUNCHBAY_FAKE_RUN_S": str(run_s)}})


def test_containers_of_ended_foreign_or_unknown_jobs_are_removed_at_start(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    ended_job = put_job(redis_conn)
    Records(redis_conn, Keys()).transition(ended_job, State.FAILED, allowed_from=[State.QUEUED])
    requeued_job = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "0.05"})
    runtime = FakeRuntime()
    orphans = [
        managed_container(runtime, ended_job),
        managed_container(runtime, requeued_job),  # the reaper put it back while this agent was away
        managed_container(runtime, "no-such-job"),
    ]
    running = start_agent(agent_settings(tmp_path), runtime)
    wait_for(lambda: set(orphans) <= set(runtime.removed), what="the orphans to be removed")
    wait_for(lambda: state_of(redis_conn, requeued_job) == "finished", what="the requeued job to run afresh")
    wait_for(lambda: running.agent.counters["orphans_removed"] == 3, what="the orphan count")


def test_a_container_taken_away_by_the_reaper_is_removed_while_the_agent_runs(redis_conn, tmp_path, start_agent):
    make_queue(redis_conn)
    runtime = FakeRuntime()
    start_agent(agent_settings(tmp_path), runtime)
    job_id = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "60"})
    wait_for(lambda: state_of(redis_conn, job_id) == "running", what="the job to run")
    container_id = runtime.container_for(job_id).container_id
    # Another agent decided agent-a was lost (it had been frozen), and failed its job.
    outcome = Reaper(redis_conn, Keys(), agent_id="agent-b", queue_config_for=QueueStore(redis_conn, Keys()).get).reap(
        "agent-a"
    )
    assert outcome == {job_id: "failed"}
    wait_for(lambda: container_id in runtime.removed, what="the taken-away container to be removed")
    rec = record(redis_conn, job_id)
    assert rec["state"] == "failed" and rec["reason"] == "agent_lost", "the reaper's verdict stands"


def test_a_claim_whose_launch_redis_cut_short_goes_back_to_its_queue_and_runs(
    redis_conn, tmp_path, start_agent, caplog
):
    """Redis went away between the claim and the hand-over to the supervisor (CI saw it under load)."""
    make_queue(redis_conn)
    runtime = FakeRuntime()
    running = start_agent(agent_settings(tmp_path), runtime)
    wait_for(lambda: redis_conn.exists(Keys().agent_alive("agent-a")), what="the first heartbeat")
    records = running.agent.records
    read_record = records.load  # the claim cycle reads the claimed job's JobRecord before the hand-over
    refused: List[str] = []

    def load_once_refused(job_id: str):
        if not refused and threading.current_thread() is running.thread:
            refused.append(job_id)
            raise redis.ConnectionError("Error 111 connecting to 127.0.0.1. Connection refused.")
        return read_record(job_id)

    records.load = load_once_refused
    with caplog.at_level("WARNING", logger="launchbay.agent.reconcile"):
        job_id = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "0.1"})
        wait_for(lambda: state_of(redis_conn, job_id) == "finished", timeout_s=30, what="the job to run after all")

    assert refused == [job_id], "the claimed job's record could not be read at hand-over"
    assert record(redis_conn, job_id)["attempts"] == 2, "claimed, put back at the front, claimed again"
    assert [r.getMessage() for r in caplog.records if "launch was cut short" in r.getMessage()] == [
        f"job {job_id} was claimed by this agent but no one watched it (its launch was cut short): requeued"
    ]
    wait_for(lambda: not Ledger(redis_conn, Keys(), "agent-a").entries(), what="the ledger to be released")
    assert len(runtime.removed) == 1, "one container: the first claim never created one"


def test_a_running_container_of_this_agent_that_no_thread_watches_is_adopted_by_the_sweep(
    redis_conn, tmp_path, start_agent
):
    make_queue(redis_conn)
    runtime = FakeRuntime()
    running = start_agent(agent_settings(tmp_path), runtime)
    warm_up = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "0"})
    wait_for(lambda: state_of(redis_conn, warm_up) == "finished", what="a first job: start-up adoption is over")
    # What a launch cut short after the container started would leave: a claim, a container, no watcher.
    # (Its queue is one agent-a does not serve, so the agent cannot claim it while this is set up.)
    make_queue(redis_conn, "parked")
    job_id = put_job(redis_conn, "parked")
    redis_conn.lrem(rq_bridge.rq_queue(redis_conn, "parked").key, 1, job_id)
    container_id = managed_container(runtime, job_id, run_s=1)
    Records(redis_conn, Keys()).transition(
        job_id,
        State.RUNNING,
        allowed_from=[State.QUEUED],
        agent="agent-a",
        host="h",
        attempts=1,
        container=container_id,
    )
    entry = LedgerEntry(job_id, "parked", 0.0, 0, (), time.time(), None)
    redis_conn.hset(Keys().agent_ledger("agent-a"), job_id, entry.to_json())

    wait_for(lambda: state_of(redis_conn, job_id) == "finished", what="the adopted job to finish")
    assert running.agent.counters["adopted"] == 1
    assert record(redis_conn, job_id)["attempts"] == 1, "seen through, not started again"
    wait_for(lambda: container_id in runtime.removed, what="its container to be removed")


# -- lost agents --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["fail", "requeue"])
def test_a_killed_agents_job_is_failed_or_requeued_within_ttl_and_grace(
    redis_conn, tmp_path, start_agent, spawn_agent, policy
):
    make_queue(redis_conn, retry={"on_agent_lost": policy, "max_requeues": 1})
    settings = agent_settings(tmp_path / "a", heartbeat_ttl_s=1.0, lost_grace_s=0.5)
    doomed = spawn_agent(settings)
    job_id = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "600"})
    wait_for(lambda: state_of(redis_conn, job_id) == "running", what="the job to run on agent-a")
    survivor = start_agent(agent_settings(tmp_path / "b", agent_id="agent-b", reaper_interval_s=0.2))
    doomed.kill()
    killed_at = time.monotonic()
    if policy == "fail":
        wait_for(lambda: state_of(redis_conn, job_id) == "failed", timeout_s=10, what="agent_lost")
        rec = record(redis_conn, job_id)
        assert rec["reason"] == "agent_lost" and "agent agent-a stopped heartbeating" in rec["message"]
    else:
        wait_for(lambda: record(redis_conn, job_id).get("agent") == "agent-b", timeout_s=10, what="the requeue")
        rec = record(redis_conn, job_id)
        assert rec["attempts"] == 2
    elapsed = time.monotonic() - killed_at
    assert elapsed < settings.heartbeat_ttl_s + settings.lost_grace_s + 5, "seconds, with slack for a busy machine"
    wait_for(lambda: not redis_conn.sismember(Keys().agents, "agent-a"), what="agent-a to be forgotten")
    assert Ledger(redis_conn, Keys(), "agent-a").entries() == {}
    wait_for(lambda: survivor.agent.counters["reaped_jobs"] == 1, what="the reaped count")


def test_the_reaper_looks_again_when_an_agent_could_turn_lost_not_a_whole_interval_later(
    redis_conn, tmp_path, start_agent, spawn_agent
):
    """With a reaper interval (30 s) far longer than TTL + grace (1.5 s), detection still takes TTL + grace."""
    make_queue(redis_conn)
    doomed = spawn_agent(agent_settings(tmp_path / "a", heartbeat_ttl_s=1.0, lost_grace_s=0.5))
    job_id = put_job(redis_conn, env={"LAUNCHBAY_FAKE_RUN_S": "600"})
    wait_for(lambda: state_of(redis_conn, job_id) == "running", what="the job to run on agent-a")
    survivor = start_agent(agent_settings(tmp_path / "b", agent_id="agent-b", reaper_interval_s=30.0))
    wait_for(lambda: redis_conn.exists(Keys().agent_alive("agent-b")), what="the survivor's first beat")
    doomed.kill()
    killed_at = time.monotonic()

    wait_for(lambda: state_of(redis_conn, job_id) == "failed", timeout_s=25, what="agent_lost")
    elapsed = time.monotonic() - killed_at

    assert record(redis_conn, job_id)["reason"] == "agent_lost"
    assert elapsed < 10, f"freed {elapsed:.1f} s after the kill: the reaper waited for its 30 s interval"
    wait_for(lambda: survivor.agent.counters["reaped_jobs"] == 1, what="the reaped count")


def test_the_reaper_says_when_the_first_alive_key_expires(redis_conn):
    for agent_id in ("soon", "later", "forever", "gone"):
        redis_conn.sadd(Keys().agents, agent_id)
    redis_conn.set(Keys().agent_alive("soon"), "1", px=4_000)
    redis_conn.set(Keys().agent_alive("later"), "1", px=20_000)
    redis_conn.set(Keys().agent_alive("forever"), "1")
    reaper = Reaper(redis_conn, Keys(), agent_id="live", queue_config_for=QueueStore(redis_conn, Keys()).get)

    assert reaper.run_once() == {"gone": {}}
    assert 3.0 < reaper.next_expiry_s <= 4.0
    redis_conn.set(Keys().reaper_lock, "someone-else", ex=30)
    assert reaper.run_once() == {} and reaper.next_expiry_s is None, "the lock holder does the looking"


def test_a_job_requeued_too_often_fails_instead(redis_conn, tmp_path):
    make_queue(redis_conn, retry={"on_agent_lost": "requeue", "max_requeues": 1})
    job_id = put_job(redis_conn)
    redis_conn.lrem(rq_bridge.rq_queue(redis_conn, "default").key, 1, job_id)
    Records(redis_conn, Keys()).transition(
        job_id, State.RUNNING, allowed_from=[State.QUEUED], agent="gone", host="h", attempts=2
    )
    redis_conn.hset(Keys().agent_ledger("gone"), job_id, LedgerEntry(job_id, "default", 0, 0, (), 0, None).to_json())
    redis_conn.sadd(Keys().agents, "gone")
    reaper = Reaper(redis_conn, Keys(), agent_id="live", queue_config_for=QueueStore(redis_conn, Keys()).get)
    assert reaper.run_once() == {"gone": {job_id: "failed"}}
    rec = record(redis_conn, job_id)
    assert rec["reason"] == "agent_lost" and "max_requeues is 1" in rec["message"]


def test_only_one_reaper_works_at_a_time(redis_conn):
    redis_conn.set(Keys().reaper_lock, "someone-else", ex=30)
    redis_conn.sadd(Keys().agents, "gone")
    reaper = Reaper(redis_conn, Keys(), agent_id="live", queue_config_for=QueueStore(redis_conn, Keys()).get)
    assert reaper.run_once() == {}
    assert redis_conn.sismember(Keys().agents, "gone")
    redis_conn.delete(Keys().reaper_lock)
    assert reaper.run_once() == {"gone": {}}
    assert redis_conn.get(Keys().reaper_lock) is None, "without hold_s the lock goes at once"


def test_a_fleet_looks_for_lost_agents_once_per_interval_not_once_per_agent(redis_conn):
    def reaper(agent_id: str) -> Reaper:
        queue_config_for = QueueStore(redis_conn, Keys()).get
        return Reaper(redis_conn, Keys(), agent_id=agent_id, queue_config_for=queue_config_for, hold_s=30)

    first, second = reaper("first"), reaper("second")
    redis_conn.sadd(Keys().agents, "gone")
    assert first.run_once() == {"gone": {}}
    assert redis_conn.get(Keys().reaper_lock) == b"first" and 25_000 < redis_conn.pttl(Keys().reaper_lock) <= 30_000
    redis_conn.sadd(Keys().agents, "gone-too")
    assert second.run_once() == {}, "another agent waits for the holder's interval to pass"
    assert 25 < second.next_expiry_s <= 30, "and looks again when the holder's lock expires"
    assert first.run_once() == {"gone-too": {}}, "the holder may look again (when the next alive key expires)"


# -- what other machines see --------------------------------------------------------------------------------


def test_the_heartbeat_publishes_capacity_and_liveness_as_documented(redis_conn, tmp_path, start_agent, monkeypatch):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h200x4")
    make_queue(redis_conn)
    settings = agent_settings(tmp_path, labels={"zone": "eu"}, queues=["default", "cpu"], max_jobs=3, gpus=["0", "2"])
    start_agent(settings)
    wait_for(lambda: redis_conn.exists(Keys().agent_alive("agent-a")), what="the first heartbeat")
    ttl_ms = redis_conn.pttl(Keys().agent_alive("agent-a"))
    assert 0 < ttl_ms <= (settings.heartbeat_ttl_s + settings.lost_grace_s) * 1000
    capacity = json.loads(redis_conn.get(Keys().agent_capacity("agent-a")))
    assert capacity["agent_id"] == "agent-a" and capacity["host"] == "test-host"
    assert capacity["labels"] == {"zone": "eu"} and capacity["queues"] == ["default", "cpu"]
    assert capacity["max_jobs"] == 3 and [g["id"] for g in capacity["gpus"]] == ["0", "2"]
    assert capacity["gpus"][0]["name"] == "NVIDIA H200-141C"
    assert redis_conn.sismember(Keys().agents, "agent-a")


def test_launchbay_agents_lists_live_agents_with_capacity_and_running_jobs(
    redis_url, redis_conn, tmp_path, start_agent
):
    make_queue(redis_conn)
    start_agent(agent_settings(tmp_path))
    job_id = put_job(redis_conn, cpus=0.5, env={"LAUNCHBAY_FAKE_RUN_S": "60"})
    wait_for(lambda: state_of(redis_conn, job_id) == "running", what="the job to run")
    wait_for(lambda: agent_hash(redis_conn, "agent-a").get("status") == "healthy", what="a beat after the first pass")
    result = run_cli("agents", "--json", "--redis-url", redis_url)
    assert result.returncode == 0, result.stderr
    (agent,) = json.loads(result.stdout)
    assert agent["agent_id"] == "agent-a" and agent["alive"] and agent["status"] == "healthy"
    assert agent["capacity"]["queues"] == ["default"]
    assert [j["job_id"] for j in agent["jobs"]] == [job_id] and agent["jobs"][0]["cpus"] == 0.5
    table = run_cli("agents", "--redis-url", redis_url)
    assert "agent-a" in table.stdout and job_id in table.stdout


def test_launchbay_inventory_subtracts_what_the_agent_has_claimed(redis_url, redis_conn, tmp_path):
    entry = LedgerEntry("job-1", "default", 0.5, 100, ("1",), time.time(), None)
    redis_conn.hset(Keys().agent_ledger("agent-a"), "job-1", entry.to_json())
    env = {
        "LAUNCHBAY_FAKE_NVIDIA_SMI": "h200x4",
        "LAUNCHBAY_AGENT_NVIDIA_SMI": str(agent_settings(tmp_path).nvidia_smi),
    }
    result = run_cli("inventory", "--json", "--agent-id", "agent-a", "--redis-url", redis_url, env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["free"]["gpus"] == ["0", "2", "3"]
    assert report["free"]["cpus"] == pytest.approx(report["capacity"]["cpus"] - 0.5)
    assert [g["claimed_by"] for g in report["gpus"]] == [None, "job-1", None, None]
    text = run_cli("inventory", "--agent-id", "agent-a", "--redis-url", redis_url, env=env)
    assert "NVIDIA H200-141C" in text.stdout and "job-1" in text.stdout


def test_agent_check_exits_1_when_redis_is_unreachable(tmp_path):
    result = run_cli("agent", "--check", "--redis-url", f"redis://127.0.0.1:{free_port()}/0", timeout=60)
    assert result.returncode == 1
    assert "redis: unreachable" in result.stdout


def test_agent_check_exits_0_when_redis_and_docker_answer(redis_url, docker_client):
    result = run_cli("agent", "--check", "--redis-url", redis_url)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "redis: ok" in result.stdout and "docker: ok" in result.stdout


def test_agent_once_with_docker_unreachable_is_one_line_and_exit_code_3(redis_url, tmp_path):
    env = {"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock"}
    result = run_cli("agent", "--once", "--redis-url", redis_url, "--state-dir", str(tmp_path), env=env)
    assert result.returncode == 3
    assert result.stderr.strip().splitlines()[-1].startswith("error: the Docker engine does not answer")
