"""Small docker helpers: the pull stream as a few readable lines, docker's timestamps as epoch seconds,
and a client that does not scan the environment for proxies on every call."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Callable, Dict, Mapping, Optional

import docker
from launchbay.queue_config.job import Reason

from launchbay.errors import JobRunError

ProgressCallback = Callable[[str], None]


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
