"""Pruning the agent's per-job log files (``<state_dir>/logs/<job_id>.log``).

Each job's full output is kept in a file beside the capped Redis stream (``logs.py``), up to four
times the stream's cap. The stream expires with the job's record, :data:`LOG_FILE_RETENTION_S`
after the job ends; the files go the same way, at the agent's start and then every
:data:`PRUNE_INTERVAL_S`, so a busy agent's disk does not fill with the logs of every job it ever ran.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Collection, List, Optional

from launchbay.queue_config.rq_bridge import RESULT_TTL_S

log = logging.getLogger(__name__)

#: A log file untouched for this long belongs to a job whose record and stream have expired.
LOG_FILE_RETENTION_S = RESULT_TTL_S
#: How often a running agent looks for expired log files.
PRUNE_INTERVAL_S = 3600.0


def prune_log_files(
    state_dir: Path, *, keep: Collection[str], retention_s: float = LOG_FILE_RETENTION_S, now: Optional[float] = None
) -> List[str]:
    """Delete the log files not written for ``retention_s`` of jobs not in ``keep``; returns their job ids."""
    now = time.time() if now is None else now
    removed = []
    try:
        files = sorted((Path(state_dir) / "logs").glob("*.log"))
    except OSError:
        return []
    for path in files:
        job_id = path.name[: -len(".log")]
        try:
            if job_id in keep or not path.is_file() or path.stat().st_mtime > now - retention_s:
                continue
            path.unlink()
        except OSError as exc:
            log.warning("cannot remove the old log file %s: %s", path, exc)
            continue
        removed.append(job_id)
    return removed
