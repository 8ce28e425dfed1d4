"""The agent's heartbeat: "I am alive, this is what I can hand out, these jobs are still mine".

Every ``heartbeat_interval_s`` one script (``agents.BEAT_LUA``) sets ``{ns}:agent:{id}:alive`` with a
TTL of ``heartbeat_ttl_s + lost_grace_s`` (an agent whose key expired is lost, and the reaper of any
other agent frees its jobs), lists the agent in ``{ns}:agents`` and rewrites its line of the fleet
summary (``{ns}:fleet``, ``agents.read_summary``) with the ledger (which the script reads), status,
counters and capacity, renewing the line's expiry on the Redis server's clock. Whoever reads every agent reads that line.
The agent hash (status, host, labels, queues, counters, Docker health, the last nvidia-smi problem)
and the capacity JSON, which only single-agent readers read (the enqueue's fit advice, scripts),
are written when they would say something new (``beat_at`` aside: the line has the current one),
after a beat whose alive key may have run out (the reaper deletes a lost agent's capacity), and at
least every :data:`REWRITE_S`. An idle beat is that one script: one round trip, six commands as
Redis counts them.
The beat then keeps RQ's started entries of the running jobs alive (``rq_bridge.heartbeat``) and
reports jobs whose cancel was requested, in case the ``cancel`` event was missed.

Between beats, through :meth:`Heartbeat.publish_jobs`, the line is rewritten whenever a claim or a
release changes the ledger, so the summary says what the agent holds within one round trip of it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, Optional

import redis
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.agents import (
    BEAT_LUA,
    SUMMARY_WRITE_LUA,
    LedgerEntry,
    decode_entries,
    summary_line,
)
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.keys import Keys

from launchbay import __version__
from launchbay.text import as_text

log = logging.getLogger(__name__)
#: What a heartbeat reads of each job this agent runs: RQ's execution id, a cancel asked for, who holds it.
RUNNING_FIELDS = ("rq_execution", "cancel_requested", "agent")
#: The agent hash and capacity key are rewritten at least this often, changed or not (a Redis that lost
#: them, say after a restart without persistence, has them back within this long).
REWRITE_S = 60.0


@dataclass
class AgentStatus:
    """What the agent says about itself in its hash; the daemon updates it, the heartbeat writes it."""

    state: str = "starting"  # starting | healthy | unhealthy | draining | stopping | stopped
    docker: str = "unknown"  # up | down | unknown
    gpu_problem: Optional[str] = None
    #: Why the Docker engine is not fit to run jobs (the call that did not answer), or None.
    docker_problem: Optional[str] = None
    #: Ledger entries that are not allocations the claim script wrote (skipped by claims), or None.
    ledger_problem: Optional[str] = None
    started_at: float = field(default_factory=time.time)

    def fields(self) -> Dict[str, str]:
        return {
            "status": self.state,
            "docker": self.docker,
            "gpu_problem": self.gpu_problem or "",
            "docker_problem": self.docker_problem or "",
            "ledger_problem": self.ledger_problem or "",
            "started_at": repr(self.started_at),
        }


class Heartbeat:
    """Writes one beat at a time; the daemon calls :meth:`beat` on a timer."""

    def __init__(
        self,
        conn: redis.Redis,
        keys: Keys,
        settings: AgentSettings,
        *,
        status: AgentStatus,
        capacity: Callable[[], Mapping[str, Any]],
        counters: Callable[[], Mapping[str, int]],
    ) -> None:
        self.conn = conn
        self.keys = keys
        self.settings = settings
        self.status = status
        self.capacity = capacity
        self.counters = counters
        self._summary_write = conn.register_script(SUMMARY_WRITE_LUA)
        self._beat_script = conn.register_script(BEAT_LUA)
        # What the agent hash (less ``beat_at``) and the capacity key said when last written, and when
        # they are written again whatever they say.
        self._keys_written: Optional[tuple] = None
        self._rewrite_at = 0.0
        self._alive_until = 0.0  # (monotonic) when the alive key of the last beat runs out
        # The summary line's last expiry and head, which a write between beats keeps; one writer at a time,
        # so a beat's older read of the ledger never overwrites a release's newer one.
        self._summary_lock = threading.Lock()
        self._expires_ms: Optional[int] = None
        self._head: Optional[tuple] = None
        self._summary_problem: Optional[str] = None

    def write_status(self) -> None:
        """Write the agent hash and capacity without renewing the alive key (the final word on stopping)."""
        with self._summary_lock:
            self._write_final(self._entries(self.conn.hgetall(self.keys.agent_ledger(self.settings.agent_id))))

    def publish_jobs(self) -> None:
        """The ledger changed (a claim or a release): rewrite this agent's summary line with it, same expiry."""
        with self._summary_lock:
            if self._head is None:
                return  # no beat yet: the first one writes the line
            entries = self._entries(self.conn.hgetall(self.keys.agent_ledger(self.settings.agent_id)))
            self._publish(*self._head, entries)

    def run_until(self, closing: threading.Event, interval_s: float, *, on_cancel: Callable[[str], None]) -> None:
        """Beat every ``interval_s`` until ``closing`` is set; ``on_cancel`` gets each job a user asked to cancel.

        A Redis error is logged once (until it changes or goes away) and the next beat tries again.
        """
        problem = None
        while True:
            try:
                for job_id in self.beat():
                    on_cancel(job_id)
                problem = None
            except redis.RedisError as exc:
                if str(exc) != problem:
                    log.error("heartbeat failed: %s", exc)
                problem = str(exc)
            if closing.wait(interval_s):
                return

    def beat(self) -> List[str]:
        """One heartbeat; returns the ids of this agent's jobs whose cancel was requested.

        The script reads the ledger itself and puts its entries in the line, so an idle beat is one
        round trip; what the ledger held comes back for the checks (an unreadable entry found, or gone,
        rewrites the hash and the line at once)."""
        with self._summary_lock:
            fields, capacity = self._fields(), dict(self.capacity())
            self._write_keys_if_changed(fields, capacity)
            raw = self._publish_beat(fields, capacity)
            if self._check_ledger(raw):  # the status says something new about the ledger: say it now
                fields = self._fields()
                self._write_keys_if_changed(fields, capacity)
                self._publish(fields, capacity, self._entries(raw))
        return self._touch_running_jobs([as_text(job_id) for job_id in raw])

    @staticmethod
    def _entries(raw: Mapping[Any, Any]) -> List[LedgerEntry]:
        return list(decode_entries(raw).values())

    def _check_ledger(self, raw: Mapping[Any, Any]) -> bool:
        """Note unreadable ledger entries in the status; True when what it says changed."""
        skipped: List[str] = []
        decode_entries(raw, skipped=skipped)
        problem = f"unreadable ledger entries skipped: {', '.join(sorted(skipped))}" if skipped else None
        if problem and problem != self.status.ledger_problem:
            log.warning("%s (not written by a claim; remove them with HDEL)", problem)
        changed = problem != self.status.ledger_problem
        self.status.ledger_problem = problem
        return changed

    def _write_final(self, entries: List[LedgerEntry]) -> None:
        fields, capacity = self._fields(), dict(self.capacity())
        self._write_keys(fields, capacity)
        self._publish(fields, capacity, entries)

    def _fields(self) -> Dict[str, str]:
        return {
            "agent_id": self.settings.agent_id,
            "host": self.settings.host,
            "labels": json.dumps(self.settings.labels, sort_keys=True),
            "queues": json.dumps(self.settings.queues),
            "max_jobs": str(self.settings.max_jobs),
            "pid": str(os.getpid()),
            "version": __version__,
            "beat_at": repr(time.time()),
            "counters": json.dumps(dict(self.counters()), sort_keys=True),
            **self.status.fields(),
        }

    def _write_keys_if_changed(self, fields: Dict[str, str], capacity: Dict[str, Any]) -> None:
        """The agent hash and capacity key, when they would say something new (``beat_at`` aside), when the
        last beat's expiry has passed (the reaper may have deleted them), or every :data:`REWRITE_S`."""
        written = {k: v for k, v in fields.items() if k != "beat_at"}, json.dumps(capacity, sort_keys=True)
        now = time.monotonic()
        if written != self._keys_written or now >= self._alive_until or now >= self._rewrite_at:
            self._write_keys(fields, capacity)
            self._keys_written, self._rewrite_at = written, time.monotonic() + REWRITE_S

    def _write_keys(self, fields: Dict[str, str], capacity: Dict[str, Any]) -> None:
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.agent_capacity(self.settings.agent_id), json.dumps(capacity, sort_keys=True))
            pipe.hset(self.keys.agent(self.settings.agent_id), mapping=fields)
            pipe.execute()

    def _publish(self, info: Dict[str, str], capacity: Dict[str, Any], entries: List[LedgerEntry]) -> None:
        """This agent's line of the fleet summary, with the last beat's expiry (the first time, one from
        now); an ACL from before the summary only costs a warning."""
        agent_id, line = self.settings.agent_id, summary_line(info, capacity, entries)
        self._head = (info, capacity)
        ttl_ms = math.ceil(self.settings.alive_ttl_s * 1000)
        try:
            if self._expires_ms is None:
                self._expires_ms = int(self._summary_write(keys=[self.keys.fleet], args=[agent_id, ttl_ms, line]))
            else:
                self.conn.hset(self.keys.fleet, agent_id, f"{self._expires_ms}\n{line}")
            self._summary_problem = None
        except redis.exceptions.NoPermissionError as exc:
            self._note_summary_problem(exc)

    def _note_summary_problem(self, exc: Exception) -> None:
        if str(exc) != self._summary_problem:
            log.warning("cannot write the fleet summary (%s): apply the ACL of docs/security.md again", exc)
        self._summary_problem = str(exc)

    def _publish_beat(self, info: Dict[str, str], capacity: Dict[str, Any]) -> Dict[Any, Any]:
        """The beat: alive key, listing and summary line with the ledger's entries, in one script
        (``agents.BEAT_LUA``); returns the ledger as the script read it."""
        agent_id, head = self.settings.agent_id, summary_line(info, capacity, [])
        self._head = (info, capacity)
        ttl_ms = math.ceil(self.settings.alive_ttl_s * 1000)
        keys = [self.keys.fleet, self.keys.agent_alive(agent_id), self.keys.agents, self.keys.agent_ledger(agent_id)]
        try:
            expires_ms, flat = self._beat_script(keys=keys, args=[agent_id, ttl_ms, head, repr(time.time())])
        except redis.exceptions.NoPermissionError:  # an ACL without TIME or the summary: the older way
            return self._beat_without_script(agent_id, ttl_ms, info, capacity)
        self._expires_ms, self._summary_problem = int(expires_ms), None
        self._alive_until = time.monotonic() + ttl_ms / 1000.0
        return dict(zip(flat[0::2], flat[1::2]))

    def _beat_without_script(
        self, agent_id: str, ttl_ms: int, info: Dict[str, str], capacity: Dict[str, Any]
    ) -> Dict[Any, Any]:
        """Alive key and listing in one transaction, then the line on this host's clock, where possible."""
        raw = self.conn.hgetall(self.keys.agent_ledger(agent_id))
        with self.conn.pipeline(transaction=True) as pipe:
            pipe.set(self.keys.agent_alive(agent_id), repr(time.time()), px=ttl_ms)
            pipe.sadd(self.keys.agents, agent_id)
            pipe.execute()
        self._alive_until = time.monotonic() + ttl_ms / 1000.0
        self._expires_ms = int(time.time() * 1000) + ttl_ms
        try:
            line = summary_line(info, capacity, self._entries(raw))
            self.conn.hset(self.keys.fleet, agent_id, f"{self._expires_ms}\n{line}")
            self._summary_problem = None  # only TIME was refused: the line is on this host's clock
        except redis.exceptions.NoPermissionError as refused:
            self._note_summary_problem(refused)
        return raw

    def _touch_running_jobs(self, job_ids: List[str]) -> List[str]:
        if not job_ids:
            return []
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(self.keys.job(job_id), RUNNING_FIELDS)
            records = [
                JobRecord.from_values(job_id, RUNNING_FIELDS, values) for job_id, values in zip(job_ids, pipe.execute())
            ]
        cancels = []
        with self.conn.pipeline(transaction=False) as pipe:
            for record in records:
                if record.agent is not None and record.agent != self.settings.agent_id:
                    continue
                if record.cancel_requested:
                    cancels.append(record.id)
                if record.rq_execution:
                    self._rq_heartbeat(record.id, record.rq_execution, pipe)
            pipe.execute()
        return cancels

    def _rq_heartbeat(self, job_id: str, execution_id: str, pipe: Any) -> None:
        try:
            rq_bridge.heartbeat(self.conn, job_id, execution_id, pipeline=pipe)
        except Exception as exc:  # an expired RQ job must not stop the beat of the others
            log.debug("RQ heartbeat for job %s skipped: %s", job_id, exc, extra={"job_id": job_id})
