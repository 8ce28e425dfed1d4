"""An agent killed (SIGKILL) in the middle of a job and started again adopts the container: the job
runs once, ends once, and its log holds every line it printed exactly once, in order."""

from __future__ import annotations

import textwrap

import pytest
from reliability_helpers import (
    AgentFleet,
    ContainerLifetimes,
    eof_entries,
    log_lines,
    make_queue,
    put_job,
    record,
    state_of,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

LINES = 60
#: The job prints one numbered line every this many seconds (about 15 s in all: longer than two
#: agent restarts on a busy 2-core machine, so both restarts find it running).
LINE_INTERVAL_S = 0.25


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client)
    yield fleet
    fleet.close()


def numbered_lines_job() -> list:
    source = f"""
        import time
        for i in range(1, {LINES + 1}):
            print(f"line {{i}} of {LINES}", flush=True)
            time.sleep({LINE_INTERVAL_S})
    """
    return ["python3", "-c", textwrap.dedent(source)]


def test_an_agent_killed_twice_mid_job_adopts_the_container_and_the_log_is_complete_once_and_in_order(
    redis_conn, base_image, docker_client, fleet
):
    make_queue(redis_conn, "rel")
    job_id = put_job(redis_conn, "rel", image=base_image, command=numbered_lines_job())
    with ContainerLifetimes(docker_client) as lifetimes:
        agent = fleet.start("adopter")
        for seen in (10, 30):
            wait_for(lambda n=seen: len(log_lines(redis_conn, job_id)) >= n, timeout_s=60, what=f"{seen} lines")
            fleet.restart("adopter")
        wait_for(lambda: state_of(redis_conn, job_id) == "finished", timeout_s=60, what=f"the end\n{agent.output()}")
        wait_for(lambda: fleet.containers() == [], timeout_s=30, what="the container to be removed")

    expected = [f"line {i} of {LINES}" for i in range(1, LINES + 1)]
    ended = record(redis_conn, job_id)
    assert (ended["state"], ended["attempts"], ended["exit_code"]) == ("finished", 1, 0)
    assert list(lifetimes.intervals()) == [job_id] and len(lifetimes.intervals()[job_id]) == 1, "started once"
    assert log_lines(redis_conn, job_id) == expected
    assert eof_entries(redis_conn, job_id) == ["finished"]
    log_file = fleet.state_dir("adopter") / "logs" / f"{job_id}.log"
    assert log_file.read_text().splitlines() == expected
    assert agent.output().count(f"{job_id} adopted") == 2
