"""Sweeps end to end: real ``launchbay agent`` processes, real Docker, the CLI a person uses.

- a grid over a run-config key and a config-file key of examples/trainer runs every combination
  exactly once and reports the best;
- hyperband stops trials that log bad early values (``canceled``, reason ``pruned``);
- killing the agent that drives a sweep loses no trial and writes none twice.
The driver's decisions over many seeds are tested without Docker in tests/sweeps/.
"""

from __future__ import annotations

import itertools
import json
import signal
import sys
from pathlib import Path

import pytest
import test_e2e_agent
import test_e2e_trainer
import yaml
from conftest import run_cli
from launchbay.queue_config.keys import Keys
from test_control_support import make_queue, record, wait_for
from test_e2e_agent import log_lines, python
from test_e2e_trainer import enqueue

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "sweeps"))
from sweep_helpers import assert_bad_trials_pruned, trial_values

pytestmark = [pytest.mark.integration, pytest.mark.docker]
# Fixtures of the agent and trainer end-to-end tests.
agents, trainer_image, trainer_spec = (
    test_e2e_agent.agents,
    test_e2e_trainer.trainer_image,
    test_e2e_trainer.trainer_spec,
)


def sweep_cli(redis_url, *args, timeout=60):
    return run_cli("sweep", *args, env={"LAUNCHBAY_REDIS_URL": redis_url}, timeout=timeout)


def create(redis_url, tmp_path, body):
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(body, sort_keys=False))
    result = sweep_cli(redis_url, "create", str(path), "-q", "e2e")
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def wait_for_end(redis_url, sweep_id, agent_outputs, timeout=300):
    result = sweep_cli(redis_url, "show", sweep_id, "--wait", "--json", timeout=timeout)
    assert result.returncode == 0, (result.stderr, *[out() for out in agent_outputs])
    return json.loads(result.stdout), result.stderr


def test_a_grid_over_a_run_config_key_and_a_config_file_key_runs_each_combination_once(
    redis_url,
    redis_conn,
    trainer_spec,
    agents,
    tmp_path,
):
    make_queue(redis_conn, "e2e")
    agent = agents("sweep-grid", "--max-jobs", "2")
    first = enqueue(redis_url, trainer_spec, "--wait")  # the job records its inputs on its first run
    assert first.returncode == 0, first.stderr + agent.output()
    sweep_id = create(redis_url, tmp_path, {
        "job": str(trainer_spec), "method": "grid", "metric": {"name": "loss", "goal": "minimize"}, "max_parallel": 2,
        "parameters": {
            "trainer.learning_rate": {"values": [0.02, 0.2]},
            "config.yaml:optimizer.weight_decay": {"values": [0.0, 0.1]},
            "config.yaml:epochs": {"value": 2},
        },
    })  # fmt: skip
    view, progress = wait_for_end(redis_url, sweep_id, [agent.output])

    assert view["state"] == "finished" and len(view["trials"]) == 4
    assert progress.count("/4 ended, best ") == 4  # one progress line per ended trial
    jobs = {t["job_id"]: record(redis_conn, t["job_id"]) for t in view["trials"]}
    got = sorted((trial_values(r)["lr"], trial_values(r)["decay"]) for r in jobs.values())
    assert got == sorted(itertools.product([0.02, 0.2], [0.0, 0.1]))
    for trial in view["trials"]:
        assert trial["state"] == "finished" and jobs[trial["job_id"]]["sweep"] == sweep_id
        lr, decay = trial["params"]["trainer.learning_rate"], trial["params"]["config.yaml:optimizer.weight_decay"]
        applied = [line for line in log_lines(redis_conn, trial["job_id"]) if line.startswith("overrides applied:")]
        assert applied == [f"overrides applied: trainer.learning_rate={lr}, config.yaml:epochs=2, "
                           f"config.yaml:optimizer.weight_decay={decay}"], applied  # fmt: skip
        assert trial["value"] == pytest.approx(jobs[trial["job_id"]]["summary"]["loss"])
    best = min(view["trials"], key=lambda t: t["value"])
    assert view["best"] == {"job_id": best["job_id"], "params": best["params"], "value": best["value"]}
    table = sweep_cli(redis_url, "show", sweep_id).stdout
    assert f"best: loss {best['value']:.6g} in job {best['job_id']}" in table


# A job that logs a loss per step: bad learning rates are bad from the first step (bowl + 1/(step+1)).
CURVE_JOB = """
import json, math, os, time
lr = json.loads(os.environ["LAUNCHBAY_RUN_CONFIG"])["trainer"]["learning_rate"]
with open(os.path.join(os.environ["LAUNCHBAY_OUTPUT_DIR"], "metrics.jsonl"), "a") as out:
    for step in range(9):
        loss = 1 + (math.log10(lr) + 2) ** 2 + 1 / (step + 1)
        out.write(json.dumps({"_step": step, "loss": loss}) + "\\n")
        out.flush()
        time.sleep(0.4 if lr < 0.5 else 1.0)  # a bad trial would take 9 s; a pruned one stops after a step or two
"""


def curve_job(tmp_path, base_image, sleep_s=None):
    source = CURVE_JOB if sleep_s is None else CURVE_JOB.replace("0.4 if lr < 0.5 else 1.0", str(sleep_s))
    spec = {
        "name": "curve",
        "image": base_image,
        "command": python(source),
        "config": {"trainer": {"learning_rate": 0.01}},
        "inputs": {"run_config": {"include": ["trainer.learning_rate"], "schema": {"type": "object", "properties": {
            "trainer": {"type": "object", "properties": {"learning_rate": {"type": "number", "exclusiveMinimum": 0}}}}}}},
    }  # fmt: skip
    path = tmp_path / "curve.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_hyperband_stops_trials_that_log_bad_early_values(redis_url, redis_conn, base_image, agents, tmp_path):
    make_queue(redis_conn, "e2e")
    agent = agents("sweep-prune")
    sweep_id = create(redis_url, tmp_path, {
        "job": str(curve_job(tmp_path, base_image)), "method": "grid", "seed": 0, "max_parallel": 1,
        "metric": {"name": "loss", "goal": "minimize"},
        "early_terminate": {"type": "hyperband", "min_iter": 1, "max_iter": 2, "eta": 3},  # one rung: step 1
        "parameters": {"trainer.learning_rate": {"values": [0.01, 0.011, 0.012, 0.013, 0.5, 0.9, 0.8, 0.7]}},
    })  # fmt: skip
    view, _progress = wait_for_end(redis_url, sweep_id, [agent.output])

    assert_bad_trials_pruned(view)
    pruned = [t for t in view["trials"] if t["state"] == "canceled"]
    for trial in pruned:
        job = record(redis_conn, trial["job_id"])
        assert (job["state"], job["reason"]) == ("canceled", "pruned")
        assert job["message"].startswith(f"pruned by sweep {sweep_id} at step ")
        steps = redis_conn.xlen(Keys().job_metrics(trial["job_id"]))
        assert steps < 9, f"pruned trial {trial['job_id']} ran all its steps"
        assert trial["label"] == "canceled (pruned)"
    assert view["best"]["params"] == {"trainer.learning_rate": 0.01}


# The loss is a known function of two inputs, 1.0 at lr 0.01 and momentum 0.7 (sweep_helpers.bowl).
BOWL_JOB = """
import json, math, os
lr = json.loads(os.environ["LAUNCHBAY_RUN_CONFIG"])["trainer"]["learning_rate"]
momentum = json.loads(os.environ["LAUNCHBAY_FILE_OVERRIDES"])["config.yaml"]["optimizer"]["momentum"]
loss = 1.0 + (math.log10(lr) + 2.0) ** 2 + (momentum - 0.7) ** 2
with open(os.path.join(os.environ["LAUNCHBAY_OUTPUT_DIR"], "summary.json"), "w") as out:
    json.dump({"loss": loss}, out)
"""


def test_bayes_gets_within_10_percent_of_a_known_optimum_on_most_seeds(
    redis_url, redis_conn, base_image, agents, tmp_path
):
    make_queue(redis_conn, "e2e")
    agent = agents("sweep-bayes", "--max-jobs", "5")
    spec = {"name": "bowl", "image": base_image, "command": python(BOWL_JOB),
            "config": {"trainer": {"learning_rate": 0.1}},
            "inputs": {"run_config": {"include": ["trainer"]}, "files": {"config.yaml": {"include": ["optimizer"]}}}}  # fmt: skip
    (tmp_path / "bowl.yaml").write_text(yaml.safe_dump(spec))
    sweep_ids = []
    for seed in range(5):  # five sweeps at once, one trial at a time each: the draws of tests/sweeps' seeds 0-4
        (tmp_path / str(seed)).mkdir()
        sweep_ids.append(create(redis_url, tmp_path / str(seed), {
            "job": str(tmp_path / "bowl.yaml"), "method": "bayes", "seed": seed, "run_cap": 12, "max_parallel": 1,
            "metric": {"name": "loss", "goal": "minimize"},
            "parameters": {
                "trainer.learning_rate": {"distribution": "log_uniform_values", "min": 0.0001, "max": 1.0},
                "config.yaml:optimizer.momentum": {"min": 0.0, "max": 1.0},
            },
        }))  # fmt: skip
    best = []
    for sweep_id in sweep_ids:
        view, _progress = wait_for_end(redis_url, sweep_id, [agent.output])
        assert len(view["trials"]) == 12 and all(t["state"] == "finished" for t in view["trials"])
        best.append(view["best"]["value"])
    within = sum(value <= 1.1 for value in best)
    print(f"bayes, 12 trials, real agent: {within}/5 seeds within 10% of the optimum 1.0; best {best}")
    assert within >= 3, best


def test_killing_the_driving_agent_loses_and_duplicates_no_trial(redis_url, redis_conn, base_image, agents, tmp_path):
    # The queue puts back the jobs of a lost agent: the dead agent's running trial runs again, as the same job.
    make_queue(redis_conn, "e2e", retry={"on_agent_lost": "requeue"})
    one, two = agents("sweep-a"), agents("sweep-b")
    sweep_id = create(redis_url, tmp_path, {
        "job": str(curve_job(tmp_path, base_image, sleep_s=0.2)), "method": "random", "seed": 5, "run_cap": 8,
        "max_parallel": 2, "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"trainer.learning_rate": {"distribution": "log_uniform_values", "min": 0.001, "max": 1.0}},
    })  # fmt: skip
    lease = Keys().sweep_lease(sweep_id)

    def ended():
        view = json.loads(sweep_cli(redis_url, "show", sweep_id, "--json").stdout)
        return sum(1 for t in view["trials"] if t["ended"])

    wait_for(lambda: ended() >= 2, timeout_s=180, what="two trials to end")
    holder = redis_conn.get(lease).decode()
    victim, survivor = (one, two) if holder == "sweep-a" else (two, one)
    in_flight = [j.decode() for j in redis_conn.hkeys(Keys().agent_ledger(holder))]  # its trials die with it
    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(10)
    view, _progress = wait_for_end(redis_url, sweep_id, [survivor.output, victim.output], timeout=300)

    assert view["state"] == "finished"
    assert [t["number"] for t in view["trials"]] == list(range(8))
    assert all(t["state"] == "finished" for t in view["trials"]), [(t["job_id"], t["label"]) for t in view["trials"]]
    queue_jobs = [j.decode() for j in redis_conn.zrange(Keys().queue_jobs("e2e"), 0, -1)]
    assert sorted(queue_jobs) == sorted(t["job_id"] for t in view["trials"])  # no job written twice, none extra
    for job_id in in_flight:  # run again on the survivor, as the same job
        assert record(redis_conn, job_id)["attempts"] == 2, record(redis_conn, job_id)
    lrs = [t["params"]["trainer.learning_rate"] for t in view["trials"]]
    assert len(set(lrs)) == 8
    # The survivor drove the sweep to its end (and then let the lease go).
    assert f"sweep {sweep_id}: driving it" in survivor.output()
    assert redis_conn.get(lease) is None
