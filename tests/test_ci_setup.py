"""What a fresh machine needs for the suite, and what the suite leaves behind: the Debian package list
(scripts/test-packages.txt) names every outside command the tests run, a missing one stops the run at
its start with the package's name, and after the run the work tree is as the run found it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT, STATUS_AT_START, git_status, listed_test_packages, require

TESTS = REPO_ROOT / "tests"
#: How the tests name an outside command: shutil.which("X"), or X first in an argv list.
WHICH_RE = re.compile(r'shutil\.which\("([a-z0-9.-]+)"\)')
ARGV_RE = re.compile(r'(?:subprocess\.(?:run|Popen|check_output)|Popen)\(\s*\[\s*"([a-z0-9.-]+)"')
#: Commands the tests run that no listed package provides, and why that is fine.
NOT_FROM_THE_LIST = {
    "docker": "the client, installed with docker.io by scripts/test's lb_dockerd when no engine answers",
    "dockerd": "installed with docker.io by lb_dockerd, as above",
    "bash": "Debian's essential set",
    "rm": "Debian's essential set",
    "mount": "Debian's essential set (util-linux)",
    "umount": "Debian's essential set (util-linux)",
    "unshare": "Debian's essential set (util-linux)",
    "python3.9": "an extra interpreter used when present; the SDK's Python 3.9 floor is also checked by vermin",
}


def commands_the_tests_run() -> set:
    found = set()
    for path in TESTS.rglob("*.py"):
        text = path.read_text()
        found |= set(WHICH_RE.findall(text)) | set(ARGV_RE.findall(text))
    return found


def test_every_outside_command_the_tests_run_comes_from_a_listed_package():
    listed = {command for _, command in listed_test_packages()}
    unlisted = commands_the_tests_run() - listed - set(NOT_FROM_THE_LIST)
    assert not unlisted, f"add the Debian package of each to scripts/test-packages.txt: {sorted(unlisted)}"
    assert {"redis-server", "redis-sentinel", "promtool", "chromium", "openssl"} <= listed


def test_scripts_test_installs_the_list_and_checks_it_before_anything_slow():
    script = (REPO_ROOT / "scripts" / "test").read_text()
    install, check = script.index("lb_apt $(lb_test_packages)"), script.index("lb_check_test_packages")
    assert install < check < script.index("lb_venv") < script.index('lb_step "pytest"')


def test_the_shell_check_names_the_missing_package_and_exits_2(tmp_path):
    listing = tmp_path / "packages.txt"
    listing.write_text("# package command needed-by\nredis-server redis-server x\nlb-nothing lb-no-such-command y\n")
    done = subprocess.run(
        ["bash", "-c", f'source scripts/lib.sh && LB_TEST_PACKAGES_FILE="{listing}" && lb_check_test_packages'],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: the test suite needs Debian packages that are not installed: lb-nothing (no lb-no-such-command)"
    )


def test_a_ci_run_without_promtool_stops_in_its_first_seconds_naming_the_package(tmp_path):
    """Every listed command but promtool is reachable; the run ends at its start, before any test."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for _, command in listed_test_packages():
        where = None if command in ("-", "promtool") else _which(command)
        if where:
            (bin_dir / command).symlink_to(where)
    env = {**os.environ, "CI": "true", "PATH": str(bin_dir)}
    done = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/test_keys.py"],
        cwd=REPO_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "not installed: prometheus (no promtool)" in done.stdout + done.stderr
    assert " passed" not in done.stdout


def _which(command: str) -> str | None:
    for folder in [*os.environ.get("PATH", "").split(os.pathsep), "/usr/sbin", "/sbin"]:
        candidate = Path(folder) / command
        if folder and candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    return None


@pytest.mark.after_all
def test_the_suite_leaves_the_work_tree_as_it_found_it():
    """No test may write into the checkout (a Redis dump.rdb once landed at the root this way)."""
    before, after = STATUS_AT_START.get("git"), git_status()
    require(before is not None and after is not None, "the checkout is not a git work tree (or git is missing)")
    new = sorted(set(after.splitlines()) - set(before.splitlines()))
    assert not new, f"the tests left these in the work tree: {new}"
