"""Keeping an unchanged W&B job's offline runs after its folder is removed, for ``wandb sync``.

A job that ran ``WANDB_MODE=offline`` (the agent's default when the queue gives no W&B key) leaves
its runs in ``<output>/wandb/offline-run-*``. The job's folder is deleted when the job ends, so
:func:`keep_offline_runs` first moves those run folders to ``<state_dir>/wandb-offline/<job id>/``,
where ``wandb sync`` uploads them; each time it keeps runs it first deletes those kept longer than
:data:`KEEP_S` (:func:`prune_offline_runs`), so the folder does not grow without end.

The folders are the job's, so untrusted: they are moved (a rename, nothing read), and whatever in
them is not a plain folder or regular file (a symlink to a host file that ``wandb sync`` would
upload, a FIFO, a device) is deleted, and modes are reset (no setuid file stays behind).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import stat
import time
from pathlib import Path
from typing import List

logger = logging.getLogger(__name__)

KEPT_FOLDER = "wandb-offline"
#: How long kept runs stay before the agent deletes them (sync them before that).
KEEP_S = 7 * 24 * 3600
_OFFLINE_RUN = re.compile(r"^offline-run-\d{8}_\d{6}-[A-Za-z0-9]+\Z")


def keep_offline_runs(output_dir: Path, state_dir: Path, job_id: str) -> List[Path]:
    """Move the job's W&B offline runs out of its output folder; returns where they now are."""
    runs_dir = Path(output_dir) / "wandb"
    try:
        if not stat.S_ISDIR(os.lstat(runs_dir).st_mode):
            return []
        names = sorted(name for name in os.listdir(runs_dir) if _OFFLINE_RUN.match(name))
    except OSError:
        return []
    if names:
        for old in prune_offline_runs(state_dir, time.time()):
            logger.info("removed the W&B offline runs of job %s, kept longer than %d days", old, KEEP_S // 86400)
    target = Path(state_dir) / KEPT_FOLDER / job_id
    kept: List[Path] = []
    for name in names:
        source = runs_dir / name
        try:
            if not stat.S_ISDIR(os.lstat(source).st_mode):
                continue
            Path(state_dir, KEPT_FOLDER).mkdir(mode=0o700, parents=True, exist_ok=True)
            target.mkdir(mode=0o700, exist_ok=True)
            os.rename(source, target / name)  # same file system: the state folder holds both
        except OSError as exc:
            logger.warning("job %s: cannot keep its W&B run %s: %s", job_id, name, exc)
            continue
        try:
            _only_plain_files(target / name)
        except OSError as exc:
            # Not cleaned is not kept: `wandb sync` must never meet what the job planted.
            shutil.rmtree(target / name, ignore_errors=True)
            logger.warning("job %s: its W&B run %s is not kept: %s", job_id, name, exc)
            continue
        kept.append(target / name)
    return kept


def _only_plain_files(top: Path) -> None:
    _plain_mode(str(top), os.lstat(top).st_mode)
    for folder, dirs, files in os.walk(top):
        for name in dirs + files:
            path = os.path.join(folder, name)
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode) or stat.S_ISREG(mode):
                _plain_mode(path, mode)
            else:
                os.unlink(path)  # a symlink (os.walk does not descend into it), a FIFO, a device


def _plain_mode(path: str, mode: int) -> None:
    # Changed only where needed: an agent that is not root cannot chmod what the container's root wrote.
    if mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH):
        os.chmod(path, stat.S_IMODE(mode) & ~(stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | stat.S_IWOTH))


def prune_offline_runs(state_dir: Path, now: float, keep_s: float = KEEP_S) -> List[str]:
    """Delete kept runs of jobs whose folder is older than ``keep_s``; returns those job ids."""
    removed: List[str] = []
    try:
        folders = sorted((Path(state_dir) / KEPT_FOLDER).iterdir())
    except OSError:
        return removed
    for folder in folders:
        try:
            info = os.lstat(folder)
            if stat.S_ISDIR(info.st_mode) and now - info.st_mtime > keep_s:
                shutil.rmtree(folder)
                removed.append(folder.name)
        except OSError as exc:
            logger.warning("cannot remove the kept W&B runs %s: %s", folder, exc)
    return removed
