"""Queue secrets through a real ``launchbay agent`` and Docker: resolved on the agent's host, in the
container's env and in place of ``${secret:NAME}`` references, never in Redis, never shown; a
missing one fails the job with reason ``secret_missing``."""

from __future__ import annotations

import json

import pytest
import yaml
from conftest import run_cli
from test_control_support import make_queue
from test_e2e_agent import agents, log_lines  # noqa: F401  (agents is a fixture)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

FROM_ENV = "env-secret-7f3a9c"
FROM_FILE = "file-secret-4b8e21"

SHOW = """
import json, os
run = json.load(open('/launchbay/inputs/run_config.json'))
print('env', os.environ['TOKEN_ENV'])
print('file', os.environ['TOKEN_FILE'])
print('lengths', len(os.environ['TOKEN_ENV']), len(os.environ['TOKEN_FILE']))
print('resolved', run['trainer']['api_key'] == os.environ['TOKEN_ENV'])
"""


def everything_in(conn) -> str:
    """Every key and value in Redis as text, to look for a secret in."""
    parts = []
    for key in conn.scan_iter():
        kind = conn.type(key).decode()
        if kind == "string":
            value = conn.get(key)
        elif kind == "hash":
            value = conn.hgetall(key)
        elif kind == "list":
            value = conn.lrange(key, 0, -1)
        elif kind == "set":
            value = conn.smembers(key)
        elif kind == "zset":
            value = conn.zrange(key, 0, -1)
        elif kind == "stream":
            value = conn.xrange(key)
        else:
            value = kind
        parts.append(f"{key!r} {value!r}")
    return "\n".join(parts)


def spec_file(tmp_path, image: str) -> str:
    spec = {
        "name": "secret-user",
        "image": image,
        "command": ["python3", "-c", SHOW],
        "inputs": {
            "run_config": {
                "schema": {
                    "type": "object",
                    "properties": {
                        "trainer": {"type": "object", "properties": {"api_key": {"type": "string", "format": "secret"}}}
                    },
                }
            }
        },
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(spec))
    return str(path)


def test_secrets_reach_the_container_and_nothing_that_is_stored_or_shown(
    tmp_path,
    monkeypatch,
    redis_url,
    redis_conn,
    base_image,
    agents,  # noqa: F811
):
    secret_file = tmp_path / "token"
    secret_file.write_text(FROM_FILE + "\n")
    monkeypatch.setenv("LB_TEST_TOKEN", FROM_ENV)
    secrets = {"TOKEN_ENV": {"env": "LB_TEST_TOKEN"}, "TOKEN_FILE": {"file": str(secret_file)}}
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"}, secrets=secrets)
    agent = agents("secrets-agent")

    env = {"LAUNCHBAY_REDIS_URL": redis_url}
    result = run_cli(
        "enqueue", spec_file(tmp_path, base_image), "-q", "e2e",
        "--set", "trainer.api_key=${secret:TOKEN_ENV}", "--wait", env=env, timeout=240,
    )  # fmt: skip
    job_id = result.stdout.strip().splitlines()[0]
    lines = log_lines(redis_conn, job_id)
    assert result.returncode == 0, (result.stdout, result.stderr, lines, agent.output())
    assert "env ***" in lines and "file ***" in lines
    assert f"lengths {len(FROM_ENV)} {len(FROM_FILE)}" in lines
    assert "resolved True" in lines

    shown = [
        run_cli("status", job_id, env=env).stdout,
        run_cli("status", job_id, "--json", env=env).stdout,
        run_cli("list", "--json", env=env).stdout,
        run_cli("logs", job_id, env=env).stdout,
        run_cli("queue", "show", "e2e", env=env).stdout,
        everything_in(redis_conn),
        agent.output(),
    ]
    for text in shown:
        assert FROM_ENV not in text and FROM_FILE not in text
    assert json.loads(shown[1])["run_config"]["trainer"]["api_key"] == "${secret:TOKEN_ENV}"


def test_a_missing_secret_fails_the_job_with_secret_missing_before_it_runs(
    tmp_path,
    monkeypatch,
    redis_url,
    redis_conn,
    base_image,
    agents,  # noqa: F811
):
    monkeypatch.delenv("LB_TEST_ABSENT", raising=False)
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"}, secrets={"TOKEN": {"env": "LB_TEST_ABSENT"}})
    agent = agents("secrets-missing-agent")
    env = {"LAUNCHBAY_REDIS_URL": redis_url}
    result = run_cli(
        "enqueue", "--image", base_image, "-q", "e2e", "--wait", "--", "python3", "-c", "print('ran')",
        env=env, timeout=240,
    )  # fmt: skip
    job_id = result.stdout.strip().splitlines()[0]
    assert result.returncode == 1, (result.stdout, result.stderr, agent.output())
    status = json.loads(run_cli("status", job_id, "--json", env=env).stdout)
    assert status["state"] == "failed" and status["reason"] == "secret_missing"
    assert status["message"] == "secret TOKEN is missing: env LB_TEST_ABSENT on the agent's host is not set or empty"
    assert "ran" not in log_lines(redis_conn, job_id)


LEAK = """
import json, os
secret = os.environ['TOKEN_ENV']
out = os.environ['LAUNCHBAY_OUTPUT_DIR']
print('printed', secret, flush=True)
with open(out + '/metrics.jsonl', 'a') as handle:
    handle.write(json.dumps({'_step': 0, 'loss': 0.5, 'note': 'key=' + secret, 'by_' + secret: 1.0}) + '\\n')
with open(out + '/summary.json', 'w') as handle:
    json.dump({'loss': 0.5, 'token': secret, 'best_' + secret: 2.0}, handle)
raise SystemExit('giving up with ' + secret)
"""


def test_a_job_that_prints_logs_and_summarizes_a_secret_leaves_it_nowhere_in_redis(
    monkeypatch,
    redis_url,
    redis_conn,
    base_image,
    agents,  # noqa: F811
):
    """Issue 23: the log was masked, but metrics.jsonl and summary.json went to Redis as the job wrote them."""
    monkeypatch.setenv("LB_TEST_TOKEN", FROM_ENV)
    make_queue(redis_conn, "e2e", docker={"gpu_mode": "env_only"}, secrets={"TOKEN_ENV": {"env": "LB_TEST_TOKEN"}})
    agent = agents("leak-agent")
    env = {"LAUNCHBAY_REDIS_URL": redis_url}
    result = run_cli(
        "enqueue", "--image", base_image, "-q", "e2e", "--wait", "--", "python3", "-c", LEAK, env=env, timeout=240,
    )  # fmt: skip
    job_id = result.stdout.strip().splitlines()[0]
    assert result.returncode == 1, (result.stdout, result.stderr, agent.output())

    status = json.loads(run_cli("status", job_id, "--json", env=env).stdout)
    assert status["summary"] == {"loss": 0.5, "token": "***", "best_***": 2.0}, status
    metrics = run_cli("metrics", job_id, "--json", env=env)
    assert metrics.returncode == 0 and "key=***" in metrics.stdout and "by_***" in metrics.stdout, metrics.stdout
    assert "printed ***" in log_lines(redis_conn, job_id)
    assert FROM_ENV not in everything_in(redis_conn)
