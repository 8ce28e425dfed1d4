"""The reference docs are checked against the code: every model field and every CLI option is
documented, nothing documented as a field is missing from the code, and the defaults the tables
state are the code's defaults. A new field or option fails here until the docs say what it does.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, Iterator, List, Set, Tuple

import click
import pytest
import yaml
from conftest import REPO_ROOT
from launchbay.agent.settings import AgentSettings
from launchbay.cli.main import cli
from launchbay.queue_config.gang import GangOptions
from launchbay.queue_config.models import (
    DockerOptions,
    JobSpec,
    Mount,
    QueueConfig,
    QueueLimits,
    Resources,
    RetryPolicy,
)
from launchbay.queue_config.quotas import Quota, Quotas
from launchbay.queue_config.sharing import FairShareConfig, PreemptionConfig
from pydantic import BaseModel

DOCS = REPO_ROOT / "docs"
IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
CODE = re.compile(r"`([^`]+)`")

# Fields stored with the unit in their name are documented as people write them.
HUMAN_NAMES = {
    "memory_mib": "memory",
    "gpu_memory_mib": "gpu_memory",
    "shm_size_mib": "shm_size",
    "max_runtime_s": "max_runtime",
    "default_max_runtime_s": "default_max_runtime",
    "reserve_memory_mib": "reserve_memory",
    "log_cap_bytes": "log_cap",
    "grace_s": "grace",
    "min_runtime_before_preempt_s": "min_runtime_before_preempt",
    "half_life_s": "half_life",
    "metrics_cap_bytes": "metrics_cap",
    "assemble_timeout_s": "assemble_timeout",
}

# Model -> (doc, the header of the table that lists its fields). Each field is the first cell of a row.
FIELD_TABLES = {
    JobSpec: ("job-spec.md", "| field | type | default | meaning |"),
    Resources: ("job-spec.md", "| field | meaning |"),
    QueueConfig: ("queue-config.md", "| field | default | meaning |"),
    RetryPolicy: ("queue-config.md", "| field | default | meaning |"),
    PreemptionConfig: ("queue-config.md", "| field | default | meaning |"),
    FairShareConfig: ("queue-config.md", "| field | default | meaning |"),
    DockerOptions: ("queue-config.md", "| field | default | meaning |"),
    GangOptions: ("queue-config.md", "| field | default | meaning |"),
    AgentSettings: ("agent.md", "| setting | flag | default | what |"),
}
# Models documented inside their parent's row: (doc, table header, the parent field's row).
NESTED_IN_ROW = {
    QueueLimits: ("queue-config.md", "| field | default | meaning |", "limits"),
    Mount: ("queue-config.md", "| field | default | meaning |", "mounts"),
    Quotas: ("queue-config.md", "| field | default | meaning |", "quotas"),
    Quota: ("queue-config.md", "| field | default | meaning |", "quotas"),
}
# Where each command's options are documented.
COMMAND_DOCS = {"agent": "agent.md", "inventory": "agent.md", "agents": "agent.md", "ui": "ui.md", "sweep": "sweeps.md"}


def tables(doc: str, header: str) -> Iterator[List[List[str]]]:
    """Each markdown table in ``doc`` whose header row is ``header``, as rows of cells."""
    lines = (DOCS / doc).read_text().splitlines()
    for index, line in enumerate(lines):
        if line.strip() == header:
            rows = []
            for row in lines[index + 2 :]:
                if not row.startswith("|"):
                    break
                rows.append([cell.strip() for cell in re.split(r"(?<!\\)\|", row.strip())[1:-1]])
            yield rows


def names_in(cell: str) -> Set[str]:
    """The identifiers inside the code spans of a cell: "`retry.on_agent_lost`" -> {retry, on_agent_lost}."""
    return {name for span in CODE.findall(cell) for name in IDENT.findall(span)}


def first_cells(doc: str, header: str) -> Set[str]:
    found = set()
    for rows in tables(doc, header):
        for row in rows:
            found |= names_in(row[0])
    assert found, f"no table headed {header!r} in docs/{doc}"
    return found


def documented_name(field: str) -> Tuple[str, ...]:
    return (field, HUMAN_NAMES[field]) if field in HUMAN_NAMES else (field,)


@pytest.mark.parametrize("model", list(FIELD_TABLES), ids=lambda m: m.__name__)
def test_every_field_of_the_model_has_a_row_in_its_reference_table(model: type[BaseModel]):
    doc, header = FIELD_TABLES[model]
    names = first_cells(doc, header)
    missing = [f for f in model.model_fields if not any(n in names for n in documented_name(f))]
    assert not missing, f"docs/{doc}: no row for {model.__name__} field(s) {', '.join(missing)}"


@pytest.mark.parametrize("model", list(NESTED_IN_ROW), ids=lambda m: m.__name__)
def test_every_field_of_a_nested_model_is_named_in_its_parents_row(model: type[BaseModel]):
    doc, header, parent = NESTED_IN_ROW[model]
    rows = [row for rows in tables(doc, header) for row in rows if parent in names_in(row[0])]
    assert rows, f"docs/{doc}: no row for {parent}"
    mentioned = set().union(*(names_in(" ".join(row)) for row in rows))
    missing = [f for f in model.model_fields if not any(n in mentioned for n in documented_name(f))]
    assert not missing, f"docs/{doc}: the {parent} row does not name {model.__name__} field(s) {', '.join(missing)}"


def all_field_names() -> Set[str]:
    names = {"retry"}
    for model in (*FIELD_TABLES, *NESTED_IN_ROW):
        for field in model.model_fields:
            names.update(documented_name(field))
    return names


@pytest.mark.parametrize("doc_header", sorted(set(FIELD_TABLES.values())), ids=lambda d: d[0])
def test_no_reference_row_names_a_field_the_code_does_not_have(doc_header):
    doc, header = doc_header
    stale = sorted(first_cells(doc, header) - all_field_names())
    assert not stale, f"docs/{doc}: rows for fields the code does not have: {', '.join(stale)}"


def scalar(text: str):
    """A default as a table writes it ("`8`", "10", "`fail`") as a value, or None if it is prose."""
    text = text.strip().strip("`")
    if not re.fullmatch(r"-?[0-9.]+|true|false|[a-z_]+", text):
        return None
    return yaml.safe_load(text)


def test_the_defaults_in_the_agent_settings_table_are_the_codes():
    defaults = AgentSettings.model_fields
    wrong = []
    for rows in tables("agent.md", FIELD_TABLES[AgentSettings][1]):
        for name_cell, _flag, default_cell, _what in rows:
            stated = scalar(default_cell)
            if stated is None:
                continue
            for name in names_in(name_cell):
                field = next((f for f in defaults if name in documented_name(f)), None)
                actual = defaults[field].default if field else None
                if (
                    field
                    and isinstance(actual, (int, float, bool))
                    and not isinstance(stated, str)
                    and actual != stated
                ):
                    wrong.append(f"{name}: docs say {stated!r}, code says {actual!r}")
    assert not wrong, "docs/agent.md: " + "; ".join(wrong)


def test_the_defaults_in_the_queue_config_tables_are_the_codes():
    models: Dict[str, type[BaseModel]] = {"retry": RetryPolicy}
    wrong = []
    for rows in tables("queue-config.md", FIELD_TABLES[QueueConfig][1]):
        for name_cell, default_cell, _meaning in rows:
            stated = scalar(default_cell)
            names = CODE.findall(name_cell)
            if stated in (None, "none", "required") or len(names) != 1:
                continue
            parent, _, leaf = names[0].rpartition(".")
            model = models.get(parent, DockerOptions if leaf in DockerOptions.model_fields else QueueConfig)
            field = model.model_fields.get(leaf)
            if field is not None and field.default is not None and field.default != stated:
                wrong.append(f"{names[0]}: docs say {stated!r}, code says {field.default!r}")
    assert not wrong, "docs/queue-config.md: " + "; ".join(wrong)


def commands(group: click.Group, path: Tuple[str, ...] = ()) -> Iterator[Tuple[Tuple[str, ...], click.Command]]:
    for name, command in sorted(group.commands.items()):
        yield (*path, name), command
        if isinstance(command, click.Group):
            yield from commands(command, (*path, name))


ALL_COMMANDS = list(commands(cli))


def doc_for(path: Tuple[str, ...]) -> Path:
    doc = DOCS / COMMAND_DOCS.get(path[0], "cli.md")
    return doc if doc.exists() else DOCS / "cli.md"


@pytest.mark.parametrize(("path", "command"), ALL_COMMANDS, ids=[" ".join(path) for path, _ in ALL_COMMANDS])
def test_every_command_and_each_of_its_options_is_in_the_docs(path, command: click.Command):
    doc = doc_for(path)
    text = doc.read_text()
    assert re.search(rf"launchbay {' '.join(path)}(?![\w-])", text), (
        f"docs/{doc.name} never shows `launchbay {' '.join(path)}`"
    )
    missing = []
    for param in command.params:
        if not isinstance(param, click.Option):
            continue
        for opt in param.opts:
            if (
                opt.startswith("--")
                and opt not in ("--help", "--version")
                and not re.search(rf"{re.escape(opt)}(?![\w-])", text)
            ):
                missing.append(opt)
    assert not missing, f"docs/{doc.name}: `launchbay {' '.join(path)}` option(s) not documented: {', '.join(missing)}"


def test_the_cli_docs_list_every_reason_a_job_can_end_with():
    """docs/cli.md's "Reasons:" sentence names each value of ``Reason`` (three were missing once)."""
    from launchbay.queue_config.job import Reason

    text = (REPO_ROOT / "docs" / "cli.md").read_text()
    sentence = text[text.index("Reasons: ") : text.index(".", text.index("Reasons: "))]
    assert set(re.findall(r"`([a-z_]+)`", sentence)) == {reason.value for reason in Reason}
