"""The app's settings, reachable from any request through :func:`settings`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Optional

import redis
from flask import current_app
from launchbay.queue_config.keys import Keys

EXTENSION = "launchbay"


@dataclass(frozen=True)
class Settings:
    """What the app needs: the Redis connection, the key namespace, the token and the bind address."""

    conn: redis.Redis
    keys: Keys
    token: Optional[str]
    bind_host: str
    metrics_registry: Any = field(default=None, compare=False)  # the queue collector's, for /metrics
    named_tokens: Dict[str, str] = field(default_factory=dict, compare=False)  # token -> user name
    user_header: Optional[str] = None  # a trusted reverse proxy's header naming the user (opt-in)

    @property
    def protected(self) -> bool:
        return self.token is not None or bool(self.named_tokens)


def settings() -> Settings:
    """The running app's settings (inside a request)."""
    return current_app.extensions[EXTENSION]
