"""Helpers for the sharing tests (no tests here): puts tests/reliability (and through it tests/agent
and tests/queue) on ``sys.path`` so these tests reuse the agent-process fleet and CLI helpers."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Dict

_RELIABILITY = Path(__file__).resolve().parent.parent / "reliability"
if str(_RELIABILITY) not in sys.path:
    sys.path.append(str(_RELIABILITY))

from reliability_helpers import FAST_BEATS, AgentFleet, cli, wait_for  # noqa: E402

__all__ = ["FAST_BEATS", "AgentFleet", "cli", "status_json", "wait_for"]


def status_json(redis_url: str, job_id: str) -> Dict[str, Any]:
    """``launchbay status JOB --json``, as a script would read it."""
    result = cli(redis_url, "status", job_id, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)
