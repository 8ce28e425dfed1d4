"""The agent's image (top-level Dockerfile), built by scripts/build-agent-image from the local base
image with no registry, running a job end to end as the Dockerfile's header says to run it; and
`docker build .` at the repository root giving the same image.

The agent's container uses the host's network only to reach the test Redis on 127.0.0.1; its jobs
run on the queue's own network. The state folder has the same path inside and outside.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import tempfile
import uuid
from pathlib import Path

import docker
import pytest
from conftest import REPO_ROOT
from demo_helpers import base_with_pip, engine_socket, socket_access, wait_for
from launchbay.agent.runtime import AGENT_ID_LABEL
from launchbay.client import enqueue
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.models import QueueConfig
from launchbay.queue_config.store import QueueStore

pytestmark = [pytest.mark.integration, pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

AGENT_UID = 10001
FAST_BEATS = {
    "LAUNCHBAY_AGENT_HEARTBEAT_INTERVAL_S": "0.5",
    "LAUNCHBAY_AGENT_HEARTBEAT_TTL_S": "3",
    "LAUNCHBAY_AGENT_POLL_INTERVAL_S": "1",
}


@pytest.fixture(scope="module")
def agent_image(docker_client, base_image):
    base = base_with_pip(docker_client, base_image)
    tag = f"launchbay-agent:test-{uuid.uuid4().hex[:8]}"
    result = subprocess.run(
        [str(REPO_ROOT / "scripts" / "build-agent-image"), "--base", base, "--tag", tag],
        capture_output=True,
        text=True,
        timeout=840,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"built {tag} FROM {base}" in result.stdout
    yield tag
    # An image still used by a container that a failed test left stays; nothing else depends on it.
    with contextlib.suppress(docker.errors.APIError):
        docker_client.images.remove(tag)


#: What each image holds that a user would notice: installed distributions, launchbay's files, the config.
FINGERPRINT = """
import hashlib, pathlib, subprocess, sys, launchbay
root = pathlib.Path(launchbay.__file__).parent.parent
digest = hashlib.sha256()
for path in sorted(root.glob("launchbay/**/*")):
    if path.is_file() and "__pycache__" not in path.parts:
        digest.update(str(path.relative_to(root)).encode() + path.read_bytes())
freeze = subprocess.run([sys.executable, "-m", "pip", "freeze"], capture_output=True, text=True).stdout
print(digest.hexdigest())
print(freeze)
"""


def fingerprint(docker_client, image: str):
    config = docker_client.images.get(image).attrs["Config"]
    output = docker_client.containers.run(image, ["-c", FINGERPRINT], entrypoint="python3", remove=True).decode()
    keep = ("User", "Entrypoint", "Cmd", "Env", "Healthcheck", "WorkingDir")
    return {k: config.get(k) for k in keep}, output


def test_docker_build_at_the_repository_root_gives_the_same_image(docker_client, agent_image, base_image):
    base = base_with_pip(docker_client, base_image)
    tag = f"launchbay-agent:root-{uuid.uuid4().hex[:8]}"
    wheels = REPO_ROOT / "wheels"  # ignored by git; the Dockerfile uses it instead of an index
    assert not wheels.exists(), f"{wheels} is in the way; remove it"
    fetch = (
        "source scripts/lib.sh && lb_venv && mapfile -t deps < <(lb_runtime_deps; lb_build_requires) "
        '&& lb_wheels "$1" wheels "${deps[@]}" && rm -f wheels/launchbay-*.whl'
    )
    try:
        fetched = subprocess.run(["bash", "-c", fetch, "_", base], cwd=REPO_ROOT, capture_output=True, text=True)
        assert fetched.returncode == 0, fetched.stdout + fetched.stderr
        built = subprocess.run(
            ["docker", "build", "-t", tag, "--build-arg", f"BASE_IMAGE={base}", "."],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=840,
        )
        assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
        assert fingerprint(docker_client, tag) == fingerprint(docker_client, agent_image)
    finally:
        shutil.rmtree(wheels, ignore_errors=True)
        with contextlib.suppress(docker.errors.APIError):
            docker_client.images.remove(tag)


@pytest.fixture
def run_container(docker_client):
    """docker-py containers.run(detach=True); every container started is removed afterwards."""
    started = []

    def run(image, command, **kwargs):
        container = docker_client.containers.run(image, command, detach=True, **kwargs)
        started.append(container)
        return container

    yield run
    for container in started:
        try:
            container.remove(force=True)
        except docker.errors.NotFound:
            pass
        except docker.errors.APIError as exc:  # "removal already in progress"
            if "already in progress" not in str(exc):
                raise


@pytest.fixture
def state_dir():
    """A folder with the same path inside and outside the agent's container, writable by its user."""
    path = Path(tempfile.mkdtemp(prefix="lb-agent-image-"))
    if os.geteuid() == 0:
        os.chown(path, AGENT_UID, AGENT_UID)
    else:
        path.chmod(0o777)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def exit_and_output(container, timeout_s: float = 60):
    status = container.wait(timeout=timeout_s)
    return status["StatusCode"], container.logs().decode(errors="replace")


def test_the_image_runs_the_agent_as_a_non_root_user_with_a_health_check(docker_client, agent_image):
    config = docker_client.images.get(agent_image).attrs["Config"]
    assert config["User"] == "launchbay"
    assert config["Entrypoint"] == ["launchbay", "agent"]
    assert config["Healthcheck"]["Test"] == ["CMD", "launchbay", "agent", "--check"]
    uid = docker_client.containers.run(
        agent_image, ["-c", "import os; print(os.getuid())"], entrypoint="python3", remove=True
    )
    assert uid.strip() == str(AGENT_UID).encode()


def test_a_job_runs_end_to_end_through_the_containerised_agent(
    docker_client, agent_image, base_image, redis_url, redis_conn, state_dir, run_container
):
    sock = engine_socket()
    agent_id = f"img-{uuid.uuid4().hex[:8]}"
    QueueStore(redis_conn, Keys()).apply(QueueConfig(name="imgq", docker={"gpu_mode": "env_only"}))
    agent = run_container(
        agent_image,
        ["-q", "imgq", "--agent-id", agent_id],
        network_mode="host",
        volumes={str(sock): {"bind": "/var/run/docker.sock", "mode": "rw"}, str(state_dir): {"bind": str(state_dir)}},
        environment={"LAUNCHBAY_REDIS_URL": redis_url, "LAUNCHBAY_AGENT_STATE_DIR": str(state_dir), **FAST_BEATS},
        **socket_access(sock),
    )
    try:
        wait_for(
            lambda: redis_conn.exists(Keys().agent_alive(agent_id)),
            "the agent in the container to register",
            60,
            lambda: agent.logs().decode(errors="replace"),
        )
        job = enqueue(
            {
                "name": "from-image",
                "image": base_image,
                "command": ["python3", "-c", "import os; print('payload', os.environ['LAUNCHBAY_RUN_CONFIG'])"],
            },
            "imgq",
            overrides={"greeting": "hello"},
            redis_url=redis_url,
        )
        record = job.wait(timeout_s=120)
        assert record["state"] == "finished", (record, agent.logs().decode(errors="replace"))
        assert record["agent"] == agent_id
        assert 'payload {"greeting":"hello"}' in list(job.logs())

        code, output = agent.exec_run(["launchbay", "agent", "--check"])
        assert code == 0, output
        assert b"redis: ok" in output and b"docker: ok" in output
    finally:
        for container in docker_client.containers.list(
            all=True, filters={"label": f"{AGENT_ID_LABEL}={agent_id}"}, ignore_removed=True
        ):
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):  # the agent may remove it too
                container.remove(force=True)


def test_the_health_check_fails_when_redis_or_the_engine_cannot_be_reached(agent_image, redis_url, run_container):
    sock = engine_socket()
    engine = {"volumes": {str(sock): {"bind": "/var/run/docker.sock", "mode": "rw"}}, **socket_access(sock)}

    no_redis = run_container(
        agent_image,
        ["--check"],
        network_mode="host",
        environment={"LAUNCHBAY_REDIS_URL": "redis://127.0.0.1:1/0"},
        **engine,
    )
    code, output = exit_and_output(no_redis)
    assert code == 1 and "redis: unreachable" in output and "docker: ok" in output, output

    no_engine = run_container(
        agent_image, ["--check"], network_mode="host", environment={"LAUNCHBAY_REDIS_URL": redis_url}
    )
    code, output = exit_and_output(no_engine)
    assert code == 1 and "redis: ok" in output and "docker: unreachable" in output, output
