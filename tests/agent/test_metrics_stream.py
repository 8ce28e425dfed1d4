"""The agent's metrics stream: metrics.jsonl lines into a capped Redis stream, hostile files refused.

Jobs here are played by the test writing ``metrics.jsonl`` and ``summary.json`` with plain Python,
as the contract in docs/payload.md describes them; the Redis is real.
"""

from __future__ import annotations

import json
import os
import threading

import pytest
import redis
from launchbay.metric_stream.follower import FIELD, TRUNCATED_FIELD, JobMetrics
from launchbay.metric_stream.job_file import MAX_LINE_BYTES, SUMMARY_LIMIT_BYTES
from launchbay.queue_config.keys import Keys
from test_runtime_support import poll

JOB = "metrics-job"


def step(n: int, **values) -> str:
    return json.dumps({"_step": n, "_timestamp": 1700000000.0 + n, "_runtime": float(n), **values}) + "\n"


def entries(conn, job_id: str = JOB):
    out = []
    for _id, fields in conn.xrange(Keys().job_metrics(job_id)):
        decoded = {k.decode(): v.decode() for k, v in fields.items()}
        out.append(json.loads(decoded[FIELD]) if FIELD in decoded else decoded)
    return out


@pytest.fixture
def output_dir(tmp_path):
    folder = tmp_path / "output"
    folder.mkdir()
    return folder


def metrics(conn, **caps) -> JobMetrics:
    caps.setdefault("cap_entries", 1000)
    caps.setdefault("cap_bytes", 1 << 20)
    return JobMetrics(conn, Keys().job_metrics(JOB), poll_s=0.05, **caps)


def test_lines_reach_the_stream_while_the_job_runs_and_the_summary_at_its_end(redis_conn, output_dir):
    stream = metrics(redis_conn)
    redis_conn.xadd(Keys().job_metrics(JOB), {FIELD: step(99)})  # an earlier attempt's step
    stream.start(output_dir, resume=False)
    with open(output_dir / "metrics.jsonl", "a") as handle:
        handle.write(step(0, loss=2.5) + step(1, loss=1.25))
        handle.flush()
        poll(lambda: len(entries(redis_conn)) == 2, timeout_s=10, what="two steps in the stream")
        handle.write(step(2, **{"loss": 0.5, "train/acc": 0.9}) + '{"_step": 3, "loss"')  # a line half written
    (output_dir / "summary.json").write_text(json.dumps({"loss": 0.5, "best": 0.4}))

    summary = stream.finish(output_dir)

    assert [e["_step"] for e in entries(redis_conn)] == [0, 1, 2]
    assert entries(redis_conn)[2]["train/acc"] == 0.9
    assert summary == {"loss": 0.5, "best": 0.4} and stream.summary == summary
    assert stream.problems == []


def test_a_hundred_thousand_steps_stop_at_the_entry_cap_with_one_truncated_entry(redis_conn, output_dir):
    (output_dir / "metrics.jsonl").write_text("".join(step(n, loss=1.0 / (n + 1)) for n in range(100_000)))
    stream = metrics(redis_conn, cap_entries=5000, cap_bytes=64 << 20)
    stream.start(output_dir, resume=False)

    stream.finish(output_dir)

    found = entries(redis_conn)
    assert len(found) == 5001
    assert [e["_step"] for e in found[:-1]] == list(range(5000))
    assert "5000 steps" in found[-1][TRUNCATED_FIELD]
    assert redis_conn.xlen(Keys().job_metrics(JOB)) == 5001


def test_the_byte_cap_holds_and_nothing_follows_the_truncated_entry(redis_conn, output_dir):
    cap = 10_000
    stream = metrics(redis_conn, cap_entries=100_000, cap_bytes=cap)
    stream.start(output_dir, resume=False)
    with open(output_dir / "metrics.jsonl", "a") as handle:
        handle.write("".join(step(n, loss=0.1) for n in range(1000)))
    poll(lambda: stream.truncated, timeout_s=10, what="the cap")
    with open(output_dir / "metrics.jsonl", "a") as handle:
        handle.write(step(5000, loss=0.1))
    stream.finish(output_dir)

    raw = redis_conn.xrange(Keys().job_metrics(JOB))
    kept = [fields[FIELD.encode()] for _id, fields in raw if FIELD.encode() in fields]
    assert sum(len(line) + 1 for line in kept) <= cap
    assert TRUNCATED_FIELD.encode() in raw[-1][1] and b"bytes" in raw[-1][1][TRUNCATED_FIELD.encode()]
    assert len(kept) == len(raw) - 1


def test_a_fifo_is_refused_without_blocking_and_the_job_end_is_not_held(redis_conn, output_dir):
    os.mkfifo(output_dir / "metrics.jsonl")
    os.mkfifo(output_dir / "summary.json")
    stream = metrics(redis_conn)
    stream.start(output_dir, resume=False)
    done = threading.Event()
    threading.Thread(target=lambda: (stream.finish(output_dir), done.set()), daemon=True).start()

    assert done.wait(20), "finish() blocked on a FIFO"
    assert entries(redis_conn) == []
    assert any("not a regular file" in p and "metrics.jsonl" in p for p in stream.problems), stream.problems
    assert any("summary.json" in p and "not a regular file" in p for p in stream.problems), stream.problems
    assert stream.summary is None


def test_symlinks_are_not_followed(redis_conn, output_dir, tmp_path):
    secret = tmp_path / "agent-secret.json"
    secret.write_text(step(0, token=1))
    (output_dir / "metrics.jsonl").symlink_to(secret)
    (output_dir / "summary.json").symlink_to(secret)
    stream = metrics(redis_conn)
    stream.start(output_dir, resume=False)

    assert stream.finish(output_dir) is None
    assert entries(redis_conn) == []
    assert len(stream.problems) == 2


def test_a_huge_line_and_lines_that_are_not_metrics_are_skipped_the_rest_kept(redis_conn, output_dir):
    junk = [
        "x" * (MAX_LINE_BYTES * 4) + "\n",  # one endless line
        "not json\n",
        "[1, 2]\n",
        '{"loss": 1}\n',  # no _step
        '{"_step": true}\n',
        b"\xff\xfe\n".decode("latin-1"),
    ]
    with open(output_dir / "metrics.jsonl", "w", encoding="latin-1") as handle:
        handle.write(step(0, loss=1.0) + "".join(junk) + '{"_step": 1, "loss": NaN, "gain": -Infinity}\n')
    stream = metrics(redis_conn)
    stream.start(output_dir, resume=False)

    stream.finish(output_dir)

    assert entries(redis_conn) == [
        json.loads(step(0, loss=1.0)),
        {"_step": 1, "loss": "NaN", "gain": "-Infinity"},
    ]
    problems = " | ".join(stream.problems)
    for why in ("longer than", "not a JSON object", "no integer _step", "not UTF-8"):
        assert why in problems


def test_a_replaced_file_is_read_from_its_start(redis_conn, output_dir):
    path = output_dir / "metrics.jsonl"
    path.write_text(step(0, loss=1.0))
    stream = metrics(redis_conn)
    stream.start(output_dir, resume=False)
    poll(lambda: len(entries(redis_conn)) == 1, timeout_s=10, what="the first step")
    replacement = output_dir / "new.jsonl"
    replacement.write_text(step(10, loss=0.1))
    replacement.replace(path)

    stream.finish(output_dir)

    assert [e["_step"] for e in entries(redis_conn)] == [0, 10]
    assert any("replaced or shortened" in p for p in stream.problems)


def test_summary_too_large_or_not_an_object_is_ignored_with_a_reason(redis_conn, output_dir):
    stream = metrics(redis_conn)
    (output_dir / "summary.json").write_text(json.dumps({"pad": "x" * SUMMARY_LIMIT_BYTES}))
    assert stream.finish(output_dir) is None and "larger than" in stream.problems[-1]
    (output_dir / "summary.json").write_text("[1]")
    assert stream.finish(output_dir) is None and "not a JSON object" in stream.problems[-1]
    (output_dir / "summary.json").write_text('{"loss": NaN}')
    assert stream.finish(output_dir) == {"loss": "NaN"}


def test_a_restarted_agent_sends_only_the_steps_the_stream_lacks(redis_conn, output_dir):
    path = output_dir / "metrics.jsonl"
    path.write_text("".join(step(n) for n in range(3)))
    first = metrics(redis_conn)
    first.start(output_dir, resume=False)
    poll(lambda: len(entries(redis_conn)) == 3, timeout_s=10, what="three steps")
    first.stop()
    with open(path, "a") as handle:
        handle.write("garbage\n" + step(3) + step(4))

    second = metrics(redis_conn, cap_entries=4)
    second.start(output_dir, resume=True)
    second.finish(output_dir)

    found = entries(redis_conn)
    assert [e["_step"] for e in found[:-1]] == [0, 1, 2, 3]
    assert TRUNCATED_FIELD in found[-1]


class FlakyRedis:
    """The real connection, except that ``pipeline()`` fails while ``down`` (Redis restarting)."""

    def __init__(self, conn) -> None:
        self.conn = conn
        self.down = False
        self.refused = 0

    def pipeline(self, *args, **kwargs):
        if self.down:
            self.refused += 1
            raise redis.ConnectionError("Connection refused")
        return self.conn.pipeline(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self.conn, name)


def test_steps_written_while_redis_is_away_arrive_once_it_is_back(redis_conn, output_dir):
    flaky = FlakyRedis(redis_conn)
    stream = JobMetrics(flaky, Keys().job_metrics(JOB), cap_entries=1000, cap_bytes=1 << 20, poll_s=0.05)
    stream.start(output_dir, resume=False)
    flaky.down = True
    (output_dir / "metrics.jsonl").write_text("".join(step(n) for n in range(3)))
    poll(lambda: flaky.refused >= 2, timeout_s=10, what="writes refused while Redis is away")
    with open(output_dir / "metrics.jsonl", "a") as handle:
        handle.write(step(3))
    flaky.down = False

    poll(lambda: len(entries(redis_conn)) == 4, timeout_s=10, what="the steps once Redis is back")
    stream.finish(output_dir)

    assert [e["_step"] for e in entries(redis_conn)] == [0, 1, 2, 3]
