"""Disk and log limits: a job that prints 1 GB, a log folder that cannot be written, a full disk.

In each case the agent keeps running and keeps serving, and what launchbay stores of a job's
output (the Redis stream and the file in the agent's state dir) stays within its cap. The
folders that must fail are tmpfs mounts made by the test (root only): read-only, or tiny.
"""

from __future__ import annotations

import contextlib
import threading
import time

import psutil
import pytest
from conftest import require
from launchbay.agent.logs import TRUNCATED_PREFIX, line_cost
from launchbay.queue_config.keys import Keys
from reliability_helpers import (
    AgentFleet,
    can_mount_tmpfs,
    log_lines,
    make_queue,
    put_job,
    record,
    state_of,
    tmpfs,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

LOG_CAP_BYTES = 1 << 20
FILE_CAP_BYTES = 4 * LOG_CAP_BYTES
#: 1 GiB in lines of 1 KiB: docker's json-file logging copies that in about 30 s here. (``yes`` alone,
#: two bytes a line, would take docker about an hour: its cost is per line, not per byte.)
GIGABYTE_OF_LINES = 'yes "$(printf %01023d 0)" | head -c 1G'


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client)
    yield fleet
    fleet.close()


@pytest.fixture
def mountable():
    require(can_mount_tmpfs(), "mounting a tmpfs needs root (these tests make folders that fail on purpose)")


class PeakRss(threading.Thread):
    """Samples a process's resident memory until stopped; ``peak_mib`` is the highest seen."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.process = psutil.Process(pid)
        self.peak_mib = 0.0
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.2):
            try:
                self.peak_mib = max(self.peak_mib, self.process.memory_info().rss / 2**20)
            except psutil.Error:
                return


def _run_to_end(conn, fleet, job_id: str, timeout_s: float = 60) -> dict:
    wait_for(lambda: state_of(conn, job_id) in {"finished", "failed"}, timeout_s=timeout_s, what=fleet.output())
    return record(conn, job_id)


@pytest.mark.slow
def test_a_job_printing_a_gigabyte_leaves_the_agent_alive_and_its_logs_within_their_caps(
    redis_conn, base_image, fleet, capsys
):
    make_queue(redis_conn, "rel")
    agent = fleet.start("chatty", "--log-cap", "1MiB")
    rss = PeakRss(agent.proc.pid)
    rss.start()
    started = time.monotonic()
    job_id = put_job(redis_conn, "rel", image=base_image, command=["sh", "-c", GIGABYTE_OF_LINES])
    ended = _run_to_end(redis_conn, fleet, job_id, timeout_s=240)
    took_s = time.monotonic() - started
    rss.done.set()
    rss.join(5)

    lines = log_lines(redis_conn, job_id)
    stream_bytes = sum(line_cost(line) for line in lines)
    log_file = fleet.state_dir("chatty") / "logs" / f"{job_id}.log"
    stream_memory = redis_conn.memory_usage(Keys().job_log(job_id))
    with capsys.disabled():
        print(
            f"\nlog cap: 1 GiB printed in {took_s:.0f} s; Redis stream {stream_bytes} bytes in {len(lines)} entries "
            f"({stream_memory} bytes of Redis memory), file {log_file.stat().st_size} bytes; "
            f"agent peak RSS {rss.peak_mib:.0f} MiB"
        )

    assert ended["state"] == "finished", ended
    assert lines[-1].startswith(TRUNCATED_PREFIX)
    assert stream_bytes <= LOG_CAP_BYTES + line_cost(lines[-1])
    assert log_file.stat().st_size <= FILE_CAP_BYTES + 200
    assert log_file.read_text().splitlines()[-1].startswith(TRUNCATED_PREFIX)
    assert rss.peak_mib < 300, "the agent does not hold the output in memory"
    after = put_job(redis_conn, "rel", image=base_image, command=["echo", "still serving"])
    assert _run_to_end(redis_conn, fleet, after)["state"] == "finished" and agent.running


def test_a_read_only_log_folder_costs_only_the_log_file_the_job_and_agent_go_on(
    redis_conn, base_image, fleet, mountable
):
    make_queue(redis_conn, "rel")
    with tmpfs(fleet.state_dir("ro-logs") / "logs", "ro", "size=64k"):
        agent = fleet.start("ro-logs")
        jobs = [put_job(redis_conn, "rel", image=base_image, command=["echo", f"job {n}"]) for n in (1, 2)]
        ended = [_run_to_end(redis_conn, fleet, job_id) for job_id in jobs]

    assert [r["state"] for r in ended] == ["finished", "finished"]
    assert [log_lines(redis_conn, job_id) for job_id in jobs] == [["job 1"], ["job 2"]]
    assert agent.running
    assert agent.output().count("cannot write the job log file") == 2  # one warning per job, not per line


def test_a_full_log_disk_cuts_the_file_short_while_the_job_and_its_redis_log_complete(
    redis_conn, base_image, fleet, mountable
):
    make_queue(redis_conn, "rel")
    printer = ["python3", "-c", "for i in range(2000): print(f'line {i:04d} ' + 'x' * 90)"]
    with tmpfs(fleet.state_dir("full-logs") / "logs", "size=64k") as logs:
        agent = fleet.start("full-logs")
        job_id = put_job(redis_conn, "rel", image=base_image, command=printer)
        ended = _run_to_end(redis_conn, fleet, job_id)
        file_size = (logs / f"{job_id}.log").stat().st_size

    assert ended["state"] == "finished"
    assert len(log_lines(redis_conn, job_id)) == 2000, "Redis holds it all (the cap is far away)"
    assert file_size <= 64 * 1024
    assert agent.running and "No space left on device" in agent.output()


def test_a_full_state_dir_fails_the_job_with_a_clear_reason_and_the_agent_serves_once_there_is_room(
    redis_conn, base_image, fleet, mountable
):
    make_queue(redis_conn, "rel")
    with tmpfs(fleet.state_dir("full-disk"), "size=64k") as state_dir:
        filler = state_dir / "filler"
        with contextlib.suppress(OSError), filler.open("wb", buffering=0) as out:
            while True:  # until ENOSPC: a full disk is the point
                out.write(b"x" * 4096)
        agent = fleet.start("full-disk")
        first = put_job(redis_conn, "rel", image=base_image, command=["echo", "never"])
        failed = _run_to_end(redis_conn, fleet, first)
        filler.unlink()
        second = put_job(redis_conn, "rel", image=base_image, command=["echo", "room again"])
        finished = _run_to_end(redis_conn, fleet, second)
        agent.terminate()

    assert (failed["state"], failed["reason"]) == ("failed", "container_failed")
    assert failed["message"].startswith("cannot prepare the container: [Errno 28] No space left on device")
    assert finished["state"] == "finished" and log_lines(redis_conn, second) == ["room again"]
