"""Fair-share usage in Redis (queue_config/usage.py, agent/sharing.py): decayed, added atomically, read by placement."""

from __future__ import annotations

import threading

import pytest
from launchbay.agent.placement import Policy
from launchbay.agent.sharing import record_usage, with_usage
from launchbay.queue_config import usage
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig

DAY = 86_400


@pytest.fixture
def keys(redis_conn):
    return Keys("usage-test")


def test_usage_halves_after_one_half_life_and_adds_up(redis_conn, keys):
    usage.add(redis_conn, keys, "q", "ann", gpu_s=1000, cpu_s=80, now=0, half_life_s=DAY)
    assert usage.read(redis_conn, keys, "q", now=DAY, half_life_s=DAY) == {"ann": {"gpu_s": 500.0, "cpu_s": 40.0}}
    usage.add(redis_conn, keys, "q", "ann", gpu_s=100, cpu_s=0, now=DAY, half_life_s=DAY)
    assert usage.read(redis_conn, keys, "q", now=DAY, half_life_s=DAY)["ann"]["gpu_s"] == pytest.approx(600)


def test_agents_adding_at_once_lose_no_update(redis_conn, keys):
    def add_many():
        for _ in range(50):
            usage.add(redis_conn, keys, "q", "bob", gpu_s=1, cpu_s=2, now=100, half_life_s=DAY)

    threads = [threading.Thread(target=add_many) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert usage.read(redis_conn, keys, "q", now=100, half_life_s=DAY)["bob"] == {"gpu_s": 200.0, "cpu_s": 400.0}


def test_an_ended_run_counts_for_its_submitter_and_weights_divide_it(redis_conn, keys):
    config = QueueConfig.model_validate({"name": "q", "fair_share": {"half_life": "1d", "weights": {"ann": 2}}})
    record = {"queue": "q", "submitter": "ann", "starting_at": 1000.0, "gpus": ["0", "1"], "request": {"cpus": 4}}
    job_id = "0123456789abcdef"
    record_usage(redis_conn, keys, lambda _: config, job_id, JobRecord.from_fields(job_id, record), now=1100.0)
    unknown = JobRecord.from_fields(job_id, {**record, "submitter": None})
    record_usage(redis_conn, keys, lambda _: config, job_id, unknown, now=1010.0)
    policy = with_usage(Policy(), redis_conn, keys, lambda _: config, ["q"], now=1100.0)
    # ann: 200 GPU-s + 0.1 x 400 CPU-s, halved by her weight; a record with no submitter is "unknown".
    assert policy.usage["q"]["ann"] == pytest.approx(120.0, rel=1e-3)
    assert policy.usage["q"]["unknown"] == pytest.approx(24.0, rel=1e-3)


def test_a_queue_without_fair_share_keeps_fifo(redis_conn, keys):
    config = QueueConfig.model_validate({"name": "q", "fair_share": {"enabled": False}})
    record = {"queue": "q", "submitter": "ann", "starting_at": 0.0, "gpus": [], "request": {"cpus": 1}}
    job_id = "0123456789abcdef"
    record_usage(redis_conn, keys, lambda _: config, job_id, JobRecord.from_fields(job_id, record), now=50.0)
    assert usage.read(redis_conn, keys, "q", now=50.0, half_life_s=DAY) == {}
    assert with_usage(Policy(), redis_conn, keys, lambda _: config, ["q"]).usage == {}


def test_a_named_users_run_is_billed_to_the_owner_its_key_pins_whatever_its_record_says(redis_conn, keys):
    """issue 23: ``mallory`` rewrote her running job's ``submitter`` to bill ``ann``; the key says mallory."""
    config = QueueConfig.model_validate({"name": "q", "fair_share": {"half_life": "1d"}})
    record = {"queue": "q", "submitter": "ann", "starting_at": 1000.0, "gpus": ["0"], "request": {"cpus": 0}}
    job_id = "mallory_0123456789abcdef"
    record_usage(redis_conn, keys, lambda _: config, job_id, JobRecord.from_fields(job_id, record), now=1100.0)
    figures = usage.read(redis_conn, keys, "q", now=1100.0, half_life_s=DAY)
    assert set(figures) == {"mallory"} and figures["mallory"]["gpu_s"] == pytest.approx(100.0)
