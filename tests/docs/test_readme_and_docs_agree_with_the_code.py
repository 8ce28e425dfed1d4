"""What a newcomer reads first is true: the README's two commands exist, every `launchbay ...`
line in the README and docs names real commands and options, every relative link resolves, the
README's YAML examples load, and docs/index.md lists every document."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path
from typing import Iterator, List, Tuple

import click
import pytest
import yaml
from conftest import REPO_ROOT
from launchbay.cli.main import cli
from launchbay.queue_config.models import JobSpec, QueueConfig, parse_model

README = REPO_ROOT / "README.md"
DOCS = sorted((REPO_ROOT / "docs").glob("*.md"))
PAGES = [README, *DOCS]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.M | re.S)
SECTIONS = ("demo", "sdk", "queue", "agent")


def fenced(path: Path) -> Iterator[Tuple[str, str]]:
    for match in FENCE.finditer(path.read_text()):
        yield match.group(1), match.group(2)


def test_the_readme_says_what_launchbay_is_then_gives_exactly_two_commands():
    text = README.read_text()
    intro = text.split("## ", 1)[0]
    assert "Redis" in intro and "Docker" in intro and "override" in intro
    first_block = next(body for _lang, body in fenced(README))
    commands = [line.split("#", 1)[0].strip() for line in first_block.splitlines() if line.strip()]
    assert commands == ["scripts/demo", "scripts/test"]
    for script in commands:
        assert os.access(REPO_ROOT / script, os.X_OK), f"{script} is not executable"


@pytest.mark.parametrize("section", SECTIONS)
def test_each_readme_section_is_closed_and_has_content(section):
    text = README.read_text()
    start, end = f"<!-- section:{section} -->", f"<!-- /section:{section} -->"
    assert text.count(start) == 1 and text.count(end) == 1
    body = text.split(start, 1)[1].split(end, 1)[0]
    assert body.strip().startswith("## "), f"section {section} is empty or has no heading"


def shell_lines(path: Path) -> Iterator[str]:
    """Command lines of the page's bash blocks and the `$ ` lines of its console blocks, continuations joined."""
    for lang, body in fenced(path):
        if lang not in ("bash", "console", "sh", ""):
            continue
        text = body.replace("\\\n", " ")
        for line in text.splitlines():
            if lang == "console":
                if not line.startswith("$ "):
                    continue
                line = line[2:]
            yield line


def launchbay_invocations(line: str) -> Iterator[List[str]]:
    for match in re.finditer(r"(?:^\s*|\$\(|&&\s*|\|\s*|;\s*)launchbay ", line):
        rest = line[match.end() :]
        try:
            tokens = shlex.split(rest, comments=True)
        except ValueError:
            continue
        args = []
        for token in tokens:
            if token in ("&&", "|", ";", "||") or token.endswith(")"):
                if token.endswith(")") and token not in ("&&", "|", ";", "||"):
                    args.append(token.rstrip(")"))
                break
            args.append(token)
        yield args


def invocations() -> List[Tuple[str, List[str]]]:
    found = []
    for page in PAGES:
        for line in shell_lines(page):
            for args in launchbay_invocations(line):
                found.append((f"{page.relative_to(REPO_ROOT)}: launchbay {' '.join(args)}", args))
    return found


INVOCATIONS = invocations()


def test_the_docs_show_launchbay_commands_at_all():
    assert len(INVOCATIONS) > 50


@pytest.mark.parametrize(("where", "args"), INVOCATIONS, ids=[where for where, _ in INVOCATIONS])
def test_every_launchbay_command_shown_in_the_readme_and_docs_exists_with_those_options(where, args):
    command: click.Command = cli
    rest = list(args)
    while isinstance(command, click.Group) and rest and rest[0] in command.commands:
        command = command.commands[rest.pop(0)]
    assert not isinstance(command, click.Group) or not rest or rest[0].startswith("-"), (
        f"{where}: no command {rest[0]!r}"
    )
    known = {opt for param in command.params for opt in (*param.opts, *getattr(param, "secondary_opts", []))}
    known |= {"--help", "-h"}
    for token in rest:
        if token == "--":
            break
        name = token.strip("[]").split("=", 1)[0].rstrip(".")
        if re.fullmatch(r"--?[A-Za-z][\w-]*", name):
            assert name in known, f"{where}: `{name}` is not an option of that command"


def slug(heading: str) -> str:
    """GitHub's anchor for a heading."""
    text = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return text.replace(" ", "-")


def anchors(path: Path) -> set:
    return {slug(h) for h in re.findall(r"^#+ (.+)$", path.read_text(), re.M)}


def links() -> List[Tuple[Path, str]]:
    found = []
    for page in PAGES:
        text = FENCE.sub("", page.read_text())
        for target in re.findall(r"\]\(([^)\s]+)\)", text):
            if not re.match(r"[a-z]+:", target):
                found.append((page, target))
    return found


@pytest.mark.parametrize(("page", "target"), links(), ids=[f"{p.name}->{t}" for p, t in links()])
def test_every_relative_link_in_the_readme_and_docs_resolves(page: Path, target: str):
    path_part, _, anchor = target.partition("#")
    resolved = (page.parent / path_part).resolve() if path_part else page
    assert resolved.exists(), f"{page.name}: link to {target} points at nothing"
    if anchor and resolved.suffix == ".md":
        assert anchor in anchors(resolved), f"{page.name}: no heading #{anchor} in {resolved.name}"


def test_the_readme_yaml_examples_load_as_the_models_they_show():
    loaded = []
    for lang, body in fenced(README):
        if lang != "yaml":
            continue
        data = yaml.safe_load(body)
        model = JobSpec if "image" in data else QueueConfig
        loaded.append(parse_model(model, data, source="README.md"))
    assert {type(m) for m in loaded} == {JobSpec, QueueConfig}


def test_the_docs_index_links_every_document():
    index = (REPO_ROOT / "docs" / "index.md").read_text()
    missing = [doc.name for doc in DOCS if doc.name != "index.md" and f"]({doc.name})" not in index]
    assert not missing, f"docs/index.md does not list: {', '.join(missing)}"
