"""Issue 23: a sweep config is bounded before anything walks it. ``sweep create`` with any range, any
``q``, NaN or a secret reference where enqueue refuses one answers in under a second with one line
and exit 2, nothing written (a grid is counted, never listed, before its 10,000-trial limit)."""

from __future__ import annotations

import contextlib
import json
import threading
import time

import pytest
from conftest import run_cli
from launchbay.client import sweeps
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from sweep_helpers import sweep_file, trainer_job

from launchbay.errors import ValidationError

pytestmark = pytest.mark.integration

METRIC = {"name": "loss", "goal": "minimize"}
HUGE_INT = int("1" + "0" * 330)  # "an integer bound 1e330"


def create(redis_conn, redis_url, path):
    """What the CLI prints, and how long ``sweeps.create`` itself takes (in-process: a CLI process on a
    busy 2-core machine takes about a second just to import)."""
    started = time.monotonic()
    with contextlib.suppress(ValidationError):
        sweeps.create(path, "sweeps", conn=redis_conn, keys=Keys())
    took_s = time.monotonic() - started
    for key in redis_conn.keys(f"{Keys().namespace}:s*"):  # what an accepted one wrote: the CLI makes it again
        redis_conn.delete(key)
    return run_cli("sweep", "create", str(path), "-q", "sweeps", "--redis-url", redis_url), took_s


def sweep_keys(conn):
    return sorted(k.decode() for k in conn.keys(f"{Keys().namespace}:s*"))


@pytest.mark.parametrize(
    ("method", "parameter", "body", "expected"),
    [
        ("grid", "seed", {"min": 0, "max": 20_000_000}, "the grid has 20,000,001 combinations; at most 10,000"),
        ("grid", "seed", {"min": 0, "max": 10**15}, "the grid has 1,000,000,000,000,001 combinations"),
        ("grid", "trainer.learning_rate", {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 1e-12}, "combinations; at most 10,000"),
        ("grid", "trainer.learning_rate", {"distribution": "q_uniform", "min": 0.0, "max": 1e300, "q": 1e-300}, "the grid has more combinations; at most 10,000"),
        ("random", "seed", {"min": 0, "max": 10**15}, None),  # a random sweep over a wide range is fine
        ("random", "trainer.learning_rate", {"distribution": "log_uniform", "min": 1000, "max": 1001}, "bounds are natural logs"),
        ("random", "trainer.learning_rate", {"distribution": "log_uniform", "min": -1000, "max": -1}, "must lie within ±708"),
        ("random", "seed", {"min": 0, "max": HUGE_INT}, "max 100000000000... (331 characters) is out of range"),
        ("random", "trainer.learning_rate", {"values": [float("nan")]}, "values: 0 is nan; JSON has no NaN"),
        ("random", "trainer.learning_rate", {"value": float("inf")}, "value: 0 is inf; JSON has no NaN"),
        ("random", "seed", {"values": list(range(10_001))}, "10,001 values; at most 10,000"),
    ],
)  # fmt: skip
def test_any_range_or_q_gets_one_line_within_a_second(
    redis_conn, redis_url, tmp_path, method, parameter, body, expected
):
    trainer_job(redis_conn, tmp_path)
    path = sweep_file(tmp_path, {"method": method, "metric": METRIC, "parameters": {parameter: body}})
    result, took_s = create(redis_conn, redis_url, path)
    assert took_s < 1.0, f"sweep create took {took_s:.2f} s"
    if expected is None:
        assert result.returncode == 0, result.stderr
        return
    assert result.returncode == 2, (result.stdout, result.stderr)
    assert expected in result.stderr
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    assert sweep_keys(redis_conn) == []


def test_a_run_cap_past_the_limit_is_refused(redis_conn, redis_url, tmp_path):
    trainer_job(redis_conn, tmp_path)
    body = {"method": "random", "metric": METRIC, "run_cap": 10**9, "parameters": {"seed": {"values": [1, 2]}}}
    result, _took_s = create(redis_conn, redis_url, sweep_file(tmp_path, body))
    assert (
        result.returncode == 2 and "run_cap 1,000,000,000 is more than a sweep makes: at most 10,000" in result.stderr
    )


def test_a_secret_reference_is_refused_where_enqueue_refuses_it(redis_conn, redis_url, tmp_path):
    trainer_job(redis_conn, tmp_path)
    QueueStore(redis_conn, Keys()).apply(
        QueueConfig.model_validate({"name": "sweeps", "secrets": {"TOKEN": {"env": "X"}}})
    )
    enqueued = run_cli("enqueue", str(tmp_path / "job.yaml"), "-q", "sweeps", "--set", "trainer.model=${secret:TOKEN}",
                       "--redis-url", redis_url)  # fmt: skip
    assert (
        enqueued.returncode == 2
        and "a secret reference is allowed only in a field whose schema says format: secret" in enqueued.stderr
    )
    body = {
        "method": "grid",
        "metric": METRIC,
        "parameters": {"trainer.model": {"values": ["small", "${secret:TOKEN}"]}},
    }
    result, _took_s = create(redis_conn, redis_url, sweep_file(tmp_path, body))
    assert result.returncode == 2, result.stderr
    assert (
        "parameter 'trainer.model': trainer.model: a secret reference is allowed only in a field whose schema says format: secret"
        in result.stderr
    )
    assert sweep_keys(redis_conn) == []


GOOD = {"method": "grid", "metric": METRIC, "max_parallel": 2, "parameters": {"seed": {"values": [1, 2, 3]}}}


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"config": {**GOOD, "parameters": {"seed": {"min": 0, "max": 20_000_000}}}}, "the grid has 20,000,001 combinations"),
        ({"config": {**GOOD, "method": "random", "parameters": {"trainer.learning_rate": {"distribution": "log_uniform", "min": -1000, "max": -1}}}}, "must lie within ±708"),
        ({"config": {**GOOD, "method": "random", "parameters": {"seed": {"min": 0, "max": HUGE_INT}}}}, "is out of range"),
        ({"config": {**GOOD, "parameters": {"trainer.learning_rate": {"values": [float("nan")]}}}}, "values: 0 is nan"),
        ({"config": {**GOOD, "run_cap": 10**9}}, "run_cap 1,000,000,000 is more than a sweep makes"),
        ({"config": "{not json"}, "its config is not JSON"),
        ({"config": {**GOOD, "description": "x" * (300 << 10)}}, "field config (307,"),
        ({"name": "x" * 100_000}, "field name (100,000 bytes; at most 1,024)"),
        ({"template": {"run_config": {}}}, "the sweep's job template needs run_config and file_overrides"),
        ({"config": {**GOOD, "parameters": {"seed.inner": {"values": [1]}}}}, "parameter 'seed.inner': "),
    ],
)  # fmt: skip
def test_the_driver_ends_a_sweep_whose_hash_fails_validation_with_the_reason_and_drives_the_others(
    redis_conn, tmp_path, fields, expected
):
    """What a sweep's owner writes into its hash after ``sweep create`` is validated again by the driver,
    as create validates it: the sweep ends ``stopped`` with the reason (it stayed ``running`` for ever,
    or cost ~800 MB a pass); another sweep of the queue goes on."""
    from launchbay.sweeps.driver import SweepDriver

    trainer_job(redis_conn, tmp_path)
    good, _ = sweeps.create(sweep_file(tmp_path, GOOD), "sweeps", conn=redis_conn, keys=Keys())
    bad, _ = sweeps.create(sweep_file(tmp_path, GOOD, name="bad.yaml"), "sweeps", conn=redis_conn, keys=Keys())
    written = {k: v if isinstance(v, str) else json.dumps(v) for k, v in fields.items()}
    redis_conn.hset(Keys().sweep(bad), mapping=written)
    redis_conn.sadd(Keys().sweeps_active, bad)  # where the driver looked before issue 23

    started = time.monotonic()
    SweepDriver(redis_conn, Keys(), "a1", ["sweeps"], threading.Event()).pass_once()
    assert time.monotonic() - started < 5

    state, message = (v.decode() for v in redis_conn.hmget(Keys().sweep(bad), ["state", "message"]))
    assert state == "stopped" and message.startswith("refused by the driver on a1: ") and expected in message, message
    assert not redis_conn.exists(Keys().sweep_journal(bad)) and not redis_conn.exists(f"{Keys().sweep(bad)}:journal")
    jobs = [j.decode() for j in redis_conn.zrange(Keys().queue_jobs("sweeps"), 0, -1)]
    assert sorted(jobs) == [f"{good}-0", f"{good}-1"]


def test_a_sweep_whose_study_is_at_the_old_owner_writable_key_ends_with_the_reason(redis_conn, tmp_path):
    """Studies moved from ``sweep:ID:journal`` (its owner could write it) to ``study:ID``: a sweep open
    across the upgrade would pair new trials with its old trials' jobs (same ids), so it ends instead."""
    from launchbay.sweeps.driver import SweepDriver

    trainer_job(redis_conn, tmp_path)
    old, _ = sweeps.create(sweep_file(tmp_path, GOOD), "sweeps", conn=redis_conn, keys=Keys())
    redis_conn.rpush(Keys().legacy_sweep_journal(old), json.dumps({"op_code": 0, "worker_id": "w"}))
    SweepDriver(redis_conn, Keys(), "a1", ["sweeps"], threading.Event()).pass_once()
    state, message = (v.decode() for v in redis_conn.hmget(Keys().sweep(old), ["state", "message"]))
    assert state == "stopped" and "create the sweep again" in message, message
    assert not redis_conn.zrange(Keys().queue_jobs("sweeps"), 0, -1)
