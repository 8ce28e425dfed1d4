"""An unchanged W&B job's metrics: the agent follows the run file the REAL ``wandb`` writes.

The jobs here are W&B's own code (``import wandb``, ``wandb.log``, ``run.summary``) run by the test in
a subprocess with ``WANDB_MODE=offline`` and ``WANDB_DIR`` in the output folder, as the agent sets
them; the agent reads the run file with W&B's reader (the ``launchbay[wandb]`` extra) into a real
Redis stream, through the same :class:`JobMetrics` that follows a ``launchbay.wandb`` job.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap

import pytest
from launchbay.metric_stream import entries as metricstream
from launchbay.metric_stream import wandb_run as wandb_follow
from launchbay.metric_stream.follower import JobMetrics
from launchbay.queue_config.keys import Keys
from test_runtime_support import poll

pytest.importorskip("wandb.sdk.internal.datastore", reason="needs launchbay[wandb] (wandb < 0.30) on this host")

JOB = "wandb-run-job"

# W&B's own code, unchanged: nested keys, a step given explicitly, a summary value the job sets.
# With STEPS large enough, W&B's writer (which writes its run file a 32 KiB block at a time) puts
# steps on disk while the job still runs; the job then waits for the test's go-ahead to finish.
JOB_SCRIPT = textwrap.dedent(
    """
    import os, sys, time
    import wandb
    steps = int(sys.argv[1])
    run = wandb.init(project="lb-test", config={"x": 2.0})
    for i in range(steps):
        wandb.log({"loss": (run.config["x"] - 3) ** 2 + 1.0 / (i + 1), "train": {"acc": i / steps}})
    wandb.log({"late": 1.5}, step=steps + 10)
    run.summary["best"] = 0.25
    go = os.path.join(os.environ["WANDB_DIR"], "..", "go")
    deadline = time.time() + 60
    while len(sys.argv) > 2 and not os.path.exists(go) and time.time() < deadline:
        time.sleep(0.1)
    run.finish()
    """
)


def start_job(tmp_path, output_dir, steps: int, *, wait: bool) -> subprocess.Popen:
    script = tmp_path / "train.py"
    script.write_text(JOB_SCRIPT)
    env = {
        **os.environ,
        "WANDB_MODE": "offline",
        "WANDB_DIR": str(output_dir),
        "WANDB_SILENT": "true",
        "WANDB_CONFIG_DIR": str(tmp_path / "wandb-config"),
        "WANDB_CACHE_DIR": str(tmp_path / "wandb-cache"),
    }
    argv = [sys.executable, str(script), str(steps)] + (["wait"] if wait else [])
    return subprocess.Popen(argv, env=env, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def steps_in(conn):
    found = [metricstream.step_of(fields) for _id, fields in conn.xrange(Keys().job_metrics(JOB))]
    return [step for step in found if step is not None]


def metrics(conn) -> JobMetrics:
    return JobMetrics(conn, Keys().job_metrics(JOB), cap_entries=10_000, cap_bytes=16 << 20, poll_s=0.1)


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """The output folder of one finished 5-step W&B job."""
    tmp_path = tmp_path_factory.mktemp("wandb-run")
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    job = start_job(tmp_path, output_dir, 5, wait=False)
    out, _ = job.communicate(timeout=120)
    assert job.returncode == 0, out.decode(errors="replace")
    return output_dir


def copy_of(finished_run, tmp_path):
    target = tmp_path / "output"
    shutil.copytree(finished_run, target, symlinks=True)
    return target


def test_a_wandb_jobs_steps_stream_while_it_runs_and_its_summary_is_kept(redis_conn, tmp_path):
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    stream = metrics(redis_conn)
    stream.start(output_dir, resume=False)
    job = start_job(tmp_path, output_dir, 400, wait=True)
    try:
        # W&B's writer flushes a block at a time: 400 steps fill several.
        poll(lambda: len(steps_in(redis_conn)) >= 100, timeout_s=90, what="steps in the stream while the job runs")
        assert job.poll() is None, "the job is still running"
    finally:
        (tmp_path / "go").touch()
        out, _ = job.communicate(timeout=120)
    assert job.returncode == 0, out.decode(errors="replace")

    summary = stream.finish(output_dir)

    steps = steps_in(redis_conn)
    assert [step["_step"] for step in steps] == [*range(400), 410]
    assert steps[0]["loss"] == pytest.approx(2.0) and steps[0]["train/acc"] == 0.0
    assert steps[-1]["late"] == 1.5 and {"_timestamp", "_runtime"} <= set(steps[-1])
    assert not any(key.startswith("_wandb") for step in steps for key in step)
    assert summary["best"] == 0.25 and summary["late"] == 1.5
    assert summary["loss"] == pytest.approx(1 + 1 / 400) and summary["train/acc"] == pytest.approx(399 / 400)
    assert not any(key.startswith("_") for key in summary)
    assert stream.problems == []


def test_a_finished_run_is_read_whole_at_the_jobs_end(redis_conn, finished_run, tmp_path):
    output_dir = copy_of(finished_run, tmp_path)
    stream = metrics(redis_conn)

    stream.start(output_dir, resume=False)
    summary = stream.finish(output_dir)

    assert [step["_step"] for step in steps_in(redis_conn)] == [0, 1, 2, 3, 4, 15]
    assert summary["best"] == 0.25


def test_a_launchbay_wandb_job_that_also_forwards_to_wandb_is_not_counted_twice(redis_conn, finished_run, tmp_path):
    # launchbay.wandb writes config.json at init, before the real wandb starts its run: its own file wins.
    output_dir = copy_of(finished_run, tmp_path)
    (output_dir / "config.json").write_text("{}\n")
    (output_dir / "metrics.jsonl").write_text(json.dumps({"_step": 0, "loss": 9.0}) + "\n")
    (output_dir / "summary.json").write_text(json.dumps({"loss": 9.0}))
    stream = metrics(redis_conn)

    stream.start(output_dir, resume=False)
    summary = stream.finish(output_dir)

    assert steps_in(redis_conn) == [{"_step": 0, "loss": 9.0}]
    assert summary == {"loss": 9.0}


def test_a_restarted_agent_sends_only_the_steps_the_stream_lacks(redis_conn, finished_run, tmp_path):
    output_dir = copy_of(finished_run, tmp_path)
    first = metrics(redis_conn)
    first.start(output_dir, resume=False)
    first.finish(output_dir)
    redis_conn.xtrim(Keys().job_metrics(JOB), maxlen=3, approximate=False)  # as if the agent died midway
    kept = steps_in(redis_conn)

    second = metrics(redis_conn)
    second.start(output_dir, resume=True)
    second.finish(output_dir)

    # The three kept entries count as the first three steps; the rest follow once each.
    assert len(steps_in(redis_conn)) == 6 and steps_in(redis_conn)[:3] == kept


def test_without_wandbs_reader_the_job_log_says_why_once(redis_conn, finished_run, tmp_path, monkeypatch, caplog):
    output_dir = copy_of(finished_run, tmp_path)
    monkeypatch.setattr(
        wandb_follow, "load_reader", lambda: (None, None, "import wandb failed: No module named 'wandb'")
    )
    monkeypatch.setattr(wandb_follow, "_warned_no_reader", False)
    stream = metrics(redis_conn)

    stream.start(output_dir, resume=False)
    summary = stream.finish(output_dir)

    assert steps_in(redis_conn) == [] and summary is None
    (problem,) = stream.problems
    assert "this job logs with W&B" in problem and "install launchbay[wandb]" in problem
    assert "No module named 'wandb'" in problem
    assert [r.message for r in caplog.records if "launchbay[wandb]" in r.message] == [problem]


def test_a_wandb_folder_that_is_a_symlink_is_not_followed(redis_conn, finished_run, tmp_path):
    output_dir = tmp_path / "output"
    output_dir.mkdir()
    (output_dir / "wandb").symlink_to(finished_run / "wandb")  # a job pointing the agent elsewhere
    stream = metrics(redis_conn)

    stream.start(output_dir, resume=False)
    assert stream.finish(output_dir) is None
    assert steps_in(redis_conn) == []


def test_a_file_that_is_not_wandbs_is_one_problem_not_a_crash(redis_conn, tmp_path):
    output_dir = tmp_path / "output"
    run_dir = output_dir / "wandb" / "offline-run-20260101_000000-abc123"
    run_dir.mkdir(parents=True)
    (run_dir / "run-abc123.wandb").write_bytes(b"not a W&B file at all")
    stream = metrics(redis_conn)

    stream.start(output_dir, resume=False)
    assert stream.finish(output_dir) is None
    (problem,) = stream.problems
    assert problem.startswith("cannot read wandb/offline-run-20260101_000000-abc123/run-abc123.wandb")


def test_values_are_read_as_wandb_wrote_them():
    assert wandb_follow._value("0.5") == (True, 0.5)
    assert wandb_follow._value("NaN") == (True, "NaN")  # as launchbay's own lines write it
    assert wandb_follow._value("-Infinity") == (True, "-Infinity")
    assert wandb_follow._value('{"_type": "image-file"}') == (True, {"_type": "image-file"})
    assert wandb_follow._value("") == (False, None)
