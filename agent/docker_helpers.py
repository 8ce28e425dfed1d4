"""Small docker helpers: the pull stream as a few readable lines, docker's timestamps as epoch seconds,
a client that does not scan the environment for proxies on every call, and the engine probe.

Every docker call is bounded: :data:`CALL_TIMEOUT_S` for a job's calls (one read of a pull or log
stream counts as one call), :data:`PROBE_TIMEOUT_S` for the probe the agent's health rests on.
"""

from __future__ import annotations

import logging
from contextlib import contextmanager
from datetime import datetime
from typing import Any, Callable, Dict, Iterator, Mapping, Optional, Tuple

import docker
import requests
from launchbay.queue_config.job import Reason

from launchbay.errors import DockerUnavailableError, JobRunError

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[str], None]

#: The most one docker call of a job may take (seconds) before the engine counts as not answering.
CALL_TIMEOUT_S = 60.0
#: The most each call of the engine probe may take: ping, list, image inspect, create.
PROBE_TIMEOUT_S = 3.0
#: An image name no one has: inspect and create of it make a well engine answer "no such image" at once.
PROBE_IMAGE = "launchbay-engine-probe.invalid/absent:none"


def parse_docker_time(text: Optional[str]) -> Optional[float]:
    """``2026-11-22T11:49:32.415617412Z`` -> epoch seconds; docker's zero time (never started) -> None."""
    if not text or text.startswith("0001-"):
        return None
    text = text.rstrip("Z")
    whole, _, fraction = text.partition(".")
    moment = datetime.fromisoformat(whole + "+00:00")
    return moment.timestamp() + (float("0." + fraction) if fraction.isdigit() else 0.0)


class PullProgress:
    """Turns docker's pull stream into a few readable lines: one per layer state change, not per byte."""

    def __init__(self, image: str, progress: ProgressCallback) -> None:
        self.image = image
        self.progress = progress
        self._layer_status: Dict[str, str] = {}

    def feed(self, event: Mapping[str, Any]) -> None:
        """Handle one decoded pull event; raises JobRunError for an error reported in the stream."""
        if "error" in event:
            detail = event.get("errorDetail", {}).get("message") or event["error"]
            raise JobRunError(f"cannot pull image {self.image}: {detail}", reason=Reason.IMAGE_PULL_FAILED.value)
        status = str(event.get("status", "")).strip()
        layer = event.get("id")
        if not status:
            return
        if layer and status != self.image and not status.startswith("Pulling from"):
            if self._layer_status.get(layer) == status:
                return
            self._layer_status[layer] = status
            self.progress(f"pull {self.image}: layer {layer}: {status}")
        else:
            self.progress(f"pull {self.image}: {status}")


def skip_proxy_lookup(api: docker.APIClient) -> None:
    """Stop requests from reading the proxy variables on every call to a local engine.

    docker-py's client is a ``requests`` session, which by default scans the whole environment for
    ``*_proxy`` variables on each request: about a fifth of the agent's CPU per job, measured. A
    unix socket (``http+docker://``) or an ssh tunnel never goes through an HTTP proxy, so there
    the lookup is turned off; a tcp:// engine keeps it.
    """
    if str(getattr(api, "base_url", "")).startswith("http+docker://"):
        api.trust_env = False


def probe_engine(api: docker.APIClient, timeout_s: float) -> Optional[str]:
    """Ask the engine, in turn, what a job needs: None when each answers (any answer), else the first that did not.

    Inspect and create name :data:`PROBE_IMAGE`, which does not exist: a well engine refuses both
    at once and nothing is left behind; a half-sick one hangs there while ``/_ping`` still answers.
    """
    steps: Tuple[Tuple[str, Callable[[], Any]], ...] = (
        ("ping", api.ping),
        ("container list", lambda: api.containers(limit=1)),
        ("image inspect", lambda: api.inspect_image(PROBE_IMAGE)),
        ("container create", lambda: api.create_container(PROBE_IMAGE, labels={"launchbay.probe": "1"})),
    )
    for name, call in steps:
        try:
            call()
        except docker.errors.APIError:
            continue  # the engine answered (here: no such image)
        except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
            if timed_out(exc):
                return f"docker {name} did not answer within {timeout_s:g} s"
            return f"docker {name} failed: {exc}"
    return None


def timed_out(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, (requests.exceptions.Timeout, TimeoutError)) or "timed out" in text or "timeout" in text


def is_engine_unreachable(exc: BaseException) -> bool:
    if isinstance(exc, docker.errors.APIError):
        return False
    return isinstance(exc, (requests.exceptions.RequestException, docker.errors.DockerException, OSError))


def explanation(exc: BaseException) -> str:
    if isinstance(exc, docker.errors.APIError):
        return str(exc.explanation or exc)
    return str(exc) or exc.__class__.__name__


@contextmanager
def engine_errors(action: str) -> Iterator[None]:
    """Turn "the engine is not there" into DockerUnavailableError; docker API errors pass through."""
    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as exc:
        if is_engine_unreachable(exc):
            raise DockerUnavailableError(f"the Docker engine cannot be reached ({action}): {exc}") from exc
        raise


class DockerLogStream:
    """Wraps docker-py's CancellableStream so that engine errors surface as DockerUnavailableError."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __iter__(self) -> Iterator[Tuple[str, bytes]]:
        with engine_errors("reading logs"):
            for frame in self._stream:
                timestamp, space, data = frame.partition(b" ")
                if not space or not timestamp[:1].isdigit():  # not "<timestamp> <data>": keep it all
                    yield "", frame
                else:
                    yield timestamp.decode("ascii", errors="replace"), data

    def close(self) -> None:
        try:
            self._stream.close()
        except Exception:  # closing a dead socket must never fail the caller
            logger.debug("closing a docker log stream failed", exc_info=True)
