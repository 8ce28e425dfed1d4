"""A sweep in Redis: its hash, its lease, and its trials' jobs. The only writer of ``{ns}:sweep:{id}``.

A sweep is one hash (``config``: SWEEP.yaml as JSON; ``template``: the job fields every trial
starts from, validated once at create; ``state``; ``submitter``; timestamps), an entry in the
``{ns}:sweeps`` index, and, while a driver should advance it, an entry in ``{ns}:sweeps:active``.
Its Optuna study is the journal of ``sweep_study.py``.

Who may write what (docs/security.md, "Sweeps"): the hash is its owner's (``sweep:NAME_*`` in the
submitter's ACL role), so nothing in it is authority: the sweep's id is the key it lives under,
its submitter the owner that id names, and every field is read bounded in size and checked before
use. The index, the active set and the study are the agents'; ``sweep create`` only adds its id to
``{ns}:sweeps:new`` (a submitter may SADD there and nothing else), where a driver finds it and
moves it to the index and the active set, so no user can remove, hide or stall another's sweep.

States: ``running`` (new trials are made), ``paused`` (none are; running ones go on and are
counted), ``stopping`` (none are; the sweep ends ``stopped`` once its trials ended),
``finished`` (every trial it was to make ended) and ``stopped``.

A trial's job id is ``{sweep id}-{trial number}``: a driver that dies after writing the job and
before noting it finds the job by that id and does not write a second one.
"""

from __future__ import annotations

import json
import re
import time
from enum import Enum
from typing import Any, Dict, Iterable, List, Mapping, Optional

import redis
from launchbay.queue_config import leases
from launchbay.queue_config.acl import OWNER_RE, OWNER_SEPARATOR
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.submit import META_FIELDS, write_job
from launchbay.sdk.overlay import merge_overrides
from launchbay.sweeps.spec import Param

from launchbay.errors import NotFoundError, UserError, ValidationError
from launchbay.text import as_text


class SweepState(str, Enum):
    RUNNING = "running"
    PAUSED = "paused"
    STOPPING = "stopping"
    FINISHED = "finished"
    STOPPED = "stopped"

    def __str__(self) -> str:
        return self.value


#: Announced sweeps one reader lists before the index (the set is drained by every driver pass).
MAX_PENDING = 1000
_BATCH = 500
OPEN_STATES = (SweepState.RUNNING, SweepState.PAUSED, SweepState.STOPPING)
ENDED_STATES = (SweepState.FINISHED, SweepState.STOPPED)
_JSON_FIELDS = frozenset({"config", "template"})
#: The fields a sweep hash is read for (any other one its owner adds is never read), and the most
#: bytes each may hold: what one user writes in her own hash bounds what every reader loads.
FIELD_LIMITS = {"config": 256 << 10, "template": 17 << 20, "name": 1024, "message": 4096, "queue": 256,
                "state": 32, "submitter": 256, "created_at": 64, "updated_at": 64, "ended_at": 64}  # fmt: skip
#: What a sweep id may look like (``new_job_id`` makes ``OWNER_<hex>``, or bare hex as the default
#: user): no ``:`` (``x:lease`` is no sweep) and no glob characters, whatever anyone adds to a set.
SWEEP_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,95}\Z")

# KEYS[1] = sweep hash, KEYS[2] = the active set, given only to end a sweep (an agent's write: a
# submitter's pause, resume and stop touch her own hash alone). ARGV[1] = new state, ARGV[2] = now,
# ARGV[3] = allowed states (comma-separated), ARGV[4] = sweep id, then field/value pairs. Returns the
# state before (the change was made when it is one of the allowed), or false when the sweep is missing.
_SET_STATE_LUA = """
local current = redis.call('HGET', KEYS[1], 'state')
if not current then return false end
for s in string.gmatch(ARGV[3], '[^,]+') do
  if s == current then
    redis.call('HSET', KEYS[1], 'state', ARGV[1], 'updated_at', ARGV[2])
    for i = 5, #ARGV, 2 do redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1]) end
    if ARGV[1] == 'finished' or ARGV[1] == 'stopped' then
      redis.call('HSET', KEYS[1], 'ended_at', ARGV[2])
      if KEYS[2] then redis.call('SREM', KEYS[2], ARGV[4]) end
    end
    return current
  end
end
return current
"""

# KEYS[1] = lease. ARGV[1] = holder, ARGV[2] = TTL in ms. 1 when ARGV[1] holds it now (taken or renewed).
_LEASE_LUA = """
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])  -- taken, or renewed (SET: the roles allow no PEXPIRE)
return 1
"""


def owner_of_sweep(sweep_id: str) -> Optional[str]:
    """The user a sweep id names (``alice_...``: the ACL role lets only alice write that key), else None."""
    owner, sep, _rest = sweep_id.partition(OWNER_SEPARATOR)
    return owner if sep and OWNER_RE.match(owner) else None


def _field(sweep_id: str, name: str, text: str) -> Any:
    """One field as readers use it; ValidationError (one line) for what its owner wrote that is not one."""
    if name in _JSON_FIELDS:
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            raise ValidationError(f"sweep {sweep_id}: its {name} is not JSON") from None
        if not isinstance(value, dict):
            raise ValidationError(f"sweep {sweep_id}: its {name} is not a mapping")
        return value
    if name in ("created_at", "updated_at", "ended_at"):
        try:
            return float(text)
        except ValueError:
            return None
    return text


def trial_job_id(sweep_id: str, number: int) -> str:
    return f"{sweep_id}-{number}"


class SweepStore:
    """Reads and writes sweeps for one connection and namespace."""

    def __init__(self, conn: redis.Redis, keys: Optional[Keys] = None) -> None:
        self.conn = conn
        self.keys = keys or Keys.from_env()
        self._set_state = conn.register_script(_SET_STATE_LUA)
        self._lease = conn.register_script(_LEASE_LUA)
        self._take = conn.register_script(leases.TAKE_LUA)
        self._release = conn.register_script(leases.RELEASE_LUA)

    def create(self, sweep_id: str, *, queue: str, config: Mapping[str, Any], template: Mapping[str, Any],
               submitter: str, name: str) -> None:  # fmt: skip
        """Write a new sweep (``running``) and announce it to the drivers, in one MULTI."""
        now = repr(time.time())
        fields = {"id": sweep_id, "name": name, "queue": queue, "state": SweepState.RUNNING.value,
                  "submitter": submitter, "created_at": now, "updated_at": now,
                  "config": json.dumps(config, default=str), "template": json.dumps(template)}  # fmt: skip
        with self.conn.pipeline() as pipe:
            pipe.hset(self.keys.sweep(sweep_id), mapping=fields)
            pipe.sadd(self.keys.sweeps_new, sweep_id)
            pipe.execute()

    def get(self, sweep_id: str) -> Optional[Dict[str, Any]]:
        """The sweep, None when there is none; ValidationError when its owner wrote what cannot be read.

        ``id`` is the key's and ``submitter`` the owner its id names: never the fields of the hash.
        """
        if not SWEEP_ID_RE.match(sweep_id):
            return None
        key, names = self.keys.sweep(sweep_id), list(FIELD_LIMITS)
        with self.conn.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.hstrlen(key, name)
            sizes = pipe.execute()
        if not any(sizes):
            return None
        over = [
            f"{n} ({size:,} bytes; at most {FIELD_LIMITS[n]:,})"
            for n, size in zip(names, sizes)
            if size > FIELD_LIMITS[n]
        ]
        if over:
            raise ValidationError(f"sweep {sweep_id}: field {', '.join(over)}")
        out: Dict[str, Any] = {}
        for name, value in zip(names, self.conn.hmget(key, names)):
            if value is not None:
                out[name] = _field(sweep_id, name, as_text(value))
        out["id"] = sweep_id
        out["submitter"] = owner_of_sweep(sweep_id) or out.get("submitter")
        return out

    def queue_of(self, sweep_id: str) -> Optional[str]:
        """The sweep's queue (None when it has none, or one too long to be a queue name: never loaded)."""
        key = self.keys.sweep(sweep_id)
        if self.conn.hstrlen(key, "queue") > FIELD_LIMITS["queue"]:
            return None
        value = self.conn.hget(key, "queue")
        return as_text(value) if value else None

    def require(self, sweep_id: str) -> Dict[str, Any]:
        sweep = self.get(sweep_id)
        if sweep is None:
            raise NotFoundError(f"unknown sweep {sweep_id!r} (`launchbay sweep list` shows them)")
        return sweep

    def ids(self, limit: int = 200) -> List[str]:
        """Sweep ids, newest first: those no driver has seen yet (made just now), then the index."""
        indexed = [as_text(i) for i in self.conn.zrevrange(self.keys.sweeps, 0, limit - 1)]
        return (self._pending(set(indexed)) + indexed)[:limit]

    def _pending(self, indexed: set) -> List[str]:
        """The ids in ``sweeps:new`` that name a sweep not in the index (anyone may add junk there: skipped)."""
        ids = [i for i in (as_text(m) for m in self.conn.smembers(self.keys.sweeps_new)) if SWEEP_ID_RE.match(i)]
        ids = [i for i in ids if i not in indexed][:MAX_PENDING]
        with self.conn.pipeline(transaction=False) as pipe:
            for sweep_id in ids:
                pipe.zscore(self.keys.sweeps, sweep_id)
                pipe.exists(self.keys.sweep(sweep_id))
            replies = pipe.execute() if ids else []
        return sorted((i for i, s, e in zip(ids, replies[::2], replies[1::2]) if s is None and e), reverse=True)

    def adopt_new(self) -> List[str]:
        """(Agents.) Move each sweep announced in ``sweeps:new`` to the index, and to the active set while
        open; drop every announcement, junk included (in batches: a flood costs round trips, not one each).
        Returns the ids adopted."""
        members = [as_text(m) for m in self.conn.smembers(self.keys.sweeps_new)]
        adopted: List[str] = []
        open_states = {s.value for s in OPEN_STATES}
        for at in range(0, len(members), _BATCH):
            batch = members[at : at + _BATCH]
            ids = [i for i in batch if SWEEP_ID_RE.match(i)]
            with self.conn.pipeline(transaction=False) as pipe:
                for sweep_id in ids:
                    pipe.hget(self.keys.sweep(sweep_id), "state")
                states = pipe.execute() if ids else []
            with self.conn.pipeline() as pipe:
                for sweep_id, state in zip(ids, states):
                    if state is None:
                        continue
                    pipe.zadd(self.keys.sweeps, {sweep_id: time.time()}, nx=True)  # re-announcing moves nothing
                    if as_text(state) in open_states:
                        pipe.sadd(self.keys.sweeps_active, sweep_id)
                    adopted.append(sweep_id)
                pipe.srem(self.keys.sweeps_new, *batch)
                pipe.execute()
        return adopted

    def active_ids(self) -> List[str]:
        return sorted(
            i for i in (as_text(m) for m in self.conn.smembers(self.keys.sweeps_active)) if SWEEP_ID_RE.match(i)
        )

    def set_state(self, sweep_id: str, to: SweepState, allowed_from: Iterable[SweepState], **fields: Any) -> bool:
        """Move the sweep to ``to`` when it is in one of ``allowed_from``; False when it was not."""
        allowed = [SweepState(s).value for s in allowed_from]
        args: List[Any] = [SweepState(to).value, repr(time.time()), ",".join(allowed), sweep_id]
        for name, value in fields.items():
            args += [name, str(value)]
        keys = [self.keys.sweep(sweep_id)] + ([self.keys.sweeps_active] if to in ENDED_STATES else [])
        before = self._set_state(keys=keys, args=args)
        if before is None:
            raise NotFoundError(f"unknown sweep {sweep_id!r}")
        return as_text(before) in allowed

    def command(self, sweep_id: str, to: SweepState) -> str:
        """``pause``, ``resume`` or ``stop`` as a person asks: a UserError when the state does not allow it."""
        allowed = {
            SweepState.PAUSED: (SweepState.RUNNING, SweepState.PAUSED),
            SweepState.RUNNING: (SweepState.PAUSED, SweepState.RUNNING),
            SweepState.STOPPING: OPEN_STATES,
        }[to]
        if not self.set_state(sweep_id, to, allowed):
            state = self.require(sweep_id)["state"]
            raise UserError(f"sweep {sweep_id} is {state}; it cannot be made {to}")
        return to.value

    def note(self, sweep_id: str, message: str) -> None:
        """The driver's last word on the sweep (a problem, or why it waits); "" clears it."""
        self.conn.hset(self.keys.sweep(sweep_id), "message", message)

    # -- the driver's lease ---------------------------------------------------------------------

    def hold_lease(self, sweep_id: str, holder: str, ttl_s: float) -> bool:
        """Take or renew the sweep's lease for ``holder``; False while another holds it."""
        return bool(self._lease(keys=[self.keys.sweep_lease(sweep_id)], args=[holder, int(ttl_s * 1000)]))

    def take_lease(self, sweep_id: str, holder: str, ttl_s: float, *, may_hold: bool = True) -> float:
        """Try the sweep's lease for ``holder`` (``leases.try_lease``): 0.0 when ``holder`` holds it now, else
        the seconds until it could be free. ``may_hold`` False: one ``SET NX``, for an agent that did not hold it."""
        key, ttl_ms = self.keys.sweep_lease(sweep_id), int(ttl_s * 1000)
        return leases.try_lease(self._take, self.conn, key, holder, ttl_ms, may_hold=may_hold) / 1000.0

    def release_lease(self, sweep_id: str, holder: str) -> None:
        self._release(keys=[self.keys.sweep_lease(sweep_id)], args=[holder])

    def lease_holder(self, sweep_id: str) -> Optional[str]:
        value = self.conn.get(self.keys.sweep_lease(sweep_id))
        return as_text(value) if value else None


def check_template(template: Any) -> None:
    """ValidationError unless ``template`` has the shape of job fields a trial can start from.

    Its content is the job's to check: the agent that claims a trial validates it as any job.
    """
    if not isinstance(template, Mapping):
        raise ValidationError("the sweep's job template is missing or not a mapping")
    # The raw fields, checked before anything reads them as a job's (``JobRecord`` would read a
    # missing or misshapen one as empty).
    overrides = template.get("run_config"), template.get("file_overrides")  # dict read: a template checked raw
    if not all(isinstance(tree, dict) for tree in overrides):
        raise ValidationError("the sweep's job template needs run_config and file_overrides mappings")
    missing = [key for key in ("name", "spec", *META_FIELDS) if key not in template]  # dict read: checked raw
    if missing or not isinstance(template["spec"], dict):  # dict read: a template checked raw
        raise ValidationError(f"the sweep's job template lacks {', '.join(missing) or 'a spec mapping'}")
    if not all(isinstance(tree, dict) for tree in overrides[1].values()):
        raise ValidationError("the sweep's job template has file_overrides that are not mappings")


def trial_fields(template: Mapping[str, Any], params: Iterable[Param], values: Mapping[str, Any]) -> Dict[str, Any]:
    """The job fields of one trial: the sweep's template with each parameter's value set at its key."""
    check_template(template)
    fields = json.loads(json.dumps(template))  # a deep copy of plain JSON
    job = JobRecord.from_fields("", fields)  # its run config and file overrides: mappings, as checked
    run_config, file_overrides = job.run_config, job.file_overrides
    fields.update(run_config=run_config, file_overrides=file_overrides)
    for param in params:
        if param.name not in values:
            continue
        tree = run_config if param.file is None else file_overrides.setdefault(param.file, {})
        problems = merge_overrides(tree, {param.parts: values[param.name]})
        if problems:
            raise ValidationError(f"parameter {param.name!r}: " + "; ".join(problems))
    return fields


def enqueue_trial(conn: redis.Redis, keys: Keys, sweep: Mapping[str, Any], number: int, fields: Dict[str, Any]) -> str:
    """Write trial ``number``'s job (unless a job of its id exists); returns the job id."""
    job_id = trial_job_id(sweep["id"], number)
    if conn.exists(keys.job(job_id)):
        return job_id
    # Who and where come from the sweep as read (its key and owner), never from the template its owner wrote.
    submitter = sweep.get("submitter") or JobRecord.from_fields(job_id, fields).submitter
    who = {"sweep": sweep["id"], "trial": number, "submitter": submitter, "queue": sweep["queue"]}
    write_job(conn, keys, job_id, {**fields, **who})
    return job_id
