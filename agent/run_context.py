"""What a job's thread needs from its agent, in one object: the supervisor builds it, ``JobRun`` reads it.

It holds the agent's connection and settings and the few callbacks into the daemon (resources
freed, a queue's config, a job definition's recorded inputs, a GPU's UUID), so that a job runner
never reaches into the supervisor and the two modules do not import each other.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

import redis
from launchbay.agent.runtime import Runtime
from launchbay.agent.settings import AgentSettings
from launchbay.queue_config.agents import LedgerEntry
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.job_checks import record_problems
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.lifecycle import Records
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore


@dataclass
class RunContext:
    conn: redis.Redis
    keys: Keys
    agent_id: str
    host: str
    runtime: Runtime
    settings: AgentSettings
    #: Frees a job's resources (its ledger entry, given as the job's thread knows it); called once per job,
    #: after its end is recorded.
    release: Callable[[str, Optional[LedgerEntry]], None]
    queue_config_for: Callable[[str], QueueConfig]
    #: ``(job definition name, inputs, job id)``: keeps the SDK's inputs.json with the job definition.
    record_inputs: Callable[[str, dict, str], None]
    gpu_uuid_for: Callable[[str], Optional[str]]
    #: The per-job log file cap; None = four times ``settings.log_cap_bytes``.
    log_file_cap_bytes: Optional[int] = None
    #: Told when a docker call of a job failed for the engine (timed out, no answer): the agent stops claiming.
    engine_trouble: Callable[[str], None] = lambda _problem: None
    records: Records = field(init=False)

    def __post_init__(self) -> None:
        self.records = Records(self.conn, self.keys)

    @property
    def state_dir(self) -> Path:
        return Path(self.settings.state_dir)

    def refusal(self, job_id: str, record: JobRecord, queue: QueueConfig) -> Optional[str]:
        """Why the claimed ``record`` must not run, checked as enqueue checks a launch (None: it may).

        The submitter may have rewritten her record since enqueue (``queue_config/job_checks.py``).
        """
        recorded = QueueStore(self.conn, self.keys).get_inputs(record.name)
        problems = record_problems(job_id, record, queue, recorded)
        if not problems:
            return None
        return "refused: " + "; ".join(problems)[:2000] + " (its record changed after enqueue checked it)"
