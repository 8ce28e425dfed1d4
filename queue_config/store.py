"""Queue configs and job definitions in Redis.

A queue is the hash ``{ns}:queue:{name}`` (``config`` as JSON, ``paused`` "0"/"1",
``updated_at`` epoch seconds) plus its name in ``{ns}:queues``. A job definition is the input
spec a job's last run recorded (the SDK's ``inputs.json``), stored per job name in
``{ns}:jobdef:{name}`` by the agent, with the name in ``{ns}:jobdefs``; enqueue adds names too,
so ``launchbay job list`` shows jobs that have not run yet.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from typing import Any, Dict, List, Literal, Optional, Tuple

import redis
from launchbay.queue_config import events, lifecycle, rq_bridge
from launchbay.queue_config.job import ACTIVE_STATES, JobRecord, State
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig, parse_model
from launchbay.queue_config.recorded_inputs import check_recorded_inputs

from launchbay.errors import ConfigError, NotFoundError, UserError
from launchbay.text import as_text

ApplyResult = Literal["created", "updated", "unchanged"]


def _config_json(config: QueueConfig) -> str:
    # Sorted keys, so that applying the same file twice compares equal and reports "unchanged".
    return json.dumps(config.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))


class QueueStore:
    """Reads and writes queue configs and job definitions for one connection and namespace."""

    def __init__(self, conn: redis.Redis, keys: Optional[Keys] = None) -> None:
        self.conn = conn
        self.keys = keys or Keys.from_env()

    # -- queues ---------------------------------------------------------------------------

    def apply(self, config: QueueConfig) -> ApplyResult:
        """Create or update a queue; its paused flag is kept across updates."""
        key = self.keys.queue(config.name)
        new = _config_json(config)
        old = self.conn.hget(key, "config")
        if old is not None and as_text(old) == new:
            return "unchanged"
        with self.conn.pipeline() as pipe:
            pipe.hset(key, mapping={"config": new, "updated_at": repr(time.time())})
            pipe.hsetnx(key, "paused", "0")
            pipe.sadd(self.keys.queues, config.name)
            pipe.execute()
        return "created" if old is None else "updated"

    def get(self, name: str) -> QueueConfig:
        """The queue's config; NotFoundError listing the known queues when there is none."""
        return self.parse(name, self.stored(name))

    def get_and_paused(self, name: str) -> Tuple[QueueConfig, bool]:
        """The queue's config (checked as :meth:`get` checks it) and whether it is paused, in one read."""
        raw, paused = self.conn.hmget(self.keys.queue(name), ("config", "paused"))
        return self.parse(name, raw), paused == b"1"

    def stored(self, name: str) -> Optional[bytes]:
        """The queue's config JSON as stored, unchecked (None: no such queue)."""
        return self.conn.hget(self.keys.queue(name), "config")

    def parse(self, name: str, raw: Optional[bytes]) -> QueueConfig:
        """The config from its stored JSON ``raw`` (None: no such queue), checked as :meth:`get` checks it."""
        if raw is None:
            raise NotFoundError(self._unknown_queue_message(name))
        # A config stored by an older launchbay may no longer validate; say so instead of a traceback.
        source = f"queue {name!r} as stored (re-apply its file)"
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError):  # written by hand: not JSON, not UTF-8, nested without end
            raise ConfigError(f"{source}: its config in Redis is not JSON") from None
        return parse_model(QueueConfig, data, source=source)

    def _unknown_queue_message(self, name: str) -> str:
        names = self.names()
        if not names:
            return f"unknown queue {name!r}; no queues exist yet: create one with `launchbay queue apply FILE`"
        return f"unknown queue {name!r}; known queues: {', '.join(names)}"

    def names(self) -> List[str]:
        return sorted(as_text(n) for n in self.conn.smembers(self.keys.queues))

    def list(self) -> List[QueueConfig]:
        """Every queue's config, sorted by name."""
        return [self.get(name) for name in self.names()]

    def updated_at(self, name: str) -> Optional[float]:
        raw = self.conn.hget(self.keys.queue(name), "updated_at")
        return float(raw) if raw else None

    def job_counts(self, name: str) -> Dict[str, int]:
        """How many of the queue's jobs are in each state (jobs whose record expired, or whose state is
        none of ours, are not counted)."""
        ids = [as_text(job_id) for job_id in self.conn.zrange(self.keys.queue_jobs(name), 0, -1)]
        with self.conn.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hmget(self.keys.job(job_id), lifecycle.STATE_ONLY)
            answers = zip(ids, pipe.execute())
            records = [JobRecord.from_values(job_id, lifecycle.STATE_ONLY, values) for job_id, values in answers]
        return dict(Counter(record.state.value for record in records if record.state is not None))

    def delete(self, name: str, *, force: bool = False) -> Dict[str, int]:
        """Remove a queue. Refused while it has queued or claimed jobs, unless ``force``.

        With ``force`` its queued jobs are canceled and claimed ones get a cancel request first.
        Returns the job counts by state as they were before.
        """
        self.get(name)
        counts = self.job_counts(name)
        waiting = counts.get(State.QUEUED.value, 0)
        active = sum(counts.get(s.value, 0) for s in ACTIVE_STATES)
        if (waiting or active) and not force:
            raise UserError(
                f"queue {name!r} has {waiting} queued and {active} starting or running jobs; "
                "cancel them first or use --force (which cancels them)"
            )
        if waiting or active:
            self._cancel_open_jobs(name)
        with self.conn.pipeline() as pipe:
            pipe.delete(self.keys.queue(name))
            pipe.srem(self.keys.queues, name)
            pipe.execute()
        rq_bridge.delete_queue(self.conn, name)
        return counts

    def _cancel_open_jobs(self, name: str) -> None:
        for job_id in self.conn.zrange(self.keys.queue_jobs(name), 0, -1):
            lifecycle.cancel(self.conn, self.keys, as_text(job_id), missing_ok=True, terminal_ok=True)

    def pause(self, name: str) -> None:
        """Stop agents from claiming the queue's jobs; enqueue still accepts them."""
        self._set_paused(name, True)

    def resume(self, name: str) -> None:
        self._set_paused(name, False)
        events.publish(self.conn, self.keys, events.Enqueued(name))

    def is_paused(self, name: str) -> bool:
        return self.conn.hget(self.keys.queue(name), "paused") == b"1"

    def _set_paused(self, name: str, paused: bool) -> None:
        self.get(name)
        self.conn.hset(self.keys.queue(name), "paused", "1" if paused else "0")

    # -- job definitions ------------------------------------------------------------------

    def add_jobdef_name(self, name: str, *, pipeline: Any = None) -> None:
        """Remember a job name (enqueue calls this inside its transaction)."""
        (pipeline if pipeline is not None else self.conn).sadd(self.keys.jobdefs, name)

    def record_inputs(self, name: str, inputs: Dict[str, Any], job_id: str) -> None:
        """Store the input spec that job ``job_id`` of definition ``name`` recorded (its inputs.json)."""
        check_recorded_inputs(inputs)  # ValueError: written by the job's code, so checked before anyone reads it
        record = {"inputs": inputs, "job_id": job_id, "recorded_at": time.time()}
        with self.conn.pipeline() as pipe:
            # Unsorted: the job's own key order is what `launchbay job show` lists.
            pipe.set(self.keys.jobdef(name), json.dumps(record))
            pipe.sadd(self.keys.jobdefs, name)
            pipe.execute()

    def get_jobdef(self, name: str) -> Optional[Dict[str, Any]]:
        """``{"inputs", "job_id", "recorded_at"}`` from the last recorded run, or None.

        ConfigError when the stored definition is not one the agent would have stored (written
        into Redis by hand, or before inputs were checked): it is refused, never half-used.
        """
        raw = self.conn.get(self.keys.jobdef(name))
        if not raw:
            return None
        try:
            record = json.loads(raw)
            if not isinstance(record, dict) or not isinstance(record.get("job_id", ""), (str, type(None))):
                raise ValueError("not a job definition object")
            check_recorded_inputs(record.get("inputs"))
        except (ValueError, RecursionError) as exc:
            problem = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
            raise ConfigError(
                f"job {name!r}: its recorded inputs are invalid and are ignored ({problem}); "
                "its next run records new ones"
            ) from None
        return record

    def get_inputs(self, name: str) -> Optional[Dict[str, Any]]:
        """The inputs the job's last run recorded, or None before it has run once.

        Invalid stored inputs count as none recorded (the SDK in the container still checks).
        """
        try:
            record = self.get_jobdef(name)
        except ConfigError:
            return None
        return record["inputs"] if record else None

    def list_jobdefs(self) -> List[Dict[str, Any]]:
        """One entry per known job name: ``{"name", "recorded", "job_id", "recorded_at"}``, by name."""
        names = sorted(as_text(n) for n in self.conn.smembers(self.keys.jobdefs))
        entries = []
        for name in names:
            try:
                record = self.get_jobdef(name) or {}
            except ConfigError:
                record = {}
            entries.append(
                {
                    "name": name,
                    "recorded": bool(record),
                    "job_id": record.get("job_id"),
                    "recorded_at": record.get("recorded_at"),
                }
            )
        return entries
