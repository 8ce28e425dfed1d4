"""What a job submitter can and cannot get from the container, checked on the engine itself.

Privileged mode, added capabilities, the host's network, PID or IPC namespace, devices and host
bind mounts need the queue's consent (``submitter_may_set``). Asking through ``launchbay enqueue``
is refused (exit 2, nothing written); writing a record straight into Redis gets the job refused
by the agent before any container exists (the agent runs enqueue's checks again). Every container runs with
no-new-privileges, sees its inputs read-only, and cannot reach another job's payload.
"""

from __future__ import annotations

import json
import textwrap

import pytest
import yaml
from launchbay.agent.runtime import JOB_ID_LABEL
from security_helpers import (
    AgentFleet,
    cli,
    container_of,
    log_lines,
    make_queue,
    put_hostile_record,
    record,
    redis_snapshot,
    state_of,
    wait_for,
)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

#: Each docker option a submitter might want, as a job spec's ``docker:`` section writes it.
ESCALATIONS = {
    "privileged": {"privileged": True},
    "cap_add": {"cap_add": ["SYS_ADMIN"]},
    "network": {"network": "host"},
    "pid_mode": {"pid_mode": "host"},
    "ipc_mode": {"ipc_mode": "host"},
    "devices": {"devices": ["/dev/mem"]},
    "mounts": {"mounts": [{"source": "/", "target": "/host", "read_only": False}]},
    "user": {"user": "0:0"},
    "runtime": {"runtime": "runc"},
}
ALL_AT_ONCE = {key: value for option in ESCALATIONS.values() for key, value in option.items()}


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client)
    yield fleet
    fleet.close()


def spec_file(tmp_path, image: str, docker: dict, command=("true",)) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "escalate", "image": image, "command": list(command), "docker": docker}))
    return str(path)


@pytest.mark.parametrize("option", list(ESCALATIONS))
def test_a_submitter_cannot_ask_for_a_docker_option_the_queue_does_not_allow(
    redis_url, redis_conn, tmp_path, base_image, option
):
    make_queue(redis_conn, "locked")
    before = redis_snapshot(redis_conn)
    result = cli(redis_url, "enqueue", spec_file(tmp_path, base_image, ESCALATIONS[option]), "-q", "locked")
    assert result.returncode == 2
    assert result.stderr == (
        f"error: docker option '{option}' may not be set by submitters on queue 'locked' (submitter_may_set: nothing)\n"
    )
    assert redis_snapshot(redis_conn) == before


def test_a_queue_that_allows_exactly_cap_add_grants_that_and_nothing_more(
    redis_url, redis_conn, tmp_path, base_image, docker_client, fleet
):
    make_queue(redis_conn, "ptrace", submitter_may_set=["cap_add"])
    refused = cli(redis_url, "enqueue", spec_file(tmp_path, base_image, ALL_AT_ONCE), "-q", "ptrace")
    assert refused.returncode == 2 and "'privileged' may not be set" in refused.stderr
    assert "'cap_add' may not" not in refused.stderr

    allowed = cli(
        redis_url,
        "enqueue",
        spec_file(tmp_path, base_image, {"cap_add": ["SYS_PTRACE"]}, ["sleep", "3"]),
        "-q",
        "ptrace",
    )
    assert allowed.returncode == 0, allowed.stderr
    fleet.start("priv-agent", queues=("ptrace",))
    host_config = container_of(docker_client, allowed.stdout.strip()).attrs["HostConfig"]
    assert host_config["CapAdd"] == ["SYS_PTRACE"]
    assert host_config["Privileged"] is False


def test_a_record_written_straight_into_redis_with_escalations_is_refused_by_the_agent(
    redis_conn, base_image, docker_client, fleet
):
    """Issue 23: the agent runs enqueue's checks again on what it claims, so the job ends (and gets no container)
    instead of running with its escalations dropped."""
    make_queue(redis_conn, "locked")
    spec = {"image": base_image, "command": ["sleep", "3"], "env": {}, "docker": ALL_AT_ONCE}
    job_id = put_hostile_record(redis_conn, "locked", spec=spec)
    fleet.start("defender", queues=("locked",))

    wait_for(lambda: state_of(redis_conn, job_id) == "failed", timeout_s=60, what=fleet.output())
    ended = record(redis_conn, job_id)
    assert ended["reason"] == "refused", ended
    for name in ESCALATIONS:
        assert f"docker option {name!r} may not be set by submitters on queue 'locked'" in ended["message"]
    assert docker_client.containers.list(all=True, filters={"label": f"{JOB_ID_LABEL}={job_id}"}) == []


PROBE = textwrap.dedent(
    """
    import json, os, sys, time
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    print("NoNewPrivs", status["NoNewPrivs"].strip())
    try:
        open("/launchbay/inputs/planted.txt", "w")
        print("inputs writable")
    except OSError as exc:
        print("inputs write refused, errno", exc.errno)
    print("launchbay holds", sorted(os.listdir("/launchbay")))
    print("inputs hold", sorted(os.listdir("/launchbay/inputs")))
    other = sys.argv[1]
    print("other job's payload", "present" if os.path.exists(other) else "absent")
    try:
        open(other).read()
        print("other job's payload readable")
    except OSError as exc:
        print("other job's payload open failed, errno", exc.errno)
    print("processes seen", sorted(int(p) for p in os.listdir("/proc") if p.isdigit()))
    time.sleep(3)  # the test inspects this container while it runs
    """
)


def test_containers_run_without_new_privileges_with_read_only_inputs_and_no_way_to_another_jobs_payload(
    redis_conn, base_image, docker_client, fleet
):
    make_queue(redis_conn, "sec")
    fleet.start("isolation", queues=("sec",))
    secret = put_hostile_record(
        redis_conn,
        "sec",
        spec={"image": base_image, "command": ["sleep", "20"], "env": {}, "docker": {}},
        raw={"run_config": json.dumps({"api_token": "do-not-leak"})},
    )
    wait_for(lambda: state_of(redis_conn, secret) == "running", timeout_s=60, what=fleet.output())
    other_payload = fleet.state_dir("isolation") / "jobs" / secret / "inputs" / "run_config.json"
    assert other_payload.exists(), "the other job's payload is on the host, where the probe will look for it"

    probe = put_hostile_record(
        redis_conn, "sec", spec={"image": base_image, "command": ["python3", "-c", PROBE, str(other_payload)]}
    )
    security_opt = container_of(docker_client, probe).attrs["HostConfig"]["SecurityOpt"]
    wait_for(lambda: state_of(redis_conn, probe) == "finished", timeout_s=60, what=fleet.output())
    lines = log_lines(redis_conn, probe)

    assert security_opt == ["no-new-privileges"]
    assert lines[0] == "NoNewPrivs 1"
    assert lines[1] == "inputs write refused, errno 30"  # EROFS
    assert lines[2] == "launchbay holds ['inputs', 'output']"
    assert lines[3] == "inputs hold ['file_overrides.json', 'run_config.json']"
    assert lines[4:6] == ["other job's payload absent", "other job's payload open failed, errno 2"]
    assert len(json.loads(lines[6].removeprefix("processes seen "))) <= 3, "only its own processes (init, python)"
    assert not any("do-not-leak" in line for line in lines)
