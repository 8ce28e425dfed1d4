"""The queue configs one agent acts on: each parsed once per stored version, read again only when old.

A claim pass reads every served queue's config anyway (with its paused flag, ``claim.QueueReader``)
and hands the stored JSON to :meth:`QueueConfigs.seen`; the job threads, fair share and the reaper ask
:meth:`QueueConfigs.get`, which answers from that read while it is at most ``max_age_s`` old (the
agent passes its poll interval plus a second: the safety-net pass keeps it fresh) and reads Redis
otherwise. The JSON is validated (pydantic) only when it differs from the last one seen, not once
per job. So a changed config reaches a job's start and end within one claim pass, as it reaches
the claim itself.
"""

from __future__ import annotations

import threading
import time
from typing import Callable, Dict, Optional, Tuple

from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore


class QueueConfigs:
    """Queue configs as last read, with when; thread-safe (the main loop writes, job threads read)."""

    def __init__(self, store: QueueStore, max_age_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.max_age_s = max_age_s
        self.clock = clock
        self._lock = threading.Lock()
        #: queue -> (when read, stored JSON or None)
        self._read: Dict[str, Tuple[float, Optional[bytes]]] = {}
        #: queue -> (the stored JSON it was parsed from, the config)
        self._parsed: Dict[str, Tuple[bytes, QueueConfig]] = {}

    def seen(self, name: str, raw: Optional[bytes]) -> None:
        """The stored JSON of ``name`` as just read from Redis (None: no such queue)."""
        with self._lock:
            self._read[name] = (self.clock(), raw)

    def get(self, name: str) -> QueueConfig:
        """The queue's config, as ``QueueStore.get`` answers (NotFoundError, ConfigError), at most ``max_age_s`` old."""
        with self._lock:
            read = self._read.get(name)
        if read is None or self.clock() - read[0] > self.max_age_s:
            raw = self.store.stored(name)
            self.seen(name, raw)
        else:
            raw = read[1]
        if raw is None:
            return self.store.parse(name, None)  # raises NotFoundError
        with self._lock:
            parsed = self._parsed.get(name)
        if parsed is not None and parsed[0] == raw:
            return parsed[1]
        config = self.store.parse(name, raw)  # raises ConfigError; nothing kept then
        with self._lock:
            self._parsed[name] = (raw, config)
        return config
