"""The agent's clocks, counts and ears: what it did (read by the tests and ``launchbay agents``), when to
act next, and the events that wake it.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Any, Callable, Dict, Optional, Sequence

import redis
from launchbay.queue_config import events
from launchbay.queue_config.job import TERMINAL_STATES, State
from launchbay.queue_config.keys import Keys

log = logging.getLogger(__name__)

#: Counters the tests (and ``launchbay agents``) read: jobs claimed, ended by state, released...
COUNTER_NAMES = (
    "claimed",
    "finished",
    "failed",
    "canceled",
    "released",
    "lost_races",
    "adopted",
    "requeued_unstarted",
    "orphans_removed",
    "reaped_jobs",
)


class Counters:
    """Thread-safe event counts."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: Dict[str, int] = dict.fromkeys(COUNTER_NAMES, 0)

    def inc(self, name: str, by: int = 1) -> None:
        with self._lock:
            self._values[name] = self._values.get(name, 0) + by

    def count_release(self, state: Optional[State]) -> None:
        """A job released on this agent: ``released``, and its end state when it ended."""
        self.inc("released")
        if state in TERMINAL_STATES:
            self.inc(state.value)

    def __getitem__(self, name: str) -> int:
        with self._lock:
            return self._values.get(name, 0)

    def snapshot(self) -> Dict[str, int]:
        with self._lock:
            return dict(self._values)


class Every:
    """Says when something done every ``interval_s`` is due."""

    def __init__(self, interval_s: float) -> None:
        self.interval_s = interval_s
        self._next = 0.0

    def due(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + self.interval_s
        return True

    def due_within(self, delay_s: float) -> None:
        """Make the next time come no later than ``delay_s`` from now."""
        self._next = min(self._next, time.monotonic() + max(0.0, delay_s))

    def seconds_left(self) -> float:
        return max(0.0, self._next - time.monotonic())


#: An agent that believes it is still on its idle lists offers itself again at least this often anyway.
REOFFER_S = 60.0


class EventListener:
    """Listens on ``{ns}:events`` and the agent's own ``{ns}:events:{id}`` and wakes the main loop on
    ``enqueued`` (for a queue this agent serves) and ``cancel`` (the job id goes to ``cancels``);
    reconnects until ``closing``. Another agent's ``released`` frees nothing of ours: it is ignored.
    A ``gpu_drain`` for ``agent_id`` calls ``on_drain`` (the inventory is read again at once).

    It also knows whether the agent is on its queues' idle lists: it is after an offer, until an
    ``enqueued`` message arrives (an enqueue's wake-up takes the agent it wakes off the list; any
    ``enqueued`` counts, to be safe), the subscription is made again (Redis may have restarted) or
    :data:`REOFFER_S` passed. While it is, the offer before a pass is skipped (two commands a pass).
    """

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        queues: Sequence[str],
        *,
        wake: threading.Event,
        cancels: queue.SimpleQueue,
        closing: threading.Event,
        agent_id: str = "",
        on_drain: Optional[Callable[[], None]] = None,
    ) -> None:
        self.conn, self.keys, self.queues = conn, keys, list(queues)
        self.wake, self.cancels, self.closing = wake, cancels, closing
        self.agent_id, self.on_drain = agent_id, on_drain
        self._offered, self._own_channel = False, True
        #: ``enqueued`` messages and resubscriptions heard, and that count when the agent last offered itself
        self._heard, self._listed_at_heard, self._offered_at = 0, -1, 0.0

    def offer(self, running: int, slots: int, *, again: bool = False) -> None:
        """Before a claim pass (``again`` False): with room for a job, be on the idle lists of our queues, at
        the end (an enqueue wakes from the front); after one (``again``): off them once full (events.py).

        An agent still listed since its last offer (no ``enqueued`` event heard since, which is what an
        enqueue that takes it off sends it) offers nothing: an idle agent's safety-net pass costs no
        write."""
        if not self.agent_id or not self._own_channel:
            return
        room = running < slots
        if room and not again and not self._still_listed():
            heard = self._heard
            events.offer(self.conn, self.keys, self.agent_id, self.queues, has_room=True)
            self._listed_at_heard, self._offered_at = heard, time.monotonic()
        elif not room and self._offered:
            events.offer(self.conn, self.keys, self.agent_id, self.queues, has_room=False)
        if not room:
            self._listed_at_heard = -1
        self._offered = room if not again else self._offered and room

    @property
    def heard(self) -> int:
        """How many ``enqueued`` messages (and resubscriptions) this listener has heard: a count that moved
        means the queues may hold work a read before it did not see."""
        return self._heard

    def listed(self) -> bool:
        """Whether the agent is on its queues' idle lists, so that an enqueue wakes it (see the class)."""
        return self._own_channel and self._still_listed()

    def _still_listed(self) -> bool:
        """Whether the agent is on its idle lists as of its last offer (nothing heard since could have
        taken it off them)."""
        return (
            self._offered and self._listed_at_heard == self._heard and time.monotonic() - self._offered_at < REOFFER_S
        )

    def withdraw(self) -> None:
        """Off the idle lists (the agent stops); a stale entry would only cost one wasted wake-up."""
        try:
            self.offer(0, 0, again=True)
        except redis.RedisError as exc:
            log.debug("could not leave the idle lists: %s", exc)

    def run(self) -> None:
        while not self.closing.is_set():
            pubsub = None
            try:
                pubsub = events.subscribe(self.conn, self.keys, self.agent_id if self._own_channel else None)
                self._heard += 1  # a Redis that restarted has lost the idle lists: offer again
                self.wake.set()  # whatever was published while we were not listening
                while not self.closing.is_set():
                    message = _next_message(pubsub)
                    if message is not None:
                        self.on_event(message.get("data"))
            except redis.exceptions.NoPermissionError as exc:
                # An ACL from before the per-agent channels: listen on the shared one, poll for the rest.
                log.warning("may not listen on %s (%s); new jobs are found by polling", self._own(), exc)
                self._own_channel = False
            except redis.RedisError as exc:
                log.debug("event listener reconnecting: %s", exc)
                self.closing.wait(1.0)
            finally:
                if pubsub is not None:
                    pubsub.close()
        self.withdraw()

    def _own(self) -> str:
        return self.keys.agent_events(self.agent_id or "")

    def on_event(self, data: Any) -> None:
        event = events.parse(data)
        if isinstance(event, events.Enqueued):
            self._heard += 1  # a wake-up took this agent off the idle list it was on
        if isinstance(event, events.Enqueued) and event.queue in self.queues:
            self.wake.set()
        elif isinstance(event, events.Cancel):
            self.cancels.put(event.job_id)
            self.wake.set()
        elif isinstance(event, events.GpuDrain) and event.agent == self.agent_id and self.on_drain is not None:
            self.on_drain()


#: How long the listener waits for a message before it looks at ``closing`` again: the longest it keeps a
#: stopping agent waiting, and what an idle agent's listener costs (one wake-up per wait; at 0.5 s the
#: listeners were a quarter of an idle agent's CPU).
LISTEN_WAIT_S = 2.0


def _next_message(pubsub: Any) -> Any:
    try:
        return pubsub.get_message(timeout=LISTEN_WAIT_S)
    except AttributeError as exc:  # redis-py, when another thread disconnected the pool under this read
        raise redis.ConnectionError(f"the connection went away during a read ({exc})") from exc
