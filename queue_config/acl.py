"""Roles in Redis: the ACL rules of an ``admin``, an ``agent`` and each ``submitter`` (Redis 7).

Redis is launchbay's only gate, so roles are Redis ACL users whose key patterns say what each
may write; everything else in the namespace is readable only (``%R~`` key permissions):

- **admin**: everything in the namespace and RQ's keys: queue configs (``queue apply``,
  ``pause``, ``delete``), any job, agents' keys.
- **agent**: job records, logs, job definitions, agents' keys (ledgers, heartbeats), the reaper
  lock, the idle lists, multi-node jobs' member tables, fair-share usage and quota counters, sweeps (the index and active set,
  their drivers' leases, studies and trials' jobs), and RQ's keys. Queue configs are read-only: the policy an agent enforces is only ever
  written by an admin.
- **submitter** ``NAME``: enqueue; cancel and requeue its own jobs; create, pause, resume and
  stop its own sweeps (ids ``NAME_...`` too; agents write their trials, studies, the sweep index
  and active set; a submitter only adds its new sweep's id to ``sweeps:new``, SADD and nothing else). Its job ids start with
  ``NAME_`` (the client does this for every named Redis user), and only those records and RQ jobs
  are writable (and the queues' idle lists, from which an enqueue wakes an agent); queue configs, other users' jobs, ledgers and agents' keys are read-only.

- **ui**: what every submitter may write, for every ``NAME_`` (the UI launches, cancels and
  pauses as the user its named token names, and checks first, with ``ACL DRYRUN``, that this
  user's own role would allow it: ``ui/identity.py``); queue configs, ledgers and agents' keys
  read-only. The UI is then the gate for its tokens, as Redis is for the CLI.

``launchbay acl`` prints these rules as ``ACL SETUSER`` lines for a namespace.
"""

from __future__ import annotations

import re
import uuid
from typing import List, Optional, Tuple

from launchbay.queue_config.keys import Keys

from launchbay.errors import ConfigError

ROLES = ("admin", "agent", "submitter", "ui")
#: What a job owner may be called: no ``_`` (it separates owner and id) and no glob characters.
OWNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9-]{0,31}\Z")
OWNER_SEPARATOR = "_"
JOB_ID_HEX_DIGITS = 16
#: Whose a job is when neither its id nor its record names anyone.
UNKNOWN_SUBMITTER = "unknown"

#: Every command launchbay and RQ send (the least set; docs/security.md explains each).
COMMANDS = (
    "+ping +info +time +multi +exec +evalsha +script|load "
    "+get +set +del +exists +expire +persist +pttl "
    "+hget +hset +hsetnx +hdel +hgetall +hmget +hstrlen +hkeys +hvals +hexists +hincrby +hincrbyfloat "
    "+lpush +rpush +lrange +lrem "
    "+sadd +srem +smembers +sismember "
    "+zadd +zrem +zrange +zrevrange "
    "+xadd +xrange +xrevrange +xread "
    "+publish +subscribe"
)


def new_job_id(owner: Optional[str]) -> str:
    """A fresh job id: 16 random hex digits, after ``OWNER_`` when the Redis user is named."""
    digits = uuid.uuid4().hex[:JOB_ID_HEX_DIGITS]
    return f"{owner}{OWNER_SEPARATOR}{digits}" if owner else digits


def job_owner(record_id: str) -> Optional[str]:
    """The submitter a job (or sweep) id's key pins: its ``NAME_`` prefix, None for an id without one.

    Only ``NAME``'s Redis role can write ``job:NAME_*`` (and admins and agents, who write what
    the client asks), so this, not the record's ``submitter`` field, says whose the job is.
    """
    owner, separator, _ = str(record_id).partition(OWNER_SEPARATOR)
    return owner if separator and OWNER_RE.match(owner) else None


def submitter_of(record_id: str, recorded: Optional[str]) -> str:
    """Whose job ``record_id`` is, for quotas, fair share and labels: the key's owner when it has one.

    A job without an owner prefix was written by a connection with no named Redis user (the
    default user or an admin, who may write anything): its ``submitter`` field is believed, as
    the client set it (``--user``, ``LAUNCHBAY_USER``, the OS user).
    """
    return job_owner(record_id) or recorded or UNKNOWN_SUBMITTER


def owner_of_connection(conn) -> Optional[str]:
    """The Redis user a connection logs in as, when it names one that can own jobs (None: default user)."""
    kwargs = getattr(getattr(conn, "connection_pool", None), "connection_kwargs", {}) or {}
    user = kwargs.get("username")
    if not user or user == "default" or not OWNER_RE.match(str(user)):
        return None
    return str(user)


def rules(role: str, keys: Keys, user: str = "") -> str:
    """The ACL rules (without user name and password) of ``role`` in ``keys``' namespace."""
    ns = keys.namespace
    selectors = ""
    if role == "admin":
        patterns = f"~{ns}:* ~rq:*"
    elif role == "agent":
        writable = (
            "job:*",
            "jobs:*",
            "jobdef:*",
            "jobdefs",
            "agents",
            "agent:*",
            "fleet",
            "reaper:*",
            "lease:*",
            "idle:*",
            "usage:*",
            "quota_usage:*",
            "sweeps",
            "sweeps:*",
            "sweep:*",
            "study:*",
            "gang:*",
        )
        patterns = f"%R~{ns}:* " + " ".join(f"~{ns}:{p}" for p in writable) + " ~rq:*"
    elif role in ("submitter", "ui"):
        if role == "submitter" and not OWNER_RE.match(user):
            raise ConfigError(f"submitter name {user!r} must be 1-32 letters, digits or '-' (no '_')")
        own = f"{user}{OWNER_SEPARATOR}*" if role == "submitter" else "*"
        patterns = (
            f"%R~{ns}:* %R~rq:* ~{ns}:job:{own} ~{ns}:jobs:* ~{ns}:jobdefs ~{ns}:idle:* "
            f"~{ns}:sweep:{own} "
            f"~rq:job:{own} ~rq:queue:* ~rq:queues ~rq:canceled:* ~rq:finished:* ~rq:failed:*"
        )
        # The one shared sweep structure a submitter writes, and only adds to: a sweep it made, for
        # a driver to find. (A selector: the key's other writes, SREM and DEL, stay the agents'.)
        selectors = f' "(~{ns}:sweeps:new +sadd)"'
    else:
        raise ConfigError(f"unknown role {role!r}; roles: {', '.join(ROLES)}")
    channels = f"resetchannels &{keys.events}* &{keys.replication_probe}"
    commands = f"{COMMANDS} +acl|dryrun" if role == "ui" else COMMANDS
    return f"resetkeys {patterns} {channels} -@all {commands} clearselectors{selectors}"


def setuser_lines(
    keys: Keys, submitters: List[str], *, admin: str, agent: str, ui: Optional[str] = None
) -> List[Tuple[str, str, str]]:
    """``(user, role, "ACL SETUSER ...")`` for the admin, the agent user, each submitter and the UI's user."""
    users = [(admin, "admin", ""), (agent, "agent", ""), *[(name, "submitter", name) for name in submitters]]
    users += [(ui, "ui", "")] if ui else []
    return [(user, role, f"ACL SETUSER {user} on >PASSWORD {rules(role, keys, owner)}") for user, role, owner in users]
