"""Agent settings: flag > LAUNCHBAY_AGENT_* env > --config file > default, settled in one function."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import run_cli
from launchbay.agent.settings import resolve_settings

from launchbay.errors import ConfigError


def write_config(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return path


def test_defaults_apply_when_nothing_is_given(tmp_path):
    settings = resolve_settings({}, environ={})
    assert settings.queues == ["default"] and settings.gpus is None and settings.max_jobs == 8
    assert settings.log_cap_bytes == 8 << 20 and settings.stop_grace_s == 10
    assert settings.heartbeat_interval_s == 3 and settings.heartbeat_ttl_s == 10 and settings.lost_grace_s == 15
    assert settings.poll_interval_s == 5 and settings.lookahead == 64 and settings.reserve_after_s == 300
    assert settings.inventory_refresh_s == 10 and settings.redis_url is None and settings.drain is False


def test_a_flag_beats_env_which_beats_the_file_which_beats_the_default(tmp_path):
    config = write_config(tmp_path, "max_jobs: 2\nreserve_cpus: 1\nreserve_memory: 1GiB\nqueues: [a, b]\n")
    env = {"LAUNCHBAY_AGENT_MAX_JOBS": "3", "LAUNCHBAY_AGENT_RESERVE_CPUS": "1.5"}
    settings = resolve_settings({"max_jobs": 4}, environ=env, config_file=config)
    assert settings.max_jobs == 4  # flag
    assert settings.reserve_cpus == 1.5  # env over file
    assert settings.reserve_memory_mib == 1024  # file over default
    assert settings.queues == ["a", "b"]
    assert settings.lookahead == 64  # default


def test_a_human_size_flag_beats_a_file_value_in_mib(tmp_path):
    config = write_config(tmp_path, "reserve_memory_mib: 100\nlog_cap: 1MiB\n")
    settings = resolve_settings({"reserve_memory": "2GiB"}, environ={}, config_file=config)
    assert settings.reserve_memory_mib == 2048 and settings.log_cap_bytes == 1 << 20


def test_the_metrics_caps_default_to_20000_steps_and_8_mib_and_take_human_sizes(tmp_path):
    assert resolve_settings({}, environ={}).metrics_cap_entries == 20_000
    assert resolve_settings({}, environ={}).metrics_cap_bytes == 8 << 20
    env = {"LAUNCHBAY_AGENT_METRICS_CAP": "2MiB", "LAUNCHBAY_AGENT_METRICS_CAP_ENTRIES": "500"}
    settings = resolve_settings({}, environ=env)
    assert settings.metrics_cap_bytes == 2 << 20 and settings.metrics_cap_entries == 500
    result = run_cli("agent", "--metrics-cap-entries", "0", "--check")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: Invalid value for '--metrics-cap-entries': 0 is not in the range x>=1 (see launchbay agent --help)"
    ]


def test_env_values_are_written_as_people_write_them():
    env = {
        "LAUNCHBAY_AGENT_QUEUES": "gpu, cpu",
        "LAUNCHBAY_AGENT_GPUS": "0,1,3",
        "LAUNCHBAY_AGENT_LABELS": "zone=eu,rack=7",
        "LAUNCHBAY_AGENT_DRAIN": "true",
        "LAUNCHBAY_AGENT_RESERVE_MEMORY": "512MiB",
    }
    settings = resolve_settings({}, environ=env)
    assert settings.queues == ["gpu", "cpu"] and settings.gpus == ["0", "1", "3"]
    assert settings.labels == {"zone": "eu", "rack": "7"} and settings.drain is True
    assert settings.reserve_memory_mib == 512
    assert resolve_settings({"gpus": "all"}, environ=env).gpus is None


def test_the_config_file_can_come_from_the_environment(tmp_path):
    config = write_config(tmp_path, "agent_id: from-file\n")
    settings = resolve_settings({}, environ={"LAUNCHBAY_AGENT_CONFIG": str(config)})
    assert settings.agent_id == "from-file"


@pytest.mark.parametrize(
    ("source", "message"),
    [
        ("file", "agent.yaml: max_job: unknown field"),
        ("env", "LAUNCHBAY_AGENT_MAX_JOB is not an agent setting"),
    ],
)
def test_unknown_keys_are_refused_naming_where_they_came_from(tmp_path, source, message):
    config = write_config(tmp_path, "max_job: 2\n") if source == "file" else None
    environ = {"LAUNCHBAY_AGENT_MAX_JOB": "2"} if source == "env" else {}
    with pytest.raises(ConfigError, match=message):
        resolve_settings({}, environ=environ, config_file=config)


def test_a_bad_value_names_its_source(tmp_path):
    with pytest.raises(ConfigError, match=r"environment \(LAUNCHBAY_AGENT_\*\): max_jobs"):
        resolve_settings({}, environ={"LAUNCHBAY_AGENT_MAX_JOBS": "many"})
    with pytest.raises(ConfigError, match="command line: reserve_memory '4' has no unit"):
        resolve_settings({"reserve_memory": "4"}, environ={})
    with pytest.raises(ConfigError, match="label 'zone' must look like key=value"):
        resolve_settings({}, environ={"LAUNCHBAY_AGENT_LABELS": "zone"})


def test_a_heartbeat_slower_than_its_ttl_is_refused():
    with pytest.raises(ConfigError, match=r"heartbeat_interval_s .* must be shorter than heartbeat_ttl_s"):
        resolve_settings({}, environ={"LAUNCHBAY_AGENT_HEARTBEAT_INTERVAL_S": "20"})


def test_the_cli_applies_the_same_precedence(tmp_path):
    config = write_config(tmp_path, "reserve_cpus: 0.25\nagent_id: file-id\nreserve_memory: 64MiB\n")
    env = {"LAUNCHBAY_AGENT_AGENT_ID": "env-id", "LAUNCHBAY_AGENT_NVIDIA_SMI": str(tmp_path / "none")}
    result = run_cli("inventory", "--json", "--config", str(config), "--reserve-memory", "128MiB", env=env)
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["agent_id"] == "env-id"
    assert report["reserve_cpus"] == 0.25
    assert report["reserve_memory_mib"] == 128


def test_the_cli_reports_a_bad_setting_as_one_line_with_exit_code_2(tmp_path):
    result = run_cli("inventory", "--max-jobs", "0")
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: command line: max_jobs: Input should be greater than or equal to 1"
    ]


def test_agent_help_names_every_option_with_its_default_and_env_var():
    result = run_cli("agent", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option, env in [
        ("--redis-url", "LAUNCHBAY_AGENT_REDIS_URL"),
        ("--queue", "LAUNCHBAY_AGENT_QUEUES"),
        ("--gpus", "LAUNCHBAY_AGENT_GPUS"),
        ("--reserve-cpus", "LAUNCHBAY_AGENT_RESERVE_CPUS"),
        ("--reserve-memory", "LAUNCHBAY_AGENT_RESERVE_MEMORY"),
        ("--label", "LAUNCHBAY_AGENT_LABELS"),
        ("--max-jobs", "LAUNCHBAY_AGENT_MAX_JOBS"),
        ("--agent-id", "LAUNCHBAY_AGENT_AGENT_ID"),
        ("--state-dir", "LAUNCHBAY_AGENT_STATE_DIR"),
        ("--log-cap", "LAUNCHBAY_AGENT_LOG_CAP"),
        ("--metrics-cap", "LAUNCHBAY_AGENT_METRICS_CAP"),
        ("--metrics-cap-entries", "LAUNCHBAY_AGENT_METRICS_CAP_ENTRIES"),
        ("--config", "LAUNCHBAY_AGENT_CONFIG"),
        ("--drain", "LAUNCHBAY_AGENT_DRAIN"),
        ("--json-logs", "LAUNCHBAY_AGENT_JSON_LOGS"),
    ]:
        assert option in text and f"env: {env}" in text, option
    assert "--check" in text and "--once" in text
    assert text.count("[default:") >= 13
