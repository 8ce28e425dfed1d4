"""A job printing its queue secret while its agent is killed and started again: the adopting agent
reads the secret again, so what it stores of the job's output after adoption still hides it."""

from __future__ import annotations

import textwrap

import pytest
from reliability_helpers import AgentFleet, log_lines, make_queue, put_job, state_of, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.docker]

SECRET = "adopted-secret-93c1"
LINES = 60


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client, env={"LB_TEST_ADOPTED_SECRET": SECRET})
    yield fleet
    fleet.close()


def test_an_adopted_job_keeps_its_secret_out_of_the_stored_log(redis_conn, base_image, fleet):
    make_queue(redis_conn, "rel", secrets={"TOKEN": {"env": "LB_TEST_ADOPTED_SECRET"}})
    source = f"""
        import os, time
        for i in range(1, {LINES + 1}):
            print(f"line {{i}} token {{os.environ['TOKEN']}}", flush=True)
            time.sleep(0.25)
    """
    job_id = put_job(redis_conn, "rel", image=base_image, command=["python3", "-c", textwrap.dedent(source)])
    agent = fleet.start("keeper")
    wait_for(lambda: len(log_lines(redis_conn, job_id)) >= 5, timeout_s=60, what="5 lines before the restart")
    fleet.restart("keeper")
    wait_for(lambda: state_of(redis_conn, job_id) == "finished", timeout_s=90, what=f"the end\n{agent.output()}")
    lines = log_lines(redis_conn, job_id)
    assert lines == [f"line {i} token ***" for i in range(1, LINES + 1)]
    log_file = fleet.state_dir("keeper") / "logs" / f"{job_id}.log"
    assert SECRET not in log_file.read_text()
