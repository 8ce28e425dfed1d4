"""The SDK's only output channel: one-line warnings on stderr, prefixed so they can be grepped."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    """Print ``launchbay: <message>`` on stderr."""
    print(f"launchbay: {message}", file=sys.stderr, flush=True)
