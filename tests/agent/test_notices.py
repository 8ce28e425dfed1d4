"""The agent's in-process notices (agent/notices.py): subscribers hear in order, one failure stops none."""

from __future__ import annotations

import logging

from launchbay.agent.notices import JobReleased, JobStarted, Notices
from launchbay.queue_config.job import JobRecord, State


def test_subscribers_hear_a_release_in_the_order_they_subscribed():
    heard = []
    notices = Notices()
    notices.on_released(lambda notice: heard.append(("count", notice.job_id, notice.state)))
    notices.on_released(lambda notice: heard.append(("free", notice.job_id, notice.state)))
    notices.released(JobReleased("j1", State.FINISHED))
    assert heard == [("count", "j1", State.FINISHED), ("free", "j1", State.FINISHED)]


def test_a_failing_subscriber_is_logged_and_the_others_still_hear(caplog):
    heard = []
    notices = Notices()

    def broken(notice: JobStarted) -> None:
        raise RuntimeError("metrics are down")

    notices.on_started(broken)
    notices.on_started(lambda notice: heard.append(notice.job_id))
    with caplog.at_level(logging.ERROR, logger="launchbay.agent.notices"):
        notices.started(JobStarted("j2", JobRecord("j2", State.STARTING)))
    assert heard == ["j2"]
    assert "job j2: " in caplog.text and "failed on JobStarted" in caplog.text


def test_a_started_notice_does_not_reach_release_subscribers():
    heard = []
    notices = Notices()
    notices.on_released(lambda notice: heard.append(notice))
    notices.started(JobStarted("j3", JobRecord("j3", State.STARTING)))
    assert heard == []
