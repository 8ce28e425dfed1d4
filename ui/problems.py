"""Put each problem of a refused launch next to the field that caused it.

The client's ``enqueue`` refuses a launch with one message that lists every problem, separated
by ``"; "``, each naming its key the way the CLI prints it: ``key 'trainer.seed' is excluded ...``,
``trainer.batch_size: 300 is greater than the maximum of 256``, ``config.yaml: epochs: expected
int, got float 2.5``, ``gpus: requested 16, queue 'gpu' allows at most 8``. Here the message is cut
back into problems and each is matched to the field whose key it names; a problem that names no
field (a docker option the queue forbids, a schema error about a whole object) goes on top.
"""

from __future__ import annotations

import re
from typing import Dict, List, Sequence, Tuple

from launchbay.sdk.paths import join_path

from .form import FILE_SECTION_PREFIX, Field

#: Where the client names the thing it checked before listing the problems.
_SOURCE_PREFIX = re.compile(r"^(?:invalid overrides for job '[^']*'|resource request|job spec): ")
#: Problems about the launch options, by the name the client uses -> the form field.
LAUNCH_OPTION_FIELDS = {
    "queue": "queue",
    "unknown queue": "queue",
    "image": "image",
    "cpus": "cpus",
    "memory": "memory",
    "memory_mib": "memory",
    "gpus": "gpus",
    "gpu_model": "gpu_model",
    "gpu_memory": "gpu_memory",
    "gpu_memory_mib": "gpu_memory",
    "max_runtime": "max_runtime",
    "max_runtime_s": "max_runtime",
    "priority": "priority",
}
#: How the client's problems about no particular form key begin.
FIXED_OPENINGS = ("key ", "config file ", "its last run ", "(top level): ", "docker option ")


def attribute(message: str, fields: Sequence[Field]) -> Tuple[Dict[str, List[str]], List[str]]:
    """``({field name: [problems]}, [problems for the top of the form])`` from an enqueue error.

    Beside its field a problem drops the ``key: `` it opens with: the field already says which key.
    """
    by_field: Dict[str, List[str]] = {}
    general: List[str] = []
    for problem in split_problems(message, fields):
        name = field_for(problem, fields)
        if name is None:
            general.append(problem)
        else:
            by_field.setdefault(name, []).append(_without_key(problem))
    return by_field, general


def _without_key(problem: str) -> str:
    """``trainer.batch_size: 300 is greater than ...`` -> ``300 is greater than ...``."""
    match = re.match(r"^(?:[^\s:;']+: )+", problem)
    if match is None or match.end() == len(problem):
        return problem
    return problem[match.end() :]


def split_problems(message: str, fields: Sequence[Field] = ()) -> List[str]:
    """The problems in one enqueue error, without the ``invalid overrides for job 'x': `` opening.

    A ``"; "`` starts a new problem only where what follows opens like one (a key of the form, a
    launch option, one of the client's fixed openings), so a value holding ``"; "`` stays whole.
    """
    body = _SOURCE_PREFIX.sub("", message.strip(), count=1)
    openings = problem_openings(fields)
    problems: List[str] = []
    for chunk in body.split("; "):
        if problems and not (chunk.startswith(openings) or _launch_option(chunk)):
            problems[-1] += "; " + chunk
        else:
            problems.append(chunk)
    return problems


def problem_openings(fields: Sequence[Field]) -> Tuple[str, ...]:
    """Every way a problem about the form's keys, their parents or their files may begin."""
    openings = set(FIXED_OPENINGS)
    for item in fields:
        openings.update(markers(item))
        file_prefix = f"{_file_of(item)}: " if _file_of(item) else ""
        if file_prefix:
            openings.add(file_prefix)
        for depth in range(1, len(item.key_path)):
            openings.add(f"{file_prefix}{join_path(item.key_path[:depth])}: ")
    return tuple(sorted(openings))


def field_for(problem: str, fields: Sequence[Field]) -> str | None:
    """The name of the field ``problem`` is about, or None when it names none of them."""
    best, best_length = None, -1
    for item in fields:
        for marker in markers(item):
            if problem.startswith(marker) and len(marker) > best_length:
                best, best_length = item.name, len(marker)
    return best if best is not None else _launch_option(problem)


def markers(item: Field) -> List[str]:
    """How the client's messages begin when they are about ``item``'s key."""
    if not item.key_path:
        return []
    key = item.key
    own = [f"key {key!r} ", f"{key}: "]
    path = _file_of(item)
    return [f"{path}: {marker}" for marker in own] if path else own


def _file_of(item: Field) -> str:
    """The config file a field belongs to ("" for the run config)."""
    return item.section[len(FILE_SECTION_PREFIX) :] if item.section.startswith(FILE_SECTION_PREFIX) else ""


def _launch_option(problem: str) -> str | None:
    for name in sorted(LAUNCH_OPTION_FIELDS, key=len, reverse=True):
        if re.match(rf"^{re.escape(name)}(?:[ :']|$)", problem):
            return LAUNCH_OPTION_FIELDS[name]
    return None
