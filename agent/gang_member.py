"""One member of a multi-node job on this agent: start barrier, rendezvous env, member states, the job's end.

``JobRun`` runs a member like any job, with a :class:`GangMember` at four points:

- after its image is ready, :meth:`GangMember.wait_for_all` marks it ``ready`` (rank 0 with a port it
  found free on this host: ``MASTER_PORT``) and waits until every member of its round is ready, so
  no container starts while another host still pulls; past the round's deadline, or when the job
  moved on, it gives up;
- :meth:`GangMember.apply` adds the rendezvous env (``MASTER_ADDR``, ``MASTER_PORT``, ``NNODES``,
  ``NODE_RANK``, ``RANK``, ``WORLD_SIZE``, ``LAUNCHBAY_NODE_ADDRS``) and the queue's gang network to
  the container, named per rank (two members may share one Docker engine);
- :meth:`GangMember.running` records the member's container;
- :func:`record_member_end` records the member's end, and the job's: ``finished`` once every member
  finished, else the first member to fail (or be stopped, lost, preempted) ends the job for all,
  naming its rank, and a ``cancel`` event stops the others (SIGTERM, grace, SIGKILL).
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import replace
from typing import Any, Callable, Dict, List, Optional

from launchbay.agent.run_context import RunContext
from launchbay.queue_config import events, gang, lifecycle
from launchbay.queue_config.gang import Member
from launchbay.queue_config.job import ACTIVE_STATES, JobRecord, Outcome, Reason, State
from launchbay.queue_config.models import QueueConfig

#: How often the start barrier looks at the other members.
BARRIER_POLL_S = 0.1
#: The env that lists every member's address, in rank order, comma-separated.
ENV_NODE_ADDRS = "LAUNCHBAY_NODE_ADDRS"


def free_port() -> int:
    """A TCP port free on this host now (the kernel's choice), for rank 0's rendezvous."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("", 0))
        return int(probe.getsockname()[1])


def rendezvous_env(members: List[Member], rank: int, port: int) -> Dict[str, str]:
    """What every rendezvous (torchrun, DeepSpeed, jax.distributed) needs, for one process per node."""
    nodes = str(len(members))
    return {
        "MASTER_ADDR": members[0].addr,
        "MASTER_PORT": str(port),
        "NNODES": nodes,
        "NODE_RANK": str(rank),
        "RANK": str(rank),
        "WORLD_SIZE": nodes,
        ENV_NODE_ADDRS: ",".join(m.addr for m in members),
    }


class GangMember:
    """Rank ``rank`` of round ``round_`` of a multi-node job, run by this agent."""

    def __init__(self, ctx: RunContext, job_id: str, rank: int, round_: int) -> None:
        self.ctx, self.job_id, self.rank, self.round = ctx, job_id, rank, round_
        self.script = lifecycle.GangScript(
            ctx.conn, ctx.keys, agent_id=ctx.agent_id, host=ctx.host, addr=ctx.settings.advertise_addr
        )
        self.env: Dict[str, str] = {}

    def wait_for_all(self, should_stop: Callable[[], bool], wake: threading.Event) -> Optional[Outcome]:
        """Mark this member ready and wait for the others: None when all are, else how this member ends.

        Members not all ready in time put the job back in its queue (not the job's fault); a job that
        moved on (another member failed, a cancel) ends this member without a say in the job's end."""
        port = free_port() if self.rank == 0 else None
        if not self.script.member(self.job_id, self.round, self.rank, gang.READY, port=port):
            over = "its assembly round is over (a newer one replaced it)"
            return Outcome(State.CANCELED, Reason.GANG_NOT_READY, message=over)
        while True:
            table = gang.read(self.ctx.conn, self.ctx.keys, self.job_id)
            state = self.ctx.records.state(self.job_id)
            if table.round != self.round or state not in ACTIVE_STATES:
                moved = f"the job moved on ({state.value if state else 'gone'}) before every member was ready"
                return Outcome(State.CANCELED, Reason.GANG_NOT_READY, message=moved)
            members = table.current()
            ready = [m for m in members if m.state in (gang.READY, gang.RUNNING)]
            if len(ready) == len(members) and table.port:
                self.env = rendezvous_env(members, self.rank, table.port)
                return None
            if time.time() > table.deadline:
                waiting = ", ".join(f"rank {m.rank} on {m.agent}" for m in members if m not in ready)
                late = f"not every member was ready within the queue's gang assemble_timeout (waiting for {waiting})"
                return Outcome(State.QUEUED, Reason.GANG_NOT_READY, message=late)
            if should_stop():
                return Outcome(
                    State.CANCELED, Reason.CANCELED_BY_USER, message="canceled before every member was ready"
                )
            wake.wait(BARRIER_POLL_S)

    def apply(self, spec: Dict[str, Any], queue: QueueConfig) -> None:
        """The rendezvous env, the gang's network and a per-rank container name, into the create kwargs."""
        spec["environment"].update(self.env)
        spec["name"] = f"{spec['name']}-rank{self.rank}"
        if queue.gang.network:
            spec["network_mode"] = queue.gang.network

    def running(self, container_id: Optional[str]) -> bool:
        """Record this member's container; False when its round is over."""
        return bool(self.script.member(self.job_id, self.round, self.rank, gang.RUNNING, container=container_id))

    def ended(self, state: str, exit_code: Optional[int]) -> List[Member]:
        """Record this member's end; the round's members as they now are."""
        raw = self.script.member(self.job_id, self.round, self.rank, state, exit_code=exit_code)
        return [m for m in (Member.from_json(r) for r in raw) if m is not None]


def member_state(outcome: Outcome, stop_reason: Optional[str]) -> str:
    if outcome.state == State.FINISHED:
        return gang.FINISHED
    if outcome.state == State.CANCELED or stop_reason in ("cancel", "lost"):
        return gang.STOPPED
    return gang.FAILED


def record_member_end(
    ctx: RunContext,
    member: GangMember,
    record: JobRecord,
    outcome: Outcome,
    stop_reason: Optional[str],
    end: Callable[[Outcome], bool],
) -> bool:
    """Record ``member``'s end and, when it decides it, the job's (through ``end``); True when the job's end
    was recorded here. The first member that does not finish ends the job for every member."""
    members = member.ended(member_state(outcome, stop_reason), outcome.exit_code)
    if outcome.state == State.FINISHED:
        nodes = len(members)
        if not members or any(m.state != gang.FINISHED for m in members):
            return False
        return end(replace(outcome, message=f"all {nodes} members finished"))
    ranked = replace(outcome, message=f"rank {member.rank} ({ctx.agent_id}): {outcome.message}")
    if outcome.reason == Reason.PREEMPTED:
        won = lifecycle.put_back_preempted(ctx.records, member.job_id, record, ranked.message)
    else:
        won = end(ranked)
    if won:
        events.publish(ctx.conn, ctx.keys, events.Cancel(member.job_id))  # the other members stop
    return won
