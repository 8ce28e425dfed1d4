"""Metrics end to end: a real ``launchbay agent`` process, real Docker, a job that writes the
metrics contract's files with plain Python (the SDK's ``log`` is not assumed), and the CLI reading them.
"""

from __future__ import annotations

import json
import time

import psutil
import pytest
import test_e2e_agent
from conftest import run_cli
from launchbay.agent.settings import DEFAULT_METRICS_CAP_ENTRIES
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.keys import Keys
from test_control_support import make_queue, put_job, record, wait_for
from test_e2e_agent import TERMINAL, python, state_of

pytestmark = [pytest.mark.integration, pytest.mark.docker]
agents = test_e2e_agent.agents  # the fixture that starts agent processes and cleans up after them

# A training loop as the contract describes it: one line per step, flushed; summary.json replaced
# atomically. It pauses after step 2 until the test drops "go" into its output folder.
JOB = """
import json, os, time
out = os.environ["LAUNCHBAY_OUTPUT_DIR"]
t0 = time.time()
def log(handle, step, **values):
    handle.write(json.dumps({"_step": step, "_timestamp": time.time(), "_runtime": time.time() - t0, **values}) + "\\n")
    handle.flush()
with open(os.path.join(out, "metrics.jsonl"), "a") as handle:
    for step in range(3):
        log(handle, step, loss=1.0 / (step + 1), **{"val/acc": step / 10})
    while not os.path.exists(os.path.join(out, "go")):
        time.sleep(0.1)
    for step in range(3, 6):
        log(handle, step, loss=1.0 / (step + 1), **{"val/acc": step / 10})
with open(os.path.join(out, "summary.tmp"), "w") as handle:
    json.dump({"loss": 1.0 / 6, "val/acc": 0.5, "best_loss": 1.0 / 6}, handle)
os.replace(os.path.join(out, "summary.tmp"), os.path.join(out, "summary.json"))
"""

FLOOD = """
import json, os
with open(os.path.join(os.environ["LAUNCHBAY_OUTPUT_DIR"], "metrics.jsonl"), "w") as handle:
    for step in range(100_000):
        handle.write(json.dumps({"_step": step, "_timestamp": 1.7e9 + step, "_runtime": step * 0.01,
                                 "loss": 1.0 / (step + 1), "train/acc": step / 100_000}) + "\\n")
with open(os.path.join(os.environ["LAUNCHBAY_OUTPUT_DIR"], "summary.json"), "w") as handle:
    json.dump({"loss": 1.0 / 100_000, "train/acc": 0.99999}, handle)
"""


def steps_in(conn, job_id):
    return [json.loads(f[b"m"]) for _id, f in conn.xrange(Keys().job_metrics(job_id)) if b"m" in f]


def test_metrics_stream_while_the_job_runs_and_status_shows_the_summary(
    redis_conn, redis_url, base_image, agents, tmp_path
):
    make_queue(redis_conn, "e2e")
    job_id = put_job(redis_conn, "e2e", image=base_image, command=python(JOB))
    agent = agents("e2e-metrics")
    wait_for(
        lambda: len(steps_in(redis_conn, job_id)) == 3 or state_of(redis_conn, job_id) in TERMINAL,
        timeout_s=90,
        what="three steps while the job runs",
    )
    assert state_of(redis_conn, job_id) == "running", (record(redis_conn, job_id), agent.output())
    follower = run_cli("metrics", job_id, "--json", "--redis-url", redis_url)
    assert [json.loads(line)["_step"] for line in follower.stdout.splitlines()] == [0, 1, 2]

    (tmp_path / "e2e-metrics" / "jobs" / job_id / "output" / "go").touch()
    wait_for(lambda: state_of(redis_conn, job_id) in TERMINAL, timeout_s=60, what="the job to end")

    rec = record(redis_conn, job_id)
    assert rec["state"] == "finished", agent.output()
    assert rec["summary"] == {"loss": 1.0 / 6, "val/acc": 0.5, "best_loss": 1.0 / 6}
    assert [s["_step"] for s in steps_in(redis_conn, job_id)] == list(range(6))
    assert 0 < redis_conn.ttl(Keys().job_metrics(job_id)) <= rq_bridge.RESULT_TTL_S
    table = run_cli("metrics", job_id, "--redis-url", redis_url).stdout.splitlines()
    assert table[0].split() == ["STEP", "loss", "val/acc"] and table[-1].split() == ["5", "0.166667", "0.5"]
    status = run_cli("status", job_id, "--redis-url", redis_url).stdout
    assert "summary best_loss" in status and "0.166667" in status


def test_a_job_logging_100k_steps_keeps_the_agent_and_redis_within_the_caps(redis_conn, base_image, agents, capsys):
    make_queue(redis_conn, "e2e")
    agent = agents("e2e-flood")
    wait_for(lambda: redis_conn.exists(Keys().agent_alive("e2e-flood")), timeout_s=60, what="the agent")
    process = psutil.Process(agent.proc.pid)
    cpu_before = sum(process.cpu_times()[:2])
    began = time.monotonic()
    job_id = put_job(redis_conn, "e2e", image=base_image, command=python(FLOOD))
    wait_for(lambda: state_of(redis_conn, job_id) in TERMINAL, timeout_s=180, what="the flood job to end")
    took_s = time.monotonic() - began
    agent_cpu_s = sum(process.cpu_times()[:2]) - cpu_before

    raw = redis_conn.xrange(Keys().job_metrics(job_id))
    kept = [fields[b"m"] for _id, fields in raw if b"m" in fields]
    stream_memory = redis_conn.memory_usage(Keys().job_metrics(job_id))
    with capsys.disabled():
        print(
            f"\nmetrics cap: 100000 steps logged; {len(kept)} kept, {sum(len(m) + 1 for m in kept)} bytes, "
            f"{stream_memory} bytes of Redis memory; agent CPU {agent_cpu_s:.2f} s; job enqueue to end {took_s:.1f} s"
        )
    rec = record(redis_conn, job_id)
    assert rec["state"] == "finished", agent.output()
    assert len(kept) == DEFAULT_METRICS_CAP_ENTRIES
    assert json.loads(kept[-1])["_step"] == DEFAULT_METRICS_CAP_ENTRIES - 1
    assert b"truncated" in raw[-1][1] and len(raw) == DEFAULT_METRICS_CAP_ENTRIES + 1
    assert rec["summary"] == {"loss": 1.0 / 100_000, "train/acc": 0.99999}, "the summary is kept past the cap"
    assert stream_memory < 8 << 20
