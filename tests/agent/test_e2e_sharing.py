"""Preemption and fair share with ``launchbay agent`` processes, real Redis and the test Docker engine.

GPUs come from the stand-in nvidia-smi (``env_only`` mode), as in test_e2e_agent.py, whose agent
fixture this module uses.
"""

from __future__ import annotations

import pytest
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from test_control_support import make_queue, put_job, record, wait_for
from test_e2e_agent import agents, log_lines, python, state_of, wait_until_printed  # noqa: F401  (agents: fixture)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

#: A job that checkpoints on SIGTERM and, run again after a preemption, resumes and finishes.
CHECKPOINTING = """
import os, signal, sys, time
if os.environ.get('LAUNCHBAY_PREEMPTED', '0') != '0':
    print('resumed after preemptions: ' + os.environ['LAUNCHBAY_PREEMPTED'], flush=True)
    sys.exit(0)
def checkpoint(*_):
    print('checkpoint written', flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, checkpoint)
print('begin', flush=True)
time.sleep(300)
"""


def test_a_high_job_preempts_two_low_jobs_which_checkpoint_and_later_finish(redis_conn, base_image, agents):  # noqa: F811
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"}, preemption={"enabled": True, "grace": "20s"})
    sleeper = python("import time; print('begin', flush=True); time.sleep(40)")
    old = put_job(redis_conn, "e2e", gpus=1, priority="low", image=base_image, command=sleeper)
    agent = agents("e2e-preempt", "--max-jobs", "4")
    wait_until_printed(redis_conn, old, "begin", agent)
    victims = [
        put_job(redis_conn, "e2e", gpus=1, priority="low", image=base_image, command=python(CHECKPOINTING))
        for _ in range(2)
    ]
    for job_id in victims:
        wait_until_printed(redis_conn, job_id, "begin", agent)
    urgent = put_job(redis_conn, "e2e", gpus=3, priority="high", image=base_image, command=python("print('urgent')"))
    wait_for(lambda: state_of(redis_conn, urgent) == "finished", timeout_s=90, what="the high job to finish")
    for job_id in victims:
        wait_for(lambda: state_of(redis_conn, job_id) == "finished", timeout_s=90, what="a victim to finish")  # noqa: B023
        rec = record(redis_conn, job_id)
        assert (rec["attempts"], rec["preemptions"]) == (2, 1), (rec, agent.output())
        lines = log_lines(redis_conn, job_id)
        assert "checkpoint written" in lines, lines  # the SIGTERM came, and the job used its grace
        assert "resumed after preemptions: 1" in lines, lines
        assert rec["starting_at"] > record(redis_conn, urgent)["starting_at"]
    assert record(redis_conn, old)["attempts"] == 1  # the oldest low job was spared
    assert "preempting" in agent.output()


def test_a_second_users_five_jobs_start_before_the_first_users_sixth(redis_conn, base_image, agents):  # noqa: F811
    make_queue(redis_conn, "e2e")
    records = Records(redis_conn, Keys())
    flood = [put_job(redis_conn, "e2e", cpus=1, image=base_image, command=["true"]) for _ in range(50)]
    for job_id in flood:
        records.update(job_id, submitter="ann")
    steady = [put_job(redis_conn, "e2e", cpus=1, image=base_image, command=["true"]) for _ in range(5)]
    for job_id in steady:
        records.update(job_id, submitter="bob")
    agent = agents("e2e-fair", "--max-jobs", "1")
    wait_for(
        lambda: (
            all(state_of(redis_conn, j) == "finished" for j in steady)
            and sum(1 for j in flood if record(redis_conn, j).get("starting_at")) >= 6
        ),
        timeout_s=180,
        what="bob's five jobs and ann's sixth to start",
    )
    started = sorted(record(redis_conn, j)["starting_at"] for j in flood if record(redis_conn, j).get("starting_at"))
    assert all(record(redis_conn, j)["starting_at"] < started[5] for j in steady), agent.output()
