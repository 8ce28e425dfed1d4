"""The sweep driver on a real Redis, with the agents' part played by ``sweep_helpers.Runner``.

These cover what the driver decides (which trials, when to prune, who drives, when the sweep ends)
fast enough to repeat over seeds; tests/sweeps/test_e2e_sweeps.py runs sweeps through real agents
and Docker.
"""

from __future__ import annotations

import itertools
import threading
import time

import pytest
from launchbay.client import sweeps
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.sweeps import driver as sweep_driver
from launchbay.sweeps import store as sweep_store
from launchbay.sweeps.driver import SweepDriver
from sweep_helpers import Runner, assert_bad_trials_pruned, bowl, sweep_file, trainer_job, trial_values

pytestmark = pytest.mark.integration

GRID = {
    "method": "grid",
    "metric": {"name": "loss", "goal": "minimize"},
    "max_parallel": 3,
    "parameters": {
        "trainer.learning_rate": {"values": [0.001, 0.01, 0.1]},
        "config.yaml:optimizer.momentum": {"values": [0.5, 0.7]},
    },
}


def make(conn, tmp_path, body, **kwargs):
    trainer_job(conn, tmp_path)
    sweep_id, _notes = sweeps.create(sweep_file(tmp_path, body), "sweeps", conn=conn, keys=Keys(), **kwargs)
    return sweep_id


def driver(conn, agent_id="a1"):
    return SweepDriver(conn, Keys(), agent_id, ["sweeps"], threading.Event())


def run_to_end(conn, sweep_id, runner, drivers, timeout_s=60.0):
    """Pass the drivers and run what they queue until the sweep ends (a lapsed lease takes time, not passes)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for d in drivers:
            d.pass_once()
        runner.run_all_queued()
        view = sweeps.show(conn, Keys(), sweep_id)
        if view["state"] in ("finished", "stopped"):
            return view
        time.sleep(0.01)
    raise AssertionError(f"sweep {sweep_id} did not end: {sweeps.show(conn, Keys(), sweep_id)}")


def test_a_grid_runs_every_combination_once_and_reports_the_best(redis_conn, tmp_path):
    sweep_id = make(redis_conn, tmp_path, GRID, user="alice")
    runner = Runner(redis_conn, "sweeps", lambda v: [bowl(v)])
    d = driver(redis_conn)
    d.pass_once()
    assert len(runner.queued()) == 3  # max_parallel
    view = run_to_end(redis_conn, sweep_id, runner, [d])

    records = Records(redis_conn, Keys())
    got = [trial_values(records.as_json(t["job_id"])) for t in view["trials"]]
    combos = sorted((v["lr"], v["momentum"]) for v in got)
    assert combos == sorted(itertools.product([0.001, 0.01, 0.1], [0.5, 0.7]))
    assert len(runner.started) == 6 == len(set(runner.started))
    assert view["state"] == "finished"
    assert view["best"]["params"] == {"trainer.learning_rate": 0.01, "config.yaml:optimizer.momentum": 0.7}
    assert view["best"]["value"] == pytest.approx(1.0)
    best_trial = next(t for t in view["trials"] if t["job_id"] == view["best"]["job_id"])
    job = records.as_json(view["best"]["job_id"])
    assert (job["sweep"], job["trial"], job["submitter"], job["queue"]) == (
        sweep_id,
        best_trial["number"],
        "alice",
        "sweeps",
    )
    assert job["run_config"]["trainer"]["batch_size"] == 32  # the spec's config stays under the swept key
    assert all(t["state"] == "finished" and t["value"] is not None for t in view["trials"])


BAYES = {
    "method": "bayes",
    "metric": {"name": "loss", "goal": "minimize"},
    "run_cap": 12,
    "max_parallel": 1,
    "parameters": {
        "trainer.learning_rate": {"distribution": "log_uniform_values", "min": 0.0001, "max": 1.0},
        "config.yaml:optimizer.momentum": {"min": 0.0, "max": 1.0},
    },
}


def best_after(conn, tmp_path, body, seed):
    sub = tmp_path / f"seed{seed}"
    sub.mkdir(parents=True)
    sweep_id = make(conn, sub, {**body, "seed": seed})
    view = run_to_end(conn, sweep_id, Runner(conn, "sweeps", lambda v: [bowl(v)]), [driver(conn)])
    assert len(view["trials"]) == 12 and view["state"] == "finished"
    return view["best"]["value"]


def test_bayes_gets_within_10_percent_of_the_optimum_on_most_seeds(redis_conn, tmp_path):
    """The optimum of ``bowl`` is 1.0. Seeds 0-19, run_cap 12, one trial at a time; random search alongside."""
    seeds = range(20)
    bayes = [best_after(redis_conn, tmp_path / "bayes", BAYES, seed) for seed in seeds]
    rand = [best_after(redis_conn, tmp_path / "random", {**BAYES, "method": "random"}, seed) for seed in seeds]
    within, within_random = sum(b <= 1.1 for b in bayes), sum(b <= 1.1 for b in rand)
    print(f"within 10% of the optimum: bayes {within}/20 seeds, random {within_random}/20")
    assert within >= 12, bayes


def test_hyperband_prunes_the_trials_whose_early_values_are_bad(redis_conn, tmp_path):
    body = {
        "method": "grid",
        "metric": {"name": "loss", "goal": "minimize"},
        "max_parallel": 1,
        "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 2, "eta": 3},  # one rung: step 1
        "seed": 0,
        "parameters": {"trainer.learning_rate": {"values": [0.01, 0.011, 0.012, 0.013, 0.5, 0.9, 0.8, 0.7]}},
    }
    sweep_id = make(redis_conn, tmp_path, body)
    runner = Runner(redis_conn, "sweeps", lambda v: [bowl({**v, "momentum": 0.7}) + 1.0 / (s + 1) for s in range(9)])
    d = driver(redis_conn)
    pruned_at = {}
    for _ in range(len(body["parameters"]["trainer.learning_rate"]["values"]) + 2):
        d.pass_once()
        for job_id in runner.queued():
            curve = runner.start(job_id, steps=0)
            for step in range(9):
                runner.log_steps(job_id, curve, step, step + 1)
                d.pass_once()
                if runner.cancel_if_asked(job_id):
                    pruned_at[job_id] = step
                    break
            else:
                runner.finish(job_id, curve[-1])
    view = run_to_end(redis_conn, sweep_id, runner, [d])
    by_lr = {t["params"]["trainer.learning_rate"]: t for t in view["trials"]}
    records = Records(redis_conn, Keys())
    pruned = {lr for lr, t in by_lr.items() if t["state"] == "canceled"}
    assert_bad_trials_pruned(view)
    for lr in pruned:
        record = records.as_json(by_lr[lr]["job_id"])
        assert (record["state"], record["reason"]) == ("canceled", "pruned")
        assert record["message"].startswith(f"pruned by sweep {sweep_id} at step ")
        assert pruned_at[by_lr[lr]["job_id"]] < 8  # stopped before its last step
    print(f"hyperband: pruned {sorted(pruned)} at steps {sorted(pruned_at.values())}")


def test_a_new_driver_takes_over_without_losing_or_doubling_a_trial(redis_conn, tmp_path, monkeypatch):
    monkeypatch.setattr(sweep_driver, "LEASE_S", 0.3)
    body = {**BAYES, "method": "random", "run_cap": 8, "max_parallel": 2, "seed": 3}
    sweep_id = make(redis_conn, tmp_path, body)
    runner = Runner(redis_conn, "sweeps", lambda v: [bowl(v)])
    first, second = driver(redis_conn, "a1"), driver(redis_conn, "a2")
    first.pass_once()
    second.pass_once()  # the lease is a1's: a2 makes nothing
    assert len(runner.queued()) == 2
    assert sweep_store.SweepStore(redis_conn, Keys()).lease_holder(sweep_id) == "a1"
    runner.run_all_queued()

    # a1 dies after asking Optuna for trial 2 and before writing its job
    real = sweep_driver.enqueue_trial
    monkeypatch.setattr(sweep_driver, "enqueue_trial", lambda *a: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        first._pass(sweep_id)
    monkeypatch.setattr(sweep_driver, "enqueue_trial", real)
    assert len(runner.queued()) == 0

    view = run_to_end(redis_conn, sweep_id, runner, [second])  # a1 never comes back; a2 waits out the lease
    assert view["driver"] is None and view["state"] == "finished"
    numbers = [t["number"] for t in view["trials"]]
    assert numbers == list(range(8))
    assert sorted(runner.started) == sorted(t["job_id"] for t in view["trials"])  # one job each, none twice
    assert all(t["state"] == "finished" for t in view["trials"])


def test_pause_makes_no_new_trials_and_stop_ends_once_the_running_ones_end(redis_conn, tmp_path):
    sweep_id = make(redis_conn, tmp_path, {**GRID, "max_parallel": 2})
    runner = Runner(redis_conn, "sweeps", lambda v: [bowl(v)])
    d = driver(redis_conn)
    d.pass_once()
    assert sweeps.command(redis_conn, Keys(), sweep_id, "pause") == "paused"
    runner.run_all_queued()
    d.pass_once()
    view = sweeps.show(redis_conn, Keys(), sweep_id)
    assert (view["state"], len(view["trials"]), len(runner.queued())) == ("paused", 2, 0)
    assert sweeps.command(redis_conn, Keys(), sweep_id, "resume") == "running"
    d.pass_once()
    assert len(runner.queued()) == 2
    assert sweeps.command(redis_conn, Keys(), sweep_id, "stop") == "stopping"
    d.pass_once()
    assert sweeps.show(redis_conn, Keys(), sweep_id)["state"] == "stopping"  # two trials still queued
    runner.run_all_queued()
    d.pass_once()
    view = sweeps.show(redis_conn, Keys(), sweep_id)
    assert (view["state"], len(view["trials"])) == ("stopped", 4)
    assert view["best"] is not None


def test_the_sweep_survives_a_redis_restart_with_aof(tmp_path):
    """Redis killed (SIGKILL) mid-sweep and started again on its AOF: the same driver goes on, no trial lost or doubled."""
    import redis
    from conftest import RedisServer

    server = RedisServer(tmp_path / "aof", "--appendonly", "yes", "--appendfsync", "always").start()
    try:
        conn = redis.Redis.from_url(server.url, socket_timeout=2)
        sweep_id = make(conn, tmp_path, {**BAYES, "method": "random", "run_cap": 8, "max_parallel": 2, "seed": 1})
        runner = Runner(conn, "sweeps", lambda v: [bowl(v)])
        d = driver(conn)
        for _ in range(2):
            d.pass_once()
            runner.run_all_queued()
        made_before = len(sweeps.show(conn, Keys(), sweep_id)["trials"])
        server.proc.kill()
        server.proc.wait()
        assert d.pass_once() is False  # Redis is gone: the pass says so and keeps nothing it read before
        server.start()
        view = run_to_end(conn, sweep_id, runner, [d])
    finally:
        server.stop()
    assert 0 < made_before < 8
    assert [t["number"] for t in view["trials"]] == list(range(8))
    assert sorted(runner.started) == sorted(t["job_id"] for t in view["trials"])
    assert all(t["state"] == "finished" for t in view["trials"])


def test_hyperband_with_three_rungs_saves_steps_on_bad_trials_and_never_prunes_the_best(
    redis_conn, tmp_path, monkeypatch
):
    """W&B's usual hyperband (min_iter 1, max_iter 9, eta 3: W&B's rungs at 1, 3 and 9 logged steps), with
    W&B's rule (a trial whose best value so far is behind the best third of those that reached its rung
    stops). The sweep's id is fixed so that the run is the same each time."""
    monkeypatch.setattr(sweeps, "new_job_id", lambda owner: "hb0sweep")
    body = {
        **BAYES,
        "method": "random",
        "seed": 7,
        "run_cap": 30,
        "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 9, "eta": 3},
    }
    sweep_id = make(redis_conn, tmp_path, body)
    runner = Runner(redis_conn, "sweeps", lambda v: [bowl(v) + 1.0 / (s + 1) for s in range(9)])
    d = driver(redis_conn)
    steps_run, final = {}, {}
    while sweeps.show(redis_conn, Keys(), sweep_id)["state"] != "finished":
        d.pass_once()
        for job_id in runner.queued():
            curve = runner.start(job_id, steps=0)
            final[job_id] = curve[-1]
            for step in range(9):
                runner.log_steps(job_id, curve, step, step + 1)
                steps_run[job_id] = step + 1
                d.pass_once()
                if runner.cancel_if_asked(job_id):
                    break
            else:
                runner.finish(job_id, curve[-1])
        d.pass_once()
    view = sweeps.show(redis_conn, Keys(), sweep_id)
    pruned = [t["job_id"] for t in view["trials"] if t["state"] == "canceled"]
    done = [t["job_id"] for t in view["trials"] if t["state"] == "finished"]
    saved = 1 - sum(steps_run.values()) / (9 * len(view["trials"]))
    print(f"hyperband, rungs 1, 3, 9: {len(pruned)}/30 pruned, {saved:.0%} of the steps saved")
    assert len(view["trials"]) == 30 and pruned and saved > 0.2
    assert min(final, key=final.get) in done  # the best trial ran to its end
    mean = lambda ids: sum(final[i] for i in ids) / len(ids)  # noqa: E731
    assert mean(pruned) > mean(done)  # what was stopped would have ended worse
