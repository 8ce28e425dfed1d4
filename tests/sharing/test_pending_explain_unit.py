"""``pending.explain`` on plain data: the order of the checks and the estimated start."""

from __future__ import annotations

from launchbay.queue_config.agents import LedgerEntry
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.pending import AgentView, Ahead, explain

NOW = 1_000_000.0


def agent(agent_id, gpus, entries=(), queues=("q",)):
    capacity = {
        "agent_id": agent_id, "queues": list(queues), "cpus": 16.0, "memory_mib": 65536, "max_jobs": 8,
        "gpus": [{"id": str(i), "name": "NVIDIA H100"} for i in range(gpus)],
    }  # fmt: skip
    return AgentView(capacity, list(entries))


def running(job_id, gpus, max_runtime_s):
    return LedgerEntry(job_id, "q", 1.0, 1024, tuple(gpus), NOW - 100, max_runtime_s, "bob")


def job(gpus, priority="normal", user="alice"):
    fields = {"queue": "q", "request": {"gpus": gpus, "cpus": 1}, "priority": priority, "submitter": user}
    return JobRecord.from_fields("j", fields)


def test_never_fits_names_the_largest_agent_and_what_it_lacks():
    answer = explain(job(4), [agent("small", 1), agent("big", 2)], paused=False, now=NOW)
    assert answer.reason == "never_fits" and answer.estimated_start is None
    assert "the largest, big: needs 4 GPU(s) of one model, the agent has 2 such of 2" in answer.detail


def test_the_start_is_known_only_when_every_job_in_the_way_has_a_max_runtime():
    bounded = agent("a", 2, [running("r1", ["0"], 600), running("r2", ["1"], 1200)])
    assert explain(job(2), [bounded], paused=False, now=NOW).estimated_start == NOW - 100 + 1200
    assert explain(job(1), [bounded], paused=False, now=NOW).estimated_start == NOW - 100 + 600
    unbounded = agent("b", 2, [running("r3", ["0"], None), running("r4", ["1"], 600)])
    assert explain(job(2), [unbounded], paused=False, now=NOW).estimated_start is None
    answer = explain(job(2), [unbounded], paused=False, now=NOW)
    assert answer.reason == "resources" and "b has 2/2 GPUs busy (jobs r3, r4)" in answer.detail


def test_quota_comes_before_priority_and_priority_before_resources():
    busy = agent("a", 1, [running("r1", ["0"], 60)])
    ahead = [Ahead("urgent", "high")]
    over = explain(job(1), [busy], paused=False, ahead=ahead, quota={"gpus": 1}, usage={"gpus": 1}, now=NOW)
    assert over.reason == "quota" and over.estimated_start is None
    behind = explain(job(1), [busy], paused=False, ahead=ahead, now=NOW)
    assert behind.reason == "priority" and "urgent" in behind.detail
    assert explain(job(1, "high"), [busy], paused=False, ahead=ahead, now=NOW).reason == "resources"


def test_an_agent_serving_other_queues_does_not_count():
    answer = explain(job(0), [agent("elsewhere", 2, queues=("other",))], paused=False, now=NOW)
    assert (answer.reason, answer.detail) == ("no_agent", "no live agent serves queue q")
