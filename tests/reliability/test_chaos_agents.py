"""Chaos: three ``launchbay agent`` processes share 300 short container jobs while one of them is
killed with SIGKILL and restarted every few seconds.

Real redis-server, real dockerd, real processes. Docker's event stream is the witness for "never two
containers of one job at once". The test prints one report line (jobs, kills, duplicates, lost,
wall time); docs/reliability.md keeps the figures.
"""

from __future__ import annotations

import itertools
import time

import pytest
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.keys import Keys
from reliability_helpers import (
    TERMINAL,
    AgentFleet,
    ContainerLifetimes,
    eof_entries,
    ledger_sizes,
    log_lines,
    make_queue,
    put_job,
    records_of,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow]

JOBS = 300
AGENTS = ("chaos-a", "chaos-b", "chaos-c")
MAX_JOBS_PER_AGENT = 4
#: One agent is killed (SIGKILL) and restarted at once every this many seconds, round robin.
KILL_INTERVAL_S = 3.0
#: Kills stop after this long even if jobs remain, so the run stays within about five minutes.
CHAOS_WINDOW_S = 240.0
#: A restarted agent must beat again before TTL + grace (here 15 s) runs out, or the reaper fails
#: its jobs. With 3 agents and 12 containers on 2 cores a restart takes up to ~7 s (0.8 s idle),
#: so the 6 s window of FAST_BEATS is too short here; the defaults give 25 s.
LOST_WINDOW = {"LAUNCHBAY_AGENT_HEARTBEAT_TTL_S": "5", "LAUNCHBAY_AGENT_LOST_GRACE_S": "10"}


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client, env=LOST_WINDOW)
    yield fleet
    fleet.close()


def _ended_count(conn, job_ids) -> int:
    with conn.pipeline(transaction=False) as pipe:
        for job_id in job_ids:
            pipe.hget(Keys().job(job_id), "state")
        states = pipe.execute()
    return sum(1 for state in states if state and state.decode() in TERMINAL)


def test_agents_killed_every_few_seconds_run_every_job_exactly_once_and_leave_nothing_behind(
    redis_conn, base_image, docker_client, fleet, capsys
):
    make_queue(redis_conn, "chaos")
    job_ids = [put_job(redis_conn, "chaos", image=base_image, command=["echo", f"job {i} done"]) for i in range(JOBS)]
    kills = 0
    started = time.monotonic()
    with ContainerLifetimes(docker_client) as lifetimes:
        for agent_id in AGENTS:
            fleet.start(agent_id, "--max-jobs", str(MAX_JOBS_PER_AGENT), queues=("chaos",))
        victims = itertools.cycle(AGENTS)
        next_kill = started + KILL_INTERVAL_S
        while _ended_count(redis_conn, job_ids) < JOBS and time.monotonic() - started < CHAOS_WINDOW_S:
            time.sleep(max(0.0, min(1.0, next_kill - time.monotonic())))
            if time.monotonic() >= next_kill:
                fleet.restart(next(victims))
                kills += 1
                next_kill += KILL_INTERVAL_S
        wait_for(
            lambda: _ended_count(redis_conn, job_ids) == JOBS, timeout_s=90, what=f"all jobs to end\n{fleet.output()}"
        )
        wait_for(
            lambda: not any(ledger_sizes(redis_conn, AGENTS).values()),
            timeout_s=30,
            what=f"every ledger to be empty: {ledger_sizes(redis_conn, AGENTS)}",
        )
        exit_codes = {agent_id: fleet.agents[agent_id].terminate() for agent_id in AGENTS}
    wall_s = time.monotonic() - started

    records = records_of(redis_conn, job_ids)
    not_finished = {
        r["id"]: (r.get("state"), r.get("reason"), r.get("message")) for r in records if r["state"] != "finished"
    }
    overlapping = lifetimes.overlapping_jobs()
    ran_again = lifetimes.jobs_started_more_than_once()
    lines_wrong = {
        job_id: lines
        for i, job_id in enumerate(job_ids)
        if (lines := log_lines(redis_conn, job_id)) != [f"job {i} done"]
    }
    rq_not_finished = {
        job_id: status
        for job_id in job_ids
        if (status := rq_bridge.fetch(redis_conn, job_id).get_status()) != "finished"
    }
    requeued_unstarted = sum(1 for r in records if (r.get("attempts") or 0) > 1)
    eof_wrong = {job_id: eofs for job_id in job_ids if (eofs := eof_entries(redis_conn, job_id)) != ["finished"]}
    without_ttl = [job_id for job_id in job_ids if redis_conn.ttl(Keys().job(job_id)) <= 0]
    job_dirs_left = [str(d) for agent_id in AGENTS for d in (fleet.state_dir(agent_id) / "jobs").glob("*")]
    with capsys.disabled():
        print(
            f"\nchaos report: {JOBS} jobs, {len(AGENTS)} agents x --max-jobs {MAX_JOBS_PER_AGENT}, "
            f"{kills} kills (SIGKILL + restart every {KILL_INTERVAL_S:g} s), "
            f"duplicates {len(overlapping)}, started twice {len(ran_again)}, lost {len(not_finished)}, "
            f"claimed again after a kill before their container existed {requeued_unstarted}, "
            f"wall time {wall_s:.1f} s"
        )

    assert kills >= 10, "the chaos window was too short to mean anything"
    assert overlapping == {}, f"jobs with two containers alive at once: {overlapping}"
    assert ran_again == {}, f"jobs whose command ran twice: {ran_again}"
    assert not_finished == {}, f"jobs that did not finish: {not_finished}\n{fleet.output()}"
    assert lines_wrong == {}, f"jobs whose log is not their one line: {dict(list(lines_wrong.items())[:5])}"
    assert rq_not_finished == {}, "rq info must count every job as finished"
    assert eof_wrong == {}, "every log ends with one eof entry"
    assert without_ttl == [], "ended records expire with RQ's copy of the job"
    assert ledger_sizes(redis_conn, AGENTS) == dict.fromkeys(AGENTS, 0)
    assert job_dirs_left == [], "payload folders left behind"
    assert fleet.containers() == [], "containers left behind"
    assert exit_codes == dict.fromkeys(AGENTS, 0), f"exit codes after SIGTERM: {exit_codes}\n{fleet.output()}"
