"""Issue 13, finding 2: jobs no live agent can run (``--constraint zone=nowhere``) must not fill an
agent's lookahead and starve the jobs behind them. The agent reads past the ones it could never
run (up to ``MAX_LOOK_PAST`` of them) and claims what it can; the first read is then sized so
that the next pass does not read the whole queue head again and again.
"""

from __future__ import annotations

import pytest
from launchbay.agent.claim import Claimer, ClaimPass, QueueReader
from launchbay.agent.placement import Policy
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity
from security_helpers import make_queue, put_job, record

pytestmark = [pytest.mark.integration]

LOOKAHEAD = 64


def test_64_jobs_no_agent_can_run_do_not_starve_the_job_behind_them(redis_conn):
    make_queue(redis_conn, "default")
    for _ in range(LOOKAHEAD + 6):
        put_job(redis_conn, "default", cpus=1, constraints={"zone": "nowhere"})
    runnable = put_job(redis_conn, "default", cpus=1)
    capacity = Capacity(cpus=4.0, memory_mib=4096, slots=4, labels={"zone": "eu"})
    reader = QueueReader(redis_conn, Keys(), "agent-a", ["default"], lookahead=LOOKAHEAD)
    claims = ClaimPass(Claimer(redis_conn, Keys(), agent_id="agent-a", host="h"), reader, policy=Policy())

    got = claims.next(capacity)

    assert got is not None and got[0].job_id == runnable
    assert record(redis_conn, runnable)["state"] == "starting"
    assert claims.next(capacity) is None  # the rest wait for an agent in zone "nowhere"
