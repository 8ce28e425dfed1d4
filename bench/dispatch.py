"""Dispatch latency: from the enqueue call to the container's first instruction, with an idle agent.

Each sample is the wall clock the container prints first thing (``date +%s.%N``) minus the wall
clock taken just before the call that asks for the work. Three ways of asking, interleaved
(the order rotates every round) so that a noisy machine hurts them alike:

- agent: ``launchbay.client.enqueue`` into a queue that an idle ``launchbay agent`` serves
  (it wakes on the ``enqueued`` event, claims, and creates and starts the container);
- docker run: ``docker run --rm IMAGE date +%s.%N`` spawned from Python;
- RQ: ``Queue.enqueue(subprocess.run, ["docker", "run", "--rm", ...])`` picked up by an idle
  ``rq worker -w rq.worker.SimpleWorker`` (no fork per job: the faster of rq's workers).

Each sample waits until the previous work is over (agent: its ledger empty again), so every one
starts from idle. Targets: agent median <= 1.15 x docker run's, and <= RQ's.

    .venv/bin/python bench/dispatch.py [--runs 30] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import redis
from _common import (
    BIN_DIR,
    FIRST_INSTRUCTION,
    IMAGE,
    AgentProcess,
    RedisServer,
    Row,
    apply_queues,
    at_most,
    emit,
    first_timestamp,
    interleaved,
    job_output,
    median,
    ratio,
    wait_until,
)
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys

QUEUE = "bench-dispatch"
RQ_QUEUE = "bench-rq"
DOCKER_RUN = ["docker", "run", "--rm", IMAGE, *FIRST_INSTRUCTION]
TARGET_VS_DOCKER = 1.15
TARGET_VS_RQ = 1.0


def agent_sample(conn: redis.Redis, ledger_key: str) -> float:
    spec = {"name": "bench-dispatch", "image": IMAGE, "command": FIRST_INSTRUCTION}
    began = time.time()
    handle = enqueue(spec, QUEUE, conn=conn)
    latency = first_timestamp(job_output(conn, handle.id)) - began
    wait_until(lambda: conn.hlen(ledger_key) == 0, 30, "the agent to release the job")
    return latency


def docker_sample() -> float:
    began = time.time()
    done = subprocess.run(DOCKER_RUN, capture_output=True, text=True, check=True)
    return first_timestamp(done.stdout) - began


def rq_sample(queue: Any) -> float:
    began = time.time()
    job = queue.enqueue(subprocess.run, DOCKER_RUN, capture_output=True, text=True, check=True)
    result = job.latest_result(timeout=60)
    if result is None or result.type != result.Type.SUCCESSFUL:
        raise RuntimeError(f"the RQ job failed: {result.exc_string if result else 'no result'}")
    return first_timestamp(result.return_value.stdout) - began


class RqWorker:
    """``rq worker`` (SimpleWorker) serving one queue, started before timing; a context manager."""

    def __init__(self, redis_url: str) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="lb-bench-rq-"))
        self.args = [str(BIN_DIR / "rq"), "worker", "-u", redis_url, "-w", "rq.worker.SimpleWorker", RQ_QUEUE]
        self.redis_url = redis_url

    def __enter__(self) -> RqWorker:
        from rq import Worker

        with (self.folder / "worker.log").open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        conn = redis.Redis.from_url(self.redis_url)
        wait_until(lambda: Worker.all(connection=conn) or self.proc.poll() is not None, 30, "the rq worker")
        if self.proc.poll() is not None:
            raise SystemExit(f"rq worker exited:\n{(self.folder / 'worker.log').read_text()}")
        return self

    def __exit__(self, *exc: Any) -> None:
        self.proc.terminate()
        self.proc.wait(15)
        shutil.rmtree(self.folder, ignore_errors=True)


def measure(runs: int) -> Dict[str, Any]:
    from rq import Queue

    with RedisServer() as server:
        conn = redis.Redis.from_url(server.url)
        apply_queues(conn, QUEUE)
        with AgentProcess(server.url, [QUEUE], agent_id="bench-dispatch") as agent, RqWorker(server.url):
            rq_queue = Queue(RQ_QUEUE, connection=conn)
            ledger_key = Keys().agent_ledger(agent.agent_id)
            samples = interleaved(
                {
                    "docker": docker_sample,
                    "rq": lambda: rq_sample(rq_queue),
                    "agent": lambda: agent_sample(conn, ledger_key),
                },
                runs,
            )
    return {"runs": runs, "image": IMAGE, "samples_s": samples}


def rows(result: Dict[str, Any]) -> List[Row]:
    samples = result["samples_s"]
    docker, rq_, agent = median(samples["docker"]), median(samples["rq"]), median(samples["agent"])
    return [
        Row("dispatch (s): plain docker run", samples["docker"], note="baseline"),
        Row("dispatch (s): RQ worker + docker run", samples["rq"], note="baseline"),
        at_most(
            "dispatch (s): agent vs docker run",
            samples["agent"],
            TARGET_VS_DOCKER,
            baseline=docker,
            ratio=ratio(agent, docker),
            target=f"median ratio <= {TARGET_VS_DOCKER}",
        ),
        at_most(
            "dispatch (s): agent vs RQ",
            samples["agent"],
            TARGET_VS_RQ,
            baseline=rq_,
            ratio=ratio(agent, rq_),
            target=f"median ratio <= {TARGET_VS_RQ:.2f}",
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, help="samples of each way (default 30, 10 with --quick)")
    parser.add_argument("--quick", action="store_true", help="fewer samples")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    result = measure(options.runs or (10 if options.quick else 30))
    emit(rows(result), result, options.json, f"Dispatch latency, {result['runs']} samples each, image {IMAGE}")


if __name__ == "__main__":
    main()
