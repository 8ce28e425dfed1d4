"""Helpers for the launch-page tests: the docs' job inputs, a job definition in Redis, a fake
agent, the ``launchbay ui`` server as a subprocess and headless Chromium.

(Plain functions rather than a conftest.py here: a second module named ``conftest`` would shadow
the root one that these tests import ``require`` and ``BIN_DIR`` from.)
"""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from enum import Enum
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

from conftest import BIN_DIR, REPO_ROOT, publish_agent_line, require
from launchbay.client import enqueue
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.job import State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore
from launchbay.sdk.schema import prepare_schema
from pydantic import BaseModel, Field

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
VIEWPORT = {"width": 1200, "height": 900}
#: Where the browser tests save their screenshots: tests/artifacts/screenshots (git ignores it), or the
#: pictures docs/ui.md shows (docs/img) when LAUNCHBAY_UPDATE_SCREENSHOTS=1 asks to refresh them. A
#: plain run must not rewrite tracked files (tests/test_ci_setup.py checks the work tree after the run).
SCREENSHOT_DIR = (
    REPO_ROOT / "docs" / "img"
    if os.environ.get("LAUNCHBAY_UPDATE_SCREENSHOTS") == "1"
    else REPO_ROOT / "tests" / "artifacts" / "screenshots"
)
SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
#: Bounded waits: how long a page, a server or a browser expectation may take.
#: A server start is waited for as long as a loaded machine needs (a 20 s bound failed with the load
#: average at 460, a thousand-agent benchmark beside the suite); a server that dies says so at once.
SERVER_START_S = 60.0
EXPECT_MS = 10_000

GPU_QUEUE = {
    "name": "gpu",
    "description": "Training on A100/H100 hosts",
    "default_resources": {"cpus": 4, "memory": "16GiB"},
    "limits": {"cpus": 32, "memory": "256GiB", "gpus": 8, "gpu_model": "A100|H100", "max_runtime": "24h"},
}
CPU_QUEUE = {"name": "cpu", "description": "CPU-only work", "limits": {"gpus": 0}}
JOB_SPEC = {
    "name": "trainer",
    "image": "ghcr.io/acme/trainer:1.4",
    "command": ["python", "train.py"],
    "config": {"seed": 42, "trainer": {"learning_rate": 0.01, "batch_size": 32}},
}


# The classes of the docs' "Pydantic Model" example (manage-job-inputs), as a job would write them.
class DatasetEnum(str, Enum):
    cifar10 = "cifar10"
    cifar100 = "cifar100"


class Trainer(BaseModel):
    learning_rate: float = Field(gt=0, description="Learning rate of the model")
    batch_size: int = Field(ge=1, le=256, description="Number of samples per batch")
    dataset: DatasetEnum = Field(title="Dataset", description="Name of the dataset to use")


class Schema(BaseModel):
    seed: int
    trainer: Trainer


def docs_run_config_section() -> Dict[str, Any]:
    """The run-config section the SDK records for the docs' example with the pydantic schema."""
    return {
        "include": ["seed", "trainer"],
        "exclude": ["trainer.private"],
        "types": {
            "seed": "int",
            "trainer": {"learning_rate": "float", "batch_size": "int", "model": "str", "dataset": "str"},
        },
        "schema": prepare_schema(Schema),
    }


def config_file_section() -> Dict[str, Any]:
    """A managed ``config.yaml`` without a schema: its fields come from the recorded types."""
    return {
        "include": [],
        "exclude": ["wandb"],
        "types": {"epochs": "int", "augment": "bool", "optimizer": {"name": "str", "momentum": "float"}},
        "schema": None,
    }


def docs_inputs() -> Dict[str, Any]:
    return {"run_config": docs_run_config_section(), "files": {"config.yaml": config_file_section()}}


def apply_queues(conn, *configs: Dict[str, Any]) -> None:
    store = QueueStore(conn, Keys())
    for config in configs or (GPU_QUEUE, CPU_QUEUE):
        store.apply(QueueConfig.model_validate(config))


def define_job(conn, inputs: Optional[Dict[str, Any]] = None, *, spec: Optional[Dict[str, Any]] = None) -> str:
    """A job definition as an agent leaves it: one run that finished and recorded its inputs.

    Returns the id of that run.
    """
    spec = spec or JOB_SPEC
    first = enqueue(spec, "gpu", conn=conn, keys=Keys())
    execution = play_agent_start(conn, first.id)
    write_log(conn, first.id, "epoch 1/1 loss=0.31")
    play_agent_end(conn, first.id, execution, State.FINISHED)
    QueueStore(conn, Keys()).record_inputs(spec["name"], inputs if inputs is not None else docs_inputs(), first.id)
    return first.id


def rq_queue_length(conn, queue: str = "gpu") -> int:
    return rq_bridge.rq_queue(conn, queue).count


def record(conn, job_id: str) -> Dict[str, Any]:
    return Records(conn, Keys()).as_json(job_id) or {}


def play_agent_start(conn, job_id: str, *, agent: str = "gpu-host-1", gpus: Sequence[str] = ("0", "1")) -> str:
    """Claim and start a queued job as an agent does; returns the RQ execution id."""
    records = Records(conn, Keys())
    rq_bridge.rq_queue(conn, records.as_json(job_id)["queue"]).remove(job_id)  # the claim script's LREM
    claimed = records.transition(
        job_id, State.STARTING, allowed_from=[State.QUEUED], agent=agent, host=agent, gpus=list(gpus), attempts=1
    )
    assert claimed
    execution = rq_bridge.mark_started(conn, job_id, worker_name=agent)
    assert records.transition(job_id, State.RUNNING, allowed_from=[State.STARTING], container="c0ffee")
    return execution


def play_agent_end(conn, job_id: str, execution: str, end: State, **fields) -> None:
    """End a running job as an agent does: record state (and ``fields``), RQ registry, the log's eof entry."""
    assert Records(conn, Keys()).transition(job_id, end, allowed_from=[State.RUNNING], exit_code=0, **fields)
    rq_bridge.mark_ended(conn, job_id, execution, state=end.value)
    write_log(conn, job_id, eof=end.value)


def write_log(conn, job_id: str, *lines: str, eof: Optional[str] = None) -> None:
    for line in lines:
        conn.xadd(Keys().job_log(job_id), {"line": line})
    if eof is not None:
        conn.xadd(Keys().job_log(job_id), {"eof": eof})


def register_agent(conn, capacity: Dict[str, Any], ledger: Dict[str, Dict[str, Any]]) -> None:
    """An agent's capacity, liveness and ledger as docs/architecture.md describes them."""
    keys, agent_id = Keys(), capacity["agent_id"]
    conn.sadd(keys.agents, agent_id)
    conn.set(keys.agent_alive(agent_id), "1", ex=60)
    conn.set(keys.agent_capacity(agent_id), json.dumps(capacity))
    for job_id, allocation in ledger.items():
        conn.hset(keys.agent_ledger(agent_id), job_id, json.dumps(allocation))
    publish_agent_line(conn, agent_id)


class UiServer:
    """``launchbay ui --port 0`` as a subprocess; ``url`` is what it announced."""

    def __init__(self, redis_url: str, *, host: str = "127.0.0.1", token: Optional[str] = None) -> None:
        env = {**os.environ, "LAUNCHBAY_REDIS_URL": redis_url}
        env.pop("LAUNCHBAY_UI_TOKEN", None)
        if token:
            env["LAUNCHBAY_UI_TOKEN"] = token
        self.proc = subprocess.Popen(
            [str(BIN_DIR / "launchbay"), "ui", "--host", host, "--port", "0"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.output: List[str] = []
        self._announced = threading.Event()
        self.url = ""
        # Drain stderr for the whole life of the process, so a chatty server never blocks on a full pipe.
        threading.Thread(target=self._read_output, daemon=True).start()
        deadline = time.monotonic() + SERVER_START_S
        while not self._announced.wait(0.2):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                break
        if not self._announced.is_set():
            self.stop()
            raise RuntimeError(f"launchbay ui did not start: {''.join(self.output)}")

    def _read_output(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.output.append(line)
            if "serving http" in line and not self.url:
                self.url = line.split("serving ", 1)[1].split(" ", 1)[0].replace("0.0.0.0", "127.0.0.1")
                self._announced.set()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def require_chromium() -> None:
    """Skip (locally) or fail (in CI) without Debian's Chromium and the playwright package."""
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        require(False, "the playwright package is not installed (pip install -e '.[test]')")
    require(Path(CHROMIUM).exists(), f"{CHROMIUM} is missing (apt-get install chromium)")


def chromium_browser() -> Iterator[Any]:
    """Headless Chromium through Playwright, for a module's ``browser`` fixture (``yield from`` it)."""
    require_chromium()
    from playwright.sync_api import expect as playwright_expect
    from playwright.sync_api import sync_playwright

    playwright_expect.set_options(timeout=EXPECT_MS)
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def page_on_own_server(browser: Any, redis_url: str, height: int) -> Iterator[Any]:
    """A browser page on a ``launchbay ui`` of its own, ``height`` pixels tall (``yield from`` it in a fixture)."""
    server = UiServer(redis_url)
    context = browser.new_context(viewport={**VIEWPORT, "height": height}, base_url=server.url)
    context.set_default_timeout(EXPECT_MS)
    yield context.new_page()
    context.close()
    server.stop()


def expect(target: Any) -> Any:
    """Playwright's ``expect``, imported only where a browser test runs."""
    from playwright.sync_api import expect as playwright_expect

    return playwright_expect(target)


def wait_for(condition, timeout_s: float = 10.0, interval_s: float = 0.05) -> Any:
    """Poll ``condition`` until it returns something truthy; fail after ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout_s}s")
        time.sleep(interval_s)
