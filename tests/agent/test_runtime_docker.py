"""JobSupervisor driving real containers on the test Docker engine, with a real Redis.

Each test starts a trivial ``python3 -c`` on the base image and checks what a user would see:
the record's state, reason, exit code and message, the log stream, the recorded inputs, and
that no container is left behind.
"""

from __future__ import annotations

import contextlib
import json
import textwrap
import time

import docker
import pytest
from launchbay.agent.docker_helpers import skip_proxy_lookup
from launchbay.agent.logs import TRUNCATED_PREFIX, line_cost
from launchbay.agent.runtime import DockerRuntime
from test_runtime_support import AGENT_ID, RuntimeHarness, containers_of, poll

pytestmark = [pytest.mark.integration, pytest.mark.docker]

GRACE_S = 1.0


@pytest.fixture
def runtime(docker_client):
    """The runtime as ``launchbay agent`` builds it: its own client from DOCKER_HOST."""
    built = DockerRuntime()
    yield built
    built.close()


@pytest.fixture
def harness(redis_conn, tmp_path):
    return RuntimeHarness(redis_conn, tmp_path, stop_grace_s=GRACE_S)


@pytest.fixture
def jobs(harness, docker_client):
    """Makes claimed jobs; removes whatever containers they left, even when a test fails."""
    made = []

    def make(command, *, image=None, **job):
        record, alloc = harness.claimed_job(image or job.pop("base_image"), command, **job)
        made.append(record.id)
        return record, alloc

    yield make
    for job_id in made:
        for container in containers_of(docker_client, job_id):
            # The job's own thread may be removing it at the same moment.
            with contextlib.suppress(docker.errors.NotFound, docker.errors.APIError):
                container.remove(force=True)


@pytest.fixture
def supervisor(harness, runtime):
    sup = harness.supervisor(runtime)
    yield sup
    sup.wait_all(timeout_s=30)


def py(source: str) -> list:
    return ["python3", "-c", textwrap.dedent(source)]


def test_a_job_sees_its_env_and_payload_read_only_and_writes_its_output(
    harness, supervisor, jobs, base_image, docker_client
):
    record, alloc = jobs(
        py(
            """
            import os, json
            for name in ("LAUNCHBAY_JOB_ID", "LAUNCHBAY_QUEUE", "LAUNCHBAY_GPUS", "LAUNCHBAY_RUN_CONFIG", "GREETING"):
                print(name, "=", os.environ.get(name), flush=True)
            inputs = os.environ["LAUNCHBAY_INPUTS_DIR"]
            print("run_config.json", "=", open(inputs + "/run_config.json").read())
            print("file_overrides.json", "=", open(inputs + "/file_overrides.json").read())
            try:
                open(inputs + "/sneaky.txt", "w")
                print("inputs writable")
            except OSError as exc:
                print("inputs read-only:", exc.errno)
            with open(os.environ["LAUNCHBAY_OUTPUT_DIR"] + "/note.txt", "w") as out:
                out.write("ok")
            print("output writable")
            """
        ),
        base_image=base_image,
        env={"GREETING": "hi"},
        run_config={"lr": 0.5},
        file_overrides={"conf/a.yaml": {"depth": 2}},
    )

    supervisor.start(record, alloc)
    ended = harness.wait_for_end(record.id)

    assert ended["state"] == "finished", ended
    lines = harness.log_lines(record.id)
    assert f"LAUNCHBAY_JOB_ID = {record.id}" in lines
    assert "LAUNCHBAY_QUEUE = cpu" in lines
    assert "LAUNCHBAY_GPUS = " in lines
    assert 'LAUNCHBAY_RUN_CONFIG = {"lr":0.5}' in lines
    assert "GREETING = hi" in lines
    assert 'run_config.json = {"lr":0.5}' in lines
    assert 'file_overrides.json = {"conf/a.yaml":{"depth":2}}' in lines
    assert "inputs read-only: 30" in lines
    assert "output writable" in lines
    assert harness.log_entries(record.id)[-1] == {"eof": "finished"}
    assert containers_of(docker_client, record.id) == []
    assert harness.releases[record.id] == 1


def test_the_sdk_records_are_read_back_and_the_job_folder_is_cleaned(harness, supervisor, jobs, base_image):
    record, alloc = jobs(
        py(
            """
            import json, os
            out = os.environ["LAUNCHBAY_OUTPUT_DIR"]
            json.dump({"run_config": {"lr": {"type": "float"}}}, open(out + "/inputs.json", "w"))
            json.dump({"lr": 0.5, "depth": 3}, open(out + "/config.json", "w"))
            print("recorded")
            """
        ),
        base_image=base_image,
        name="train-resnet",
    )

    supervisor.start(record, alloc)
    ended = harness.wait_for_end(record.id)

    assert ended["effective_config"] == {"lr": 0.5, "depth": 3}
    assert harness.recorded_inputs == [("train-resnet", {"run_config": {"lr": {"type": "float"}}}, record.id)]
    assert not (harness.state_dir / "jobs" / record.id).exists()
    assert harness.log_file(record.id).read_text() == "recorded\n"


def test_an_image_running_as_nobody_can_write_its_output(harness, supervisor, jobs, base_image):
    harness.set_queue("cpu", docker={"user": "65534:65534"})
    record, alloc = jobs(
        py(
            """
            import os, json
            json.dump({"uid": os.getuid()}, open(os.environ["LAUNCHBAY_OUTPUT_DIR"] + "/config.json", "w"))
            """
        ),
        base_image=base_image,
    )

    supervisor.start(record, alloc)

    assert harness.wait_for_end(record.id)["effective_config"] == {"uid": 65534}


def test_env_only_gpu_mode_routes_the_allocated_gpus(harness, supervisor, jobs, base_image):
    harness.set_queue("cpu", docker={"gpu_mode": "env_only"})
    record, alloc = jobs(
        py("import os; print(os.environ['CUDA_VISIBLE_DEVICES'], os.environ['LAUNCHBAY_GPUS'])"),
        base_image=base_image,
        gpus=("1", "3"),
    )

    supervisor.start(record, alloc)
    harness.wait_for_end(record.id)

    assert harness.log_lines(record.id) == ["1,3 1,3"]


def test_exit_3_fails_the_job_with_exit_code_3(harness, supervisor, jobs, base_image, docker_client):
    record, alloc = jobs(py("import sys; print('bad input'); sys.exit(3)"), base_image=base_image)

    supervisor.start(record, alloc)
    ended = harness.wait_for_end(record.id)

    assert (ended["state"], ended["reason"], ended["exit_code"]) == ("failed", "exit_code", 3)
    assert ended["message"] == "exited with code 3; last output: bad input"
    assert containers_of(docker_client, record.id) == []


def test_a_job_over_its_memory_limit_fails_as_oom_killed(harness, supervisor, jobs, base_image, docker_client):
    record, alloc = jobs(
        py("b = bytearray(200 * 1024 * 1024); print('survived')"),
        base_image=base_image,
        memory_mib=64,
    )

    supervisor.start(record, alloc)
    ended = harness.wait_for_end(record.id)

    assert (ended["state"], ended["reason"], ended["exit_code"]) == ("failed", "oom_killed", 137)
    assert "survived" not in harness.log_lines(record.id)
    assert containers_of(docker_client, record.id) == []


def test_a_job_past_max_runtime_is_stopped_and_fails_as_timeout(harness, supervisor, jobs, base_image, docker_client):
    record, alloc = jobs(["sleep", "60"], base_image=base_image, max_runtime_s=2)

    supervisor.start(record, alloc)
    running = harness.wait_for_state(record.id, "running")
    ended = harness.wait_for_end(record.id, timeout_s=20)

    assert (ended["state"], ended["reason"]) == ("failed", "timeout")
    # Prompt, not the 60 s the job asked for: stop, wait, inspect and the last log read come after the deadline.
    assert ended["failed_at"] - running["running_at"] < 2 + GRACE_S + 10
    assert containers_of(docker_client, record.id) == []


def test_cancel_stops_a_running_job_within_seconds(harness, supervisor, jobs, base_image, docker_client):
    record, alloc = jobs(["sleep", "60"], base_image=base_image)
    supervisor.start(record, alloc)
    harness.wait_for_state(record.id, "running")

    asked = time.time()
    supervisor.cancel(record.id)
    ended = harness.wait_for_end(record.id, timeout_s=15)

    assert (ended["state"], ended["reason"]) == ("canceled", "canceled_by_user")
    assert ended["canceled_at"] - asked < GRACE_S + 10
    assert harness.log_entries(record.id)[-1] == {"eof": "canceled"}
    assert containers_of(docker_client, record.id) == []
    assert harness.releases[record.id] == 1


def test_a_missing_image_fails_the_pull_and_the_supervisor_keeps_working(harness, supervisor, jobs, base_image):
    missing = "launchbay-test/does-not-exist:1"
    record, alloc = jobs(["true"], image=missing)

    supervisor.start(record, alloc)
    ended = harness.wait_for_end(record.id)
    second, second_alloc = jobs(["true"], base_image=base_image)
    supervisor.start(second, second_alloc)

    assert (ended["state"], ended["reason"]) == ("failed", "image_pull_failed")
    assert missing in ended["message"]
    assert any("pulling it" in line for line in harness.log_lines(record.id))
    assert harness.wait_for_end(second.id)["state"] == "finished"
    assert harness.releases[record.id] == 1 and harness.releases[second.id] == 1


def test_a_command_missing_from_the_image_fails_as_container_failed(
    harness, supervisor, jobs, base_image, docker_client
):
    record, alloc = jobs(["no-such-command", "--flag"], base_image=base_image)

    supervisor.start(record, alloc)
    ended = harness.wait_for_end(record.id)

    assert (ended["state"], ended["reason"]) == ("failed", "container_failed")
    assert "no-such-command" in ended["message"]
    assert "No such file or directory" in ended["message"]
    assert containers_of(docker_client, record.id) == []


def test_output_over_the_cap_is_truncated_in_the_stream_and_the_file(redis_conn, tmp_path, jobs, base_image, runtime):
    cap = 64 * 1024
    harness = RuntimeHarness(redis_conn, tmp_path, log_cap_bytes=cap, stop_grace_s=GRACE_S)
    supervisor = harness.supervisor(runtime)
    record, alloc = harness.claimed_job(
        base_image, py("import sys; sys.stdout.write(('x' * 99 + '\\n') * 52429)"), name="chatty"
    )

    supervisor.start(record, alloc)
    ended = harness.wait_for_end(record.id, timeout_s=60)

    lines = harness.log_lines(record.id)
    assert ended["state"] == "finished"
    assert lines[-1].startswith(TRUNCATED_PREFIX)
    assert sum(line_cost(line) for line in lines[:-1]) <= cap
    assert all(line == "x" * 99 for line in lines[:-1])
    assert harness.log_entries(record.id)[-1] == {"eof": "finished"}
    log_file = harness.log_file(record.id).read_bytes()
    assert len(log_file) <= 4 * cap + 200
    assert log_file.rstrip(b"\n").rsplit(b"\n", 1)[-1].startswith(TRUNCATED_PREFIX.encode())
    supervisor.wait_all(timeout_s=10)


def test_partial_lines_and_invalid_utf8_reach_the_log_readably(harness, supervisor, jobs, base_image):
    record, alloc = jobs(
        py("import sys; sys.stdout.buffer.write(b'bad \\xff byte\\nprogress 10%\\rprogress 100%\\nno newline')"),
        base_image=base_image,
    )

    supervisor.start(record, alloc)
    harness.wait_for_end(record.id)

    assert harness.log_lines(record.id) == ["bad \ufffd byte", "progress 100%", "no newline"]


def test_a_stale_container_of_an_earlier_attempt_does_not_block_the_job(
    harness, supervisor, jobs, base_image, docker_client
):
    record, alloc = jobs(["true"], base_image=base_image)
    docker_client.containers.create(base_image, ["true"], name=f"launchbay-{record.id}")

    supervisor.start(record, alloc)

    assert harness.wait_for_end(record.id)["state"] == "finished"
    assert containers_of(docker_client, record.id) == []
    with pytest.raises(Exception, match="No such container"):
        docker_client.containers.get(f"launchbay-{record.id}")


def test_a_detached_job_is_adopted_by_a_new_supervisor_and_ends_once(harness, runtime, jobs, base_image, docker_client):
    record, alloc = jobs(
        py(
            """
            import time
            print("before 1", flush=True)
            print("before 2", flush=True)
            time.sleep(8)  # time to detach and list on a busy machine
            print("after", flush=True)
            """
        ),
        base_image=base_image,
    )
    first = harness.supervisor(runtime)
    first.start(record, alloc)
    poll(lambda: len(harness.log_lines(record.id)) == 2, timeout_s=20, what="the first lines")

    first.detach_all()
    (container,) = [c for c in runtime.list_managed(AGENT_ID) if c.job_id == record.id]
    assert container.running
    assert harness.releases[record.id] == 0
    second = harness.supervisor(runtime)
    second.adopt(container, alloc)
    ended = harness.wait_for_end(record.id, timeout_s=30)

    assert ended["state"] == "finished"
    assert harness.log_entries(record.id) == [
        {"line": "before 1"},
        {"line": "before 2"},
        {"line": "after"},
        {"eof": "finished"},
    ]
    assert harness.log_file(record.id).read_text() == "before 1\nbefore 2\nafter\n"
    assert harness.releases[record.id] == 1
    assert containers_of(docker_client, record.id) == []
    assert json.loads(json.dumps(harness.records.as_json(record.id)["state"])) == "finished"


def test_the_docker_runtime_waits_lists_and_removes_its_containers(runtime, base_image, docker_client):
    labels = {"launchbay.managed": "1", "launchbay.agent_id": "rt-direct", "launchbay.job_id": "rt-direct-1"}
    container_id = runtime.create_and_start(
        {"image": base_image, "command": ["sleep", "5"], "labels": labels, "init": True}
    )
    try:
        assert runtime.wait(container_id, 0.2) is None
        (info,) = runtime.list_managed("rt-direct")
        assert (info.job_id, info.status, info.exit_code) == ("rt-direct-1", "running", None)
        assert info.started_at == pytest.approx(time.time(), abs=30)

        exit_status = runtime.wait(container_id, 20)

        assert (exit_status.exit_code, exit_status.oom_killed) == (0, False)
        assert runtime.inspect(container_id).exit_code == 0
    finally:
        runtime.remove(container_id)
    runtime.remove(container_id)  # a second remove is harmless
    assert runtime.list_managed("rt-direct") == []


def _log_text(runtime, container_id, **kwargs) -> str:
    return b"".join(data for _, data in runtime.stream_logs(container_id, **kwargs)).decode()


def test_the_runtime_reads_its_own_containers_logs_without_inspecting_them(runtime, base_image):
    inspected = []
    api = runtime._api
    inspect_container = api.inspect_container
    api.inspect_container = lambda container: inspected.append(container) or inspect_container(container)
    container_id = runtime.create_and_start({"image": base_image, "command": ["echo", "hello"], "labels": {}})
    try:
        assert _log_text(runtime, container_id) == "hello\n"
        assert inspected == []  # neither the create nor the follow read asked the engine about the container
        assert runtime.wait(container_id, 20).exit_code == 0  # reads the exit: one inspect
        assert _log_text(runtime, container_id, follow=False) == "hello\n"
        assert inspected == [container_id]
    finally:
        runtime.remove(container_id)


def test_a_tty_container_and_one_created_elsewhere_have_their_logs_read(runtime, base_image, docker_client):
    """A tty stream is not framed like a plain one: the runtime knows which for its own containers and
    asks the engine about any other (one adopted after a restart, made by another client)."""
    tty_id = runtime.create_and_start({"image": base_image, "command": ["echo", "on a tty"], "tty": True})
    elsewhere = docker_client.containers.run(base_image, ["echo", "from elsewhere"], detach=True)
    try:
        assert runtime.wait(tty_id, 20).exit_code == 0 and runtime.wait(elsewhere.id, 20).exit_code == 0
        own = _log_text(runtime, tty_id, follow=False)
        assert own.endswith("on a tty\r\n")  # a tty stream comes unframed, in one piece with its timestamp
        assert _log_text(DockerRuntime(), tty_id, follow=False) == own  # a restarted agent's runtime asks the engine
        assert _log_text(runtime, elsewhere.id, follow=False) == "from elsewhere\n"
    finally:
        runtime.remove(tty_id)
        runtime.remove(elsewhere.id)


def test_a_local_engine_is_called_without_reading_proxy_variables_and_a_tcp_one_keeps_them(docker_client):

    local = DockerRuntime()  # DOCKER_HOST, as the agent finds its engine
    assert local.ping()
    assert local._api.base_url.startswith("http+docker://") and local._api.trust_env is False
    remote = docker.DockerClient(base_url="tcp://127.0.0.1:1", version="1.41")  # explicit version: no call made
    skip_proxy_lookup(remote.api)
    assert remote.api.trust_env is True  # HTTPS_PROXY and NO_PROXY still apply to a tcp:// engine
