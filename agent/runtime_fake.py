"""A container runtime without Docker, for tests of the agent: containers are timers that exit with a code.

What a fake container does comes, first match wins, from:

1. ``FakeRuntime.program(job_id, FakeProgram(...))`` set by the test;
2. the job's environment: ``LAUNCHBAY_FAKE_RUN_S`` (seconds, float), ``LAUNCHBAY_FAKE_EXIT_CODE``,
   ``LAUNCHBAY_FAKE_OUTPUT`` (lines separated by ``\\n``), ``LAUNCHBAY_FAKE_OOM=1``, so a job enqueued
   through the client can say how it behaves;
3. ``FakeRuntime(default=FakeProgram(...))``.

The engine can be taken away (``engine_down = True``: every call raises DockerUnavailableError,
``ping`` is False), containers can be lost (``lose(container_id)``), as when the engine restarts,
and a container can be made to exit now (``finish(job_id)``). Thread-safe; one instance may serve
several supervisors (adoption after a restart).
"""

from __future__ import annotations

import itertools
import threading
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Set

from launchbay.agent.runtime import (
    AGENT_ID_LABEL,
    JOB_ID_LABEL,
    MANAGED_LABEL,
    SIGKILL_EXIT_CODE,
    ContainerGoneError,
    ContainerInfo,
    ExitStatus,
    LogChunk,
    ProgressCallback,
)
from launchbay.queue_config.job import Reason

from launchbay.errors import DockerUnavailableError, JobRunError

#: Exit code of a process that died of SIGTERM (what ``stop`` gives a well-behaved program).
SIGTERM_EXIT_CODE = 143


@dataclass(frozen=True)
class FakeProgram:
    """How a fake container behaves."""

    run_s: float = 0.05
    exit_code: int = 0
    output: Sequence[str] = ()
    oom: bool = False
    #: When True, ``stop`` waits the whole grace and then kills (exit 137).
    ignores_sigterm: bool = False
    #: When set, starting the container fails with this docker-style explanation.
    start_error: Optional[str] = None

    @classmethod
    def from_env(cls, env: Dict[str, str], default: FakeProgram) -> FakeProgram:
        program = default
        if "LAUNCHBAY_FAKE_RUN_S" in env:
            program = replace(program, run_s=float(env["LAUNCHBAY_FAKE_RUN_S"]))
        if "LAUNCHBAY_FAKE_EXIT_CODE" in env:
            program = replace(program, exit_code=int(env["LAUNCHBAY_FAKE_EXIT_CODE"]))
        if "LAUNCHBAY_FAKE_OUTPUT" in env:
            program = replace(program, output=env["LAUNCHBAY_FAKE_OUTPUT"].split("\n"))
        if env.get("LAUNCHBAY_FAKE_OOM") == "1":
            program = replace(program, oom=True)
        return program


@dataclass
class FakeContainer:
    container_id: str
    spec: Dict[str, Any]
    program: FakeProgram
    labels: Dict[str, str]
    status: str = "created"
    started_at: Optional[float] = None
    ends_at: Optional[float] = None  # time.monotonic() when it exits unless stopped earlier
    exit: Optional[ExitStatus] = None
    stop_calls: List[float] = field(default_factory=list)

    @property
    def job_id(self) -> str:
        return self.labels.get(JOB_ID_LABEL, "")


class _FakeLogStream:
    def __init__(self, runtime: FakeRuntime, container: FakeContainer, follow: bool) -> None:
        self._runtime = runtime
        self._container = container
        self._follow = follow
        self._closed = threading.Event()

    def __iter__(self) -> Iterator[LogChunk]:
        for number, line in enumerate(self._container.program.output):
            if self._closed.is_set():
                return
            yield f"fake-{number:012d}", line.encode("utf-8") + b"\n"
        while self._follow and not self._closed.is_set():
            self._runtime._check_engine()
            with self._runtime._lock:
                if self._runtime._settle(self._container) is not None:
                    return
            self._closed.wait(0.02)

    def close(self) -> None:
        self._closed.set()


class FakeRuntime:
    """Same public methods as DockerRuntime; see the module docstring for how to script it."""

    def __init__(
        self,
        *,
        default: FakeProgram = FakeProgram(),
        images: Optional[Set[str]] = None,
        missing_images: Sequence[str] = (),
    ) -> None:
        self.default = default
        #: None means every image is present; otherwise only these (plus nothing can be pulled).
        self.images = images
        self.missing_images = set(missing_images)
        self.engine_down = False
        #: Calls refused while the engine was down (tests poll it to know the outage was seen).
        self.refused_calls = 0
        self.containers: Dict[str, FakeContainer] = {}
        self.removed: List[str] = []
        self.pulled: List[str] = []
        self._programs: Dict[str, FakeProgram] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Condition()

    # -- scripting -------------------------------------------------------------------------------

    def program(self, job_id: str, program: FakeProgram) -> None:
        """Make the container of ``job_id`` behave as ``program``."""
        self._programs[job_id] = program

    def lose(self, container_id: str) -> None:
        """Forget a container, as an engine restart without live-restore does."""
        with self._lock:
            self.containers.pop(container_id, None)
            self._lock.notify_all()

    def finish(self, job_id: str) -> None:
        """Make the running container of ``job_id`` exit now, with its program's exit code."""
        with self._lock:
            container = next(c for c in self.containers.values() if c.job_id == job_id)
            container.ends_at = time.monotonic()
            self._lock.notify_all()

    def container_for(self, job_id: str) -> Optional[FakeContainer]:
        with self._lock:
            return next((c for c in self.containers.values() if c.job_id == job_id), None)

    # -- the runtime interface ---------------------------------------------------------------------

    def ping(self) -> bool:
        return not self.engine_down

    def ensure_image(
        self, image: str, progress: ProgressCallback, *, should_stop: Optional[Callable[[], bool]] = None
    ) -> None:
        self._check_engine()
        if self.images is not None and image in self.images:
            return
        if image in self.missing_images:
            raise JobRunError(
                f"cannot pull image {image}: pull access denied for {image}, repository does not exist",
                reason=Reason.IMAGE_PULL_FAILED.value,
            )
        if self.images is not None:
            progress(f"image {image} is not on this host; pulling it")
            progress(f"pull {image}: Status: Downloaded newer image for {image}")
            self.images.add(image)
            self.pulled.append(image)

    def create_and_start(self, spec: Dict[str, Any]) -> str:
        self._check_engine()
        labels = dict(spec.get("labels") or {})
        env = dict(spec.get("environment") or {})
        job_id = labels.get(JOB_ID_LABEL, "")
        program = self._programs.get(job_id) or FakeProgram.from_env(env, self.default)
        container_id = f"fake{next(self._ids):060d}"
        with self._lock:
            self.containers[container_id] = FakeContainer(container_id, dict(spec), program, labels)
        if program.start_error:
            self.remove(container_id)
            raise JobRunError(
                f"docker could not start the container: {program.start_error}", reason=Reason.CONTAINER_FAILED.value
            )
        self.start(container_id)
        return container_id

    def start(self, container_id: str) -> None:
        self._check_engine()
        with self._lock:
            container = self._get(container_id)
            if container.status == "created":
                container.status = "running"
                container.started_at = time.time()
                container.ends_at = time.monotonic() + container.program.run_s
            self._lock.notify_all()

    def stream_logs(self, container_id: str, *, since: Optional[str] = None, follow: bool = True) -> _FakeLogStream:
        self._check_engine()
        with self._lock:
            return _FakeLogStream(self, self._get(container_id), follow)

    def wait(self, container_id: str, timeout_s: float) -> Optional[ExitStatus]:
        deadline = time.monotonic() + timeout_s
        with self._lock:
            while True:
                self._check_engine()
                container = self._get(container_id)
                exit_status = self._settle(container)
                if exit_status is not None:
                    return exit_status
                remaining = min(deadline, container.ends_at or deadline) - time.monotonic()
                if time.monotonic() >= deadline:
                    return None
                self._lock.wait(max(0.001, min(remaining, 0.05)))

    def stop(self, container_id: str, grace_s: float) -> None:
        self._check_engine()
        with self._lock:
            container = self.containers.get(container_id)
            if container is None or self._settle(container) is not None:
                return
            container.stop_calls.append(time.monotonic())
            if container.program.ignores_sigterm:
                container.ends_at = min(container.ends_at or 0, time.monotonic() + grace_s)
                container.program = replace(container.program, exit_code=SIGKILL_EXIT_CODE)
            else:
                container.ends_at = time.monotonic()
                container.program = replace(container.program, exit_code=SIGTERM_EXIT_CODE, oom=False)
            self._lock.notify_all()
        self.wait(container_id, grace_s + 1)

    def inspect(self, container_id: str) -> ContainerInfo:
        self._check_engine()
        with self._lock:
            container = self._get(container_id)
            return self._info(container)

    def inspect_exit(self, container_id: str) -> ExitStatus:
        self._check_engine()
        with self._lock:
            container = self._get(container_id)
            exit_status = self._settle(container)
            if exit_status is None:
                raise JobRunError(f"container {container_id} is still running", reason=Reason.CONTAINER_FAILED.value)
            return exit_status

    def list_managed(self, agent_id: str) -> List[ContainerInfo]:
        self._check_engine()
        with self._lock:
            return [
                self._info(c)
                for c in self.containers.values()
                if c.labels.get(MANAGED_LABEL) == "1" and c.labels.get(AGENT_ID_LABEL) == agent_id
            ]

    def remove(self, container_id: str) -> None:
        self._check_engine()
        with self._lock:
            if self.containers.pop(container_id, None) is not None:
                self.removed.append(container_id)
            self._lock.notify_all()

    # -- internals ---------------------------------------------------------------------------------

    def _check_engine(self) -> None:
        if self.engine_down:
            self.refused_calls += 1
            raise DockerUnavailableError("the Docker engine cannot be reached (fake engine is down)")

    def _get(self, container_id: str) -> FakeContainer:
        container = self.containers.get(container_id)
        if container is None:
            raise ContainerGoneError(f"container {container_id[:12]} no longer exists", container_id=container_id)
        return container

    def _settle(self, container: FakeContainer) -> Optional[ExitStatus]:
        """The container's exit once its time is up (moving it to ``exited``), else None."""
        if container.exit is not None:
            return container.exit
        if container.status != "running" or container.ends_at is None or time.monotonic() < container.ends_at:
            return None
        program = container.program
        code = SIGKILL_EXIT_CODE if program.oom else program.exit_code
        container.exit = ExitStatus(exit_code=code, oom_killed=program.oom)
        container.status = "exited"
        return container.exit

    def _info(self, container: FakeContainer) -> ContainerInfo:
        exit_status = self._settle(container)
        return ContainerInfo(
            job_id=container.job_id,
            container_id=container.container_id,
            status=container.status,
            exit_code=exit_status.exit_code if exit_status else None,
            labels=dict(container.labels),
            started_at=container.started_at,
        )
