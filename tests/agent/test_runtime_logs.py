"""Job logs (lines, caps, resuming after a restart), pull progress, and docker errors at the boundary."""

from __future__ import annotations

import pytest
from launchbay.agent.logs import MAX_LINE_BYTES, TRUNCATED_PREFIX, JobLog, LineSplitter, line_cost
from launchbay.agent.runtime import DockerRuntime, PullProgress, parse_docker_time
from launchbay.agent.runtime_fake import FakeProgram, FakeRuntime
from test_runtime_support import RuntimeHarness, poll

from launchbay.errors import DockerUnavailableError, JobRunError

# -- splitting output into lines ---------------------------------------------------------------------


def test_a_line_split_across_chunks_comes_out_whole():
    splitter = LineSplitter()

    assert splitter.feed(b"hel") == []
    assert splitter.feed(b"lo\nwor") == ["hello"]
    assert splitter.feed(b"ld\n") == ["world"]
    assert splitter.flush() == []


def test_invalid_utf8_and_a_multibyte_char_split_in_two_are_both_handled():
    splitter = LineSplitter()

    lines = splitter.feed(b"caf\xc3") + splitter.feed(b"\xa9 \xff\n")

    assert lines == ["caf\u00e9 \ufffd"]


def test_a_carriage_return_keeps_what_a_terminal_would_show():
    assert LineSplitter().feed(b"10%\r50%\r100%\r\n") == ["100%"]


def test_an_endless_line_is_cut_so_it_cannot_hold_memory():
    splitter = LineSplitter()

    lines = splitter.feed(b"x" * (MAX_LINE_BYTES * 2 + 10))

    assert [len(line) for line in lines] == [MAX_LINE_BYTES, MAX_LINE_BYTES]
    assert splitter.flush() == ["x" * 10]


# -- the job log -------------------------------------------------------------------------------------


def stream_lines(conn, key):
    return [f[b"line"].decode() for _, f in conn.xrange(key) if b"line" in f]


def test_the_stream_stops_at_the_cap_with_one_truncation_line(redis_conn, tmp_path):
    log = JobLog(redis_conn, "t:log", tmp_path / "logs" / "j.log", cap_bytes=1024)

    for i in range(100):  # 3100 bytes: over the stream's cap, under the file's (4x)
        log.add_line(f"line {i:04d} " + "y" * 20)
    log.close(eof="finished")

    lines = stream_lines(redis_conn, "t:log")
    assert lines[-1].startswith(TRUNCATED_PREFIX)
    assert sum(line_cost(line) for line in lines[:-1]) <= 1024
    assert lines[0] == "line 0000 " + "y" * 20
    assert redis_conn.xrevrange("t:log", count=1)[0][1] == {b"eof": b"finished"}
    assert (tmp_path / "logs" / "j.log").read_text().count("\n") == 100


def test_the_file_is_capped_too(redis_conn, tmp_path):
    log = JobLog(redis_conn, "t:log", tmp_path / "j.log", cap_bytes=1024, file_cap_bytes=2048)

    for _ in range(1000):
        log.add_line("z" * 50)
    log.close()

    data = (tmp_path / "j.log").read_bytes()
    assert len(data) <= 2048 + 100
    assert data.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(TRUNCATED_PREFIX.encode())
    assert log.full


def test_an_unwritable_log_folder_leaves_the_stream_working(redis_conn, tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the log folder should be")

    log = JobLog(redis_conn, "t:log", blocker / "logs" / "j.log", cap_bytes=4096)
    log.add_line("still here")
    log.close(eof="finished")

    assert stream_lines(redis_conn, "t:log") == ["still here"]
    assert sum("cannot write the job log file" in r.getMessage() for r in caplog.records) == 1


def test_a_resumed_log_skips_the_lines_each_sink_already_has(redis_conn, tmp_path):
    path = tmp_path / "j.log"
    first = JobLog(redis_conn, "t:log", path, cap_bytes=4096)
    first.note("pulling the image")
    stream_after, file_offset = first.position()
    for text in ("one", "two"):
        first.add_line(text)
    first.close()

    second = JobLog(redis_conn, "t:log", path, cap_bytes=4096)
    second.resume(stream_after, file_offset)
    for text in ("one", "two", "three"):
        second.add_line(text)
    second.close(eof="finished")

    assert stream_lines(redis_conn, "t:log") == ["[launchbay] pulling the image", "one", "two", "three"]
    assert path.read_text() == "[launchbay] pulling the image\none\ntwo\nthree\n"
    assert list(second.tail) == ["one", "two", "three"]


def test_a_resume_ignores_an_earlier_attempt_of_the_same_job(redis_conn, tmp_path):
    earlier = JobLog(redis_conn, "t:log", tmp_path / "j.log", cap_bytes=1024)
    for i in range(100):
        earlier.add_line(f"attempt one {i:03d}")
    earlier.close(eof="failed")
    first = JobLog(redis_conn, "t:log", tmp_path / "j.log", cap_bytes=1024)
    stream_after, file_offset = first.position()
    first.add_line("attempt two")
    first.close()

    second = JobLog(redis_conn, "t:log", tmp_path / "j.log", cap_bytes=1024)
    second.resume(stream_after, file_offset)
    for text in ("attempt two", "still two"):
        second.add_line(text)
    second.close(eof="finished")

    assert not second.redis_truncated
    assert stream_lines(redis_conn, "t:log")[-2:] == ["attempt two", "still two"]


# -- pull progress and engine errors -------------------------------------------------------------------


def test_pull_progress_is_one_line_per_layer_state_not_per_byte():
    lines: list = []
    progress = PullProgress("repo/img:1", lines.append)

    for event in [
        {"status": "Pulling from repo/img", "id": "1"},
        {"status": "Downloading", "progressDetail": {"current": 1, "total": 9}, "id": "abc"},
        {"status": "Downloading", "progressDetail": {"current": 5, "total": 9}, "id": "abc"},
        {"status": "Download complete", "id": "abc"},
        {"status": "Pull complete", "id": "abc"},
        {"status": "Status: Downloaded newer image for repo/img:1"},
    ]:
        progress.feed(event)

    assert lines == [
        "pull repo/img:1: Pulling from repo/img",
        "pull repo/img:1: layer abc: Downloading",
        "pull repo/img:1: layer abc: Download complete",
        "pull repo/img:1: layer abc: Pull complete",
        "pull repo/img:1: Status: Downloaded newer image for repo/img:1",
    ]


def test_an_error_inside_the_pull_stream_fails_the_pull():
    progress = PullProgress("repo/img:1", lambda _: None)

    with pytest.raises(JobRunError, match="repo/img:1: toomanyrequests") as caught:
        progress.feed({"error": "toomanyrequests", "errorDetail": {"message": "toomanyrequests"}})

    assert caught.value.reason == "image_pull_failed"


def test_docker_times_are_read_to_the_microsecond():
    assert parse_docker_time("2026-11-22T11:49:32.415617412Z") == pytest.approx(1795348172.415617, abs=1e-5)
    assert parse_docker_time("0001-01-01T00:00:00Z") is None


def test_an_engine_that_is_not_there_is_docker_unavailable_not_a_crash(tmp_path):
    runtime = DockerRuntime(docker_host=f"unix://{tmp_path}/no-engine.sock", timeout_s=2)

    assert runtime.ping() is False
    with pytest.raises(DockerUnavailableError, match="cannot be reached") as caught:
        runtime.list_managed("any")
    assert caught.value.__cause__ is not None


def test_a_job_started_while_the_engine_is_away_goes_back_to_its_queue(redis_conn, tmp_path):
    # Issue 13, finding 5: the engine's absence is not the job's fault, so it is not failed for it.
    harness = RuntimeHarness(redis_conn, tmp_path)
    runtime = DockerRuntime(docker_host=f"unix://{tmp_path}/no-engine.sock", timeout_s=2)
    troubles = []
    supervisor = harness.supervisor(runtime, engine_trouble=troubles.append)
    record, alloc = harness.claimed_job("launchbay-base:test", ["true"])

    supervisor.start(record, alloc)
    poll(lambda: harness.releases[record.id], timeout_s=30, what="the job to be released")
    back = harness.records.as_json(record.id)

    assert (back["state"], back.get("reason")) == ("queued", None)
    assert harness.releases[record.id] == 1
    assert troubles and "cannot be reached" in troubles[0]


def test_the_fake_runtime_reports_lists_and_removes_like_docker():
    runtime = FakeRuntime(default=FakeProgram(run_s=0, exit_code=2))
    labels = {"launchbay.managed": "1", "launchbay.agent_id": "a1", "launchbay.job_id": "j1"}

    container_id = runtime.create_and_start({"image": "img", "labels": labels})
    exit_status = runtime.wait(container_id, 1)
    (info,) = runtime.list_managed("a1")
    runtime.remove(container_id)

    assert exit_status.exit_code == 2
    assert (info.job_id, info.status, info.exit_code) == ("j1", "exited", 2)
    assert runtime.list_managed("a1") == []
    assert runtime.list_managed("other") == []
