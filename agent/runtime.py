"""The container runtime: Docker through the docker SDK, behind the few calls the supervisor makes.

Every docker error is translated here, at the boundary, keeping the cause:

- the engine cannot be reached (``requests`` connection errors, which are *not* docker
  exceptions, or a client that cannot even fetch the API version) -> :class:`DockerUnavailableError`;
- an image that is missing and cannot be pulled -> ``JobRunError(reason="image_pull_failed")``;
- docker refusing to create or start a container -> ``JobRunError(reason="container_failed")``
  with docker's own explanation as the message;
- a container that no longer exists -> :class:`ContainerGoneError`.

:class:`launchbay.agent.runtime_fake.FakeRuntime` has the same public methods, without Docker.
"""

from __future__ import annotations

import logging
import math
import os
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Protocol, Tuple

import docker
from docker.utils import parse_repository_tag
from launchbay.agent.docker_client import AgentAPIClient, AgentDockerClient, create_container
from launchbay.agent.docker_helpers import (
    CALL_TIMEOUT_S,
    PROBE_TIMEOUT_S,
    DockerLogStream,
    PullProgress,
    engine_errors,
    explanation,
    parse_docker_time,
    probe_engine,
    skip_proxy_lookup,
    timed_out,
)
from launchbay.queue_config.job import Reason

from launchbay.errors import DockerUnavailableError, JobRunError, LaunchbayError

logger = logging.getLogger(__name__)

#: Labels on every container the agent creates; ``list_managed`` finds them after a restart.
MANAGED_LABEL = "launchbay.managed"
JOB_ID_LABEL = "launchbay.job_id"
AGENT_ID_LABEL = "launchbay.agent_id"
QUEUE_LABEL = "launchbay.queue"
#: Exit code of a process killed by SIGKILL (the OOM killer, or ``docker stop`` after the grace).
SIGKILL_EXIT_CODE = 137

ProgressCallback = Callable[[str], None]


class PullInterruptedError(LaunchbayError):
    """Raised by ``ensure_image`` when its ``should_stop`` callback asked to give up (a cancel, a shutdown)."""


class ContainerGoneError(LaunchbayError):
    """Raised when a container the agent is watching no longer exists (removed, or lost with the engine)."""

    def __init__(self, message: str, *, container_id: str) -> None:
        super().__init__(message)
        self.container_id = container_id


@dataclass(frozen=True)
class ContainerInfo:
    """One of the agent's containers, as a restarted agent finds it."""

    job_id: str
    container_id: str
    #: docker's status: ``created``, ``running``, ``exited``, ``dead``, ...
    status: str
    #: Set once the container has exited.
    exit_code: Optional[int]
    labels: Mapping[str, str] = field(default_factory=dict)
    #: Epoch seconds when the container started; None when it never did.
    started_at: Optional[float] = None

    @property
    def running(self) -> bool:
        return self.status in ("running", "restarting", "paused")


@dataclass(frozen=True)
class ExitStatus:
    """How a container ended."""

    exit_code: int
    oom_killed: bool = False
    #: docker's ``State.Error`` (empty unless the runtime itself failed).
    error: str = ""


#: One log message of a container: docker's timestamp (RFC 3339, fixed nanoseconds, UTC, so
#: timestamps of one container compare as strings) and the bytes, usually one line with its newline.
LogChunk = Tuple[str, bytes]


class LogStream(Protocol):
    """A container's output as :data:`LogChunk` s, ending when the container exits; ``close`` stops it early."""

    def __iter__(self) -> Iterator[LogChunk]: ...

    def close(self) -> None: ...


class Runtime(Protocol):
    """What the supervisor needs from a container runtime (Docker, or the fake in tests)."""

    def ping(self) -> bool: ...
    def probe(self) -> Optional[str]: ...
    def ensure_image(
        self, image: str, progress: ProgressCallback, *, should_stop: Optional[Callable[[], bool]] = None
    ) -> None: ...
    def create_and_start(self, spec: Dict[str, Any]) -> str: ...
    def start(self, container_id: str) -> None: ...
    def stream_logs(self, container_id: str, *, since: Optional[str] = None, follow: bool = True) -> LogStream: ...
    def wait(self, container_id: str, timeout_s: float) -> Optional[ExitStatus]: ...
    def stop(self, container_id: str, grace_s: float) -> None: ...
    def inspect(self, container_id: str) -> ContainerInfo: ...
    def inspect_exit(self, container_id: str) -> ExitStatus: ...
    def list_managed(self, agent_id: str) -> List[ContainerInfo]: ...
    def remove(self, container_id: str) -> None: ...


class DockerRuntime:
    """Runs containers on one Docker engine.

    The client is made on first use, so an agent can start while the engine is down and a call
    made then raises DockerUnavailableError instead of the constructor failing.
    """

    def __init__(
        self,
        client: Optional[docker.DockerClient] = None,
        *,
        docker_host: Optional[str] = None,
        timeout_s: float = CALL_TIMEOUT_S,
        probe_timeout_s: float = PROBE_TIMEOUT_S,
    ) -> None:
        self._client_obj = client
        self._probe_obj: Optional[docker.DockerClient] = None
        self._docker_host = docker_host
        self._timeout_s = timeout_s
        self._probe_timeout_s = probe_timeout_s

    def _new_client(self, timeout_s: float) -> docker.DockerClient:
        environment = dict(os.environ)
        if self._docker_host:
            environment["DOCKER_HOST"] = self._docker_host
        with engine_errors("connecting"):
            # docker-py asks the engine its API version here: bounded by the same timeout
            client = AgentDockerClient.from_env(timeout=max(1, math.ceil(timeout_s)), environment=environment)
        skip_proxy_lookup(client.api)
        return client

    def _client(self) -> docker.DockerClient:
        if self._client_obj is None:
            self._client_obj = self._new_client(self._timeout_s)
        return self._client_obj

    def _probe_client(self) -> docker.DockerClient:
        if self._probe_obj is None:
            self._probe_obj = self._new_client(self._probe_timeout_s)
        return self._probe_obj

    @property
    def _api(self) -> docker.APIClient:
        return self._client().api

    def close(self) -> None:
        for client in (self._client_obj, self._probe_obj):
            if client is not None:
                client.close()

    def ping(self) -> bool:
        """True when the engine answers ``/_ping`` within the probe timeout."""
        try:
            with engine_errors("ping"):
                return bool(self._probe_client().api.ping())
        except (DockerUnavailableError, docker.errors.DockerException):
            return False

    def probe(self) -> Optional[str]:
        """None when the engine answers each call a job needs within the probe timeout, else which did not."""
        try:
            api = self._probe_client().api
        except DockerUnavailableError as exc:
            cause = exc.__cause__ or exc
            if timed_out(cause):
                return f"docker version did not answer within {self._probe_timeout_s:g} s"
            return str(exc)
        return probe_engine(api, self._probe_timeout_s)

    def ensure_image(
        self, image: str, progress: ProgressCallback, *, should_stop: Optional[Callable[[], bool]] = None
    ) -> None:
        """Pull ``image`` unless it is present, reporting progress lines; JobRunError(image_pull_failed) on failure.

        ``should_stop`` is asked after every pull event; when it says True the pull is abandoned
        (the engine may finish it in the background) with PullInterruptedError.
        """
        with engine_errors("looking up an image"):
            try:
                self._api.inspect_image(image)
                return
            except docker.errors.ImageNotFound:
                pass
            except docker.errors.APIError as exc:
                raise JobRunError(
                    f"cannot look up image {image}: {explanation(exc)}", reason=Reason.IMAGE_PULL_FAILED.value
                ) from exc
        progress(f"image {image} is not on this host; pulling it")
        repository, tag = parse_repository_tag(image)
        reporter = PullProgress(image, progress)
        with engine_errors("pulling an image"):
            try:
                for event in self._api.pull(repository, tag=tag or "latest", stream=True, decode=True):
                    reporter.feed(event)
                    if should_stop is not None and should_stop():
                        raise PullInterruptedError(f"the pull of {image} was abandoned")
                self._api.inspect_image(image)
            except docker.errors.APIError as exc:
                raise JobRunError(
                    f"cannot pull image {image}: {explanation(exc)}", reason=Reason.IMAGE_PULL_FAILED.value
                ) from exc

    def create_and_start(self, spec: Dict[str, Any]) -> str:
        """Create and start a container from ``build_container_spec``'s kwargs; returns its id.

        A container that was created but would not start is removed before the error is raised.
        """
        spec = dict(spec)
        image = spec.pop("image")
        with engine_errors("creating a container"):
            try:
                try:
                    container_id = create_container(self._client(), image, spec)
                except docker.errors.APIError as exc:
                    if exc.status_code != 409 or not spec.get("name"):
                        raise
                    # The name is taken by a container left from an earlier attempt of the same job.
                    logger.warning("removing the stale container %s before a new attempt", spec["name"])
                    self.remove(spec["name"])
                    container_id = create_container(self._client(), image, spec)
            except docker.errors.APIError as exc:
                raise JobRunError(
                    f"docker could not create the container: {explanation(exc)}",
                    reason=Reason.CONTAINER_FAILED.value,
                ) from exc
        try:
            self.start(container_id)
        except JobRunError:
            self.remove(container_id)
            raise
        return container_id

    def start(self, container_id: str) -> None:
        with engine_errors("starting a container"):
            try:
                self._api.start(container_id)
            except docker.errors.NotFound as exc:
                raise ContainerGoneError(f"container {container_id[:12]} is gone", container_id=container_id) from exc
            except docker.errors.APIError as exc:
                raise JobRunError(
                    f"docker could not start the container: {explanation(exc)}",
                    reason=Reason.CONTAINER_FAILED.value,
                ) from exc

    def stream_logs(self, container_id: str, *, since: Optional[str] = None, follow: bool = True) -> LogStream:
        """stdout and stderr together, with docker's timestamps, following until the container exits.

        ``since`` (a chunk's timestamp) starts the output at most a second before it; without
        ``follow`` the stream ends with the output written so far.
        """
        since_s = int(parse_docker_time(since) or 0) - 1 if since else None
        with engine_errors("reading logs"), self._gone(container_id):
            stream = self._api.logs(
                container_id, stream=True, follow=follow, stdout=True, stderr=True, timestamps=True, since=since_s
            )
        return DockerLogStream(stream)

    def wait(self, container_id: str, timeout_s: float) -> Optional[ExitStatus]:
        """Block up to ``timeout_s`` for the container to exit; None while it still runs."""
        try:
            with engine_errors("waiting for a container"), self._gone(container_id):
                self._api.wait(container_id, timeout=timeout_s)
        except DockerUnavailableError:
            # docker-py reports its own read timeout as a ConnectionError: ask the engine which it was.
            if self.ping():
                return None
            raise
        return self.inspect_exit(container_id)

    def stop(self, container_id: str, grace_s: float) -> None:
        """SIGTERM, then SIGKILL after ``grace_s`` (docker counts whole seconds, so it is rounded up)."""
        with engine_errors("stopping a container"):
            try:
                self._api.stop(container_id, timeout=math.ceil(grace_s))
            except docker.errors.NotFound:
                return
            except docker.errors.APIError as exc:
                logger.warning("docker stop %s failed: %s", container_id[:12], explanation(exc))

    def inspect(self, container_id: str) -> ContainerInfo:
        with engine_errors("inspecting a container"), self._gone(container_id):
            attrs = self._api.inspect_container(container_id)
        return _container_info(attrs)

    def inspect_exit(self, container_id: str) -> ExitStatus:
        """The exit of a stopped container; a 137 counts as OOM when docker says so or an ``oom`` event was seen."""
        with engine_errors("inspecting a container"), self._gone(container_id):
            state = self._api.inspect_container(container_id)["State"]
        exit_code = int(state.get("ExitCode") or 0)
        oom = bool(state.get("OOMKilled"))
        if exit_code == SIGKILL_EXIT_CODE and not oom:
            oom = self._oom_event_seen(container_id, state)
        return ExitStatus(exit_code=exit_code, oom_killed=oom, error=str(state.get("Error") or ""))

    def _oom_event_seen(self, container_id: str, state: Mapping[str, Any]) -> bool:
        # OOMKilled has been unreliable on some kernels; the engine's event history is the second witness.
        started = parse_docker_time(state.get("StartedAt")) or (time.time() - 3600)
        finished = parse_docker_time(state.get("FinishedAt")) or time.time()
        try:
            with engine_errors("reading events"):
                events = self._api.events(
                    since=int(started) - 1,
                    until=int(finished) + 2,
                    filters={"container": container_id, "event": "oom"},
                    decode=True,
                )
                return any(True for _ in events)
        except (DockerUnavailableError, docker.errors.DockerException):
            return False

    def list_managed(self, agent_id: str) -> List[ContainerInfo]:
        """Every container this agent created and has not removed, running or not."""
        filters = {"label": [f"{MANAGED_LABEL}=1", f"{AGENT_ID_LABEL}={agent_id}"]}
        with engine_errors("listing containers"):
            summaries = self._api.containers(all=True, filters=filters)
            infos = []
            for summary in summaries:
                try:
                    infos.append(_container_info(self._api.inspect_container(summary["Id"])))
                except docker.errors.NotFound:
                    continue  # removed between the list and the inspect
        return infos

    def remove(self, container_id: str) -> None:
        """Remove a container (stopping it if needed); one that is already gone is fine."""
        with engine_errors("removing a container"):
            api = self._api
            try:
                api.remove_container(container_id, force=True)
            except docker.errors.NotFound:
                pass
            except docker.errors.APIError as exc:
                if exc.status_code == 409:  # removal already in progress
                    return
                raise JobRunError(
                    f"docker could not remove container {container_id[:12]}: {explanation(exc)}",
                    reason=Reason.CONTAINER_FAILED.value,
                ) from exc
        if isinstance(api, AgentAPIClient):
            api.forget(container_id)

    @staticmethod
    @contextmanager
    def _gone(container_id: str) -> Iterator[None]:
        try:
            yield
        except docker.errors.NotFound as exc:
            raise ContainerGoneError(
                f"container {container_id[:12]} no longer exists", container_id=container_id
            ) from exc


def _container_info(attrs: Mapping[str, Any]) -> ContainerInfo:
    labels = dict(attrs.get("Config", {}).get("Labels") or {})
    state = attrs.get("State", {})
    status = str(state.get("Status", "unknown"))
    exited = status in ("exited", "dead")
    return ContainerInfo(
        job_id=labels.get(JOB_ID_LABEL, ""),
        container_id=attrs["Id"],
        status=status,
        exit_code=int(state.get("ExitCode") or 0) if exited else None,
        labels=labels,
        started_at=parse_docker_time(state.get("StartedAt")),
    )
