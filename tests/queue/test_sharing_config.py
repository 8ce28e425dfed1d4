"""The preemption and fair_share queue options through `launchbay queue apply`: kept, or refused in one line."""

from __future__ import annotations

import pytest
from conftest import run_cli
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.store import QueueStore

pytestmark = pytest.mark.integration

BAD = [
    ("preemption: {enabled: true, grace: 2h}\nlimits: {max_runtime: 1h}\n", "preemption.grace (7200s) is longer"),
    ("fair_share: {half_life: -1}\n", "half_life must be a positive duration"),
    ("fair_share: {half_life: -1d}\n", "half_life '-1d' is not a duration"),
    (
        "preemption: {enabled: true, min_runtime_before_preempt: -5m}\n",
        "min_runtime_before_preempt '-5m' is not a duration",
    ),
    ("limits: {max_runtime: 0s}\n", "max_runtime must be positive"),
    ("preemption: {enabled: true, gracee: 30s}\n", "preemption.gracee"),
    ("fair_share: {weights: {alice: 0}}\n", "weight of user 'alice' must be a number above 0"),
    ("fair_share: {wieghts: {alice: 2}}\n", "fair_share.wieghts"),
]


@pytest.mark.parametrize("body, message", BAD, ids=[b[1][:30] for b in BAD])
def test_a_bad_sharing_option_is_one_clear_line_and_exit_2(tmp_path, redis_url, redis_conn, body, message):
    path = tmp_path / "q.yaml"
    path.write_text("name: shared\n" + body)
    done = run_cli("queue", "apply", str(path), env={"LAUNCHBAY_REDIS_URL": redis_url})
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert QueueStore(redis_conn, Keys()).names() == []  # nothing half-written


def test_the_sharing_options_are_kept_with_their_units(tmp_path, redis_url, redis_conn):
    path = tmp_path / "q.yaml"
    path.write_text(
        "name: shared\npreemption: {enabled: true, grace: 2m, min_runtime_before_preempt: 10m}\n"
        "fair_share: {half_life: 12h, weights: {alice: 2}}\n"
    )
    done = run_cli("queue", "apply", str(path), env={"LAUNCHBAY_REDIS_URL": redis_url})
    assert done.returncode == 0, done.stderr
    config = QueueStore(redis_conn, Keys()).get("shared")
    assert (config.preemption.grace_s, config.preemption.min_runtime_before_preempt_s) == (120, 600)
    assert config.fair_share.half_life_s == 43200 and config.fair_share.weights == {"alice": 2.0}


def test_zero_means_no_minimum_run_time_and_no_grace(tmp_path, redis_url, redis_conn):
    """`min_runtime_before_preempt: 0s` is the natural "no minimum"; it was refused as "must be positive"."""
    path = tmp_path / "q.yaml"
    path.write_text("name: shared\npreemption: {enabled: true, grace: 0s, min_runtime_before_preempt: 0s}\n")
    done = run_cli("queue", "apply", str(path), env={"LAUNCHBAY_REDIS_URL": redis_url})
    assert done.returncode == 0, done.stderr
    config = QueueStore(redis_conn, Keys()).get("shared")
    assert (config.preemption.grace_s, config.preemption.min_runtime_before_preempt_s) == (0, 0)
