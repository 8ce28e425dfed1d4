"""``launchbay agent install-service``: the systemd unit and environment file it writes, and what it refuses.

The files go under ``--root`` (a temporary folder): this host's /etc and systemd are never touched.
A real ``systemctl start``/``stop`` of the unit is the manual procedure in docs/agent.md.
"""

from __future__ import annotations

import json
import stat

import pytest
from conftest import BIN_DIR, run_cli
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

UNIT = "etc/systemd/system/launchbay-agent.service"
ENV = "etc/launchbay/agent.env"


def env_file(tmp_path, text: str):
    path = tmp_path / "agent.env"
    path.write_text(text)
    return path


def install(root, *args: str):
    return run_cli("agent", "install-service", "--root", str(root), *args)


def test_dry_run_shows_the_unit_and_writes_nothing(tmp_path):
    source = env_file(tmp_path, "LAUNCHBAY_REDIS_URL=redis://127.0.0.1:1/0\nLAUNCHBAY_AGENT_QUEUES=gpu\n")
    root = tmp_path / "root"

    result = install(root, "--env-file", str(source), "--stop-timeout", "2h", "--dry-run", "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert (report["written"], report["stop_timeout"], report["queues"]) == (False, "7200s", ["gpu"])
    lines = report["unit_text"].splitlines()
    for wanted in (
        f"ExecStart={BIN_DIR / 'launchbay'} agent",
        f"ExecStartPost={BIN_DIR / 'launchbay'} agent --check",
        "EnvironmentFile=/etc/launchbay/agent.env",
        "Restart=on-failure",
        "KillMode=mixed",
        "KillSignal=SIGTERM",
        "TimeoutStopSec=7200s",
    ):
        assert wanted in lines
    assert any(line.startswith("Environment=LAUNCHBAY_AGENT_DRAIN=true ") for line in lines)
    assert "@" not in report["unit_text"].replace("multi-user", "")  # every placeholder filled
    assert not root.exists()


def test_install_writes_the_unit_and_a_root_only_env_file(tmp_path):
    text = "# agent\nLAUNCHBAY_REDIS_URL=redis://:pw@10.0.0.5:6379/0\nWANDB_API_KEY='s3cret'\n"
    source = env_file(tmp_path, text)
    root = tmp_path / "root"

    result = install(root, "--env-file", str(source), "--stop-timeout", "infinity")

    assert result.returncode == 0, result.stderr
    assert f"wrote {root / UNIT} and {root / ENV} (0600)" in result.stdout
    assert "daemon-reload: skipped (not the host's /etc)" in result.stdout
    assert (root / ENV).read_text() == text
    assert stat.S_IMODE((root / ENV).stat().st_mode) == 0o600
    assert stat.S_IMODE((root / UNIT).stat().st_mode) == 0o644
    assert "TimeoutStopSec=infinity" in (root / UNIT).read_text().splitlines()
    assert "s3cret" not in (root / UNIT).read_text() and "pw@" not in result.stdout


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("LAUNCHBAY_REDIS_URL=redis://h:6379/0\nexport FOO\n", "line 2: expected NAME=value, got 'export FOO'"),
        ("LAUNCHBAY_AGENT_QUEUES=gpu\n", "sets no Redis URL: add LAUNCHBAY_REDIS_URL=redis://..."),
        ("LAUNCHBAY_REDIS_URL=redis://h:6379/0\nLAUNCHBAY_AGENT_MAX_JOBZ=3\n", "LAUNCHBAY_AGENT_MAX_JOBZ"),
        ("LAUNCHBAY_REDIS_URL=redis://h:6379/0\nLAUNCHBAY_AGENT_MAX_JOBS=many\n", "max_jobs"),
    ],
)
def test_a_bad_env_file_is_one_line_exit_2_and_nothing_written(tmp_path, text, error):
    root = tmp_path / "root"
    result = install(root, "--env-file", str(env_file(tmp_path, text)), "--stop-timeout", "1h")
    assert result.returncode == 2, result.stdout
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert error in result.stderr
    assert not root.exists()


def test_without_an_env_file_nor_an_installed_one_it_says_what_to_give(tmp_path):
    result = install(tmp_path / "root")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: no {tmp_path / 'root' / ENV} yet: give --env-file FILE with LAUNCHBAY_REDIS_URL=redis://...\n"
    )


def test_the_stop_timeout_covers_the_longest_job_of_the_agents_queues(tmp_path, redis_url, redis_conn):
    QueueStore(redis_conn).apply(QueueConfig.model_validate({"name": "gpu", "limits": {"max_runtime": "2h"}}))
    QueueStore(redis_conn).apply(QueueConfig.model_validate({"name": "cpu", "limits": {"max_runtime": "30m"}}))
    QueueStore(redis_conn).apply(QueueConfig.model_validate({"name": "open"}))
    source = env_file(tmp_path, f"LAUNCHBAY_REDIS_URL={redis_url}\nLAUNCHBAY_AGENT_QUEUES=gpu,cpu\n")

    bounded = json.loads(install(tmp_path / "r1", "--env-file", str(source), "--dry-run", "--json").stdout)
    source.write_text(f"LAUNCHBAY_REDIS_URL={redis_url}\nLAUNCHBAY_AGENT_QUEUES=cpu,open\n")
    unbounded = json.loads(install(tmp_path / "r2", "--env-file", str(source), "--dry-run", "--json").stdout)

    assert bounded["stop_timeout"] == f"{2 * 3600 + 10 + 60}s"  # + stop_grace_s (10) + 60 s to shut down
    assert (unbounded["stop_timeout"], unbounded["stop_timeout_why"]) == (
        "infinity",
        "queue open has no limits.max_runtime, so a drain has no bound",
    )
