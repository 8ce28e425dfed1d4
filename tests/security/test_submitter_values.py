"""Issue 13, findings 4, 8 and the request parts of 10: what a submitter's values can still get.

- 8: ``submitter_may_set`` allows options by value (``network: [none, bridge]``); the older list
  form allows any value except ``host``/``container:<name>`` for network, PID and IPC namespaces.
- 4: a near-zero CPU request is refused at enqueue, and a record that bypasses the client still
  gets a CPU limit (Docker's floor, 0.01 CPU), never ``NanoCpus=0`` (= unlimited).
- 10: a name or env name with a trailing newline is refused; NaN/infinity are refused alike in a
  spec, in ``--set`` and in the API; a mount target like ``//launchbay/inputs`` is the payload folder.
"""

from __future__ import annotations

import pytest
import yaml
from launchbay.agent.runtime import JOB_ID_LABEL
from launchbay.client import enqueue
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

from launchbay.errors import ValidationError

pytestmark = [pytest.mark.integration]


def _spec(tmp_path, **changes) -> str:
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({"name": "values", "image": "launchbay-base:test", "command": ["true"], **changes}))
    return str(path)


REFUSED = {
    # finding 8: the list form allows the option, never the host's namespace or another container's
    "network-host-by-name": ("by-name", {"docker": {"network": "host"}}, (), "shares the host's"),
    "pid-host-by-name": ("by-name", {"docker": {"pid_mode": "host"}}, (), "shares the host's"),
    "ipc-other-container-by-name": ("by-name", {"docker": {"ipc_mode": "container:launchbay-x"}}, (), "shares"),
    # finding 8: the mapping form allows exactly the values listed
    "network-host-by-value": ("by-value", {"docker": {"network": "host"}}, (), "value 'host' is not allowed"),
    "user-root-by-value": ("by-value", {"docker": {"user": "0:0"}}, (), "value '0:0' is not allowed"),
    "mount-outside-folder": (
        "by-value",
        {"docker": {"mounts": [{"source": "/data/../etc", "target": "/x"}]}},
        (),
        "value '/etc' is not allowed",
    ),
    "env-name-not-listed": (
        "by-value",
        {"docker": {"env": {"LD_PRELOAD": "/x.so"}}},
        (),
        "'LD_PRELOAD' is not allowed",
    ),
    # finding 4
    "cpus-near-zero": ("by-name", {}, ("--cpus", "1e-10"), "cpus: Input should be greater than or equal to 0.01"),
    # finding 10: a trailing newline is not part of a valid name
    "env-name-trailing-newline": ("by-name", {}, ("--env", "PATHX\n=1"), "is not a valid variable name"),
    "job-name-trailing-newline": ("by-name", {"name": "values\n"}, (), "job name 'values\\n' must be"),
    "constraint-trailing-newline": ("by-name", {}, ("--constraint", "zone\n=eu"), "constraint label 'zone\\n'"),
    # finding 10: NaN and infinity, the same refusal whichever way they come
    "nan-in-spec": ("by-name", {"config": {"lr": float("nan")}}, (), "config: lr is nan; JSON has no NaN"),
    "inf-in-spec": ("by-name", {"config": {"a": [float("inf")]}}, (), "config: a.0 is inf; JSON has no NaN"),
    "nan-in-set": ("by-name", {}, ("--set", "lr=.nan"), "overrides: lr is nan; JSON has no NaN"),
    "inf-in-file-set": ("by-name", {}, ("--file-set", "c.yaml:a=-.inf"), "c.yaml: a is -inf; JSON has no NaN"),
}


QUEUES = {
    "by-name": ["network", "pid_mode", "ipc_mode", "user"],
    "by-value": {"network": ["none", "bridge"], "user": ["1000:1000"], "mounts": ["/data"], "env": ["SEED"]},
}


@pytest.fixture
def queues(redis_conn):
    make_queue(redis_conn, "by-name", submitter_may_set=QUEUES["by-name"])
    return redis_conn


def _by_value(conn):
    make_queue(conn, "by-value", submitter_may_set=QUEUES["by-value"])


@pytest.mark.parametrize("case", list(REFUSED.values()), ids=list(REFUSED))
def test_a_value_the_queue_does_not_allow_is_refused_in_one_line_with_nothing_written(
    redis_url, queues, tmp_path, case
):
    queue, changes, args, message = case
    if queue == "by-value":
        _by_value(queues)
    before = redis_snapshot(queues)
    result = cli(redis_url, "enqueue", _spec(tmp_path, **changes), "-q", queue, *args)
    assert result.returncode == 2, result.stderr
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert message in result.stderr
    assert redis_snapshot(queues) == before


def test_allowed_values_are_accepted_and_the_api_refuses_nan_like_the_cli(redis_url, queues, tmp_path):
    _by_value(queues)
    listed = _spec(tmp_path, docker={"network": "none", "mounts": [{"source": "/data/sets", "target": "/sets"}]})
    assert cli(redis_url, "enqueue", listed, "-q", "by-value").returncode == 0
    assert cli(redis_url, "enqueue", _spec(tmp_path, docker={"network": "my-net"}), "-q", "by-name").returncode == 0
    spec = {"name": "values", "image": "launchbay-base:test"}
    with pytest.raises(ValidationError, match=r"overrides: a\.b is nan; JSON has no NaN"):
        enqueue(spec, "by-name", overrides={"a": {"b": float("nan")}}, conn=queues)


def test_the_old_list_form_reads_as_any_value_and_the_mapping_form_shows_its_values(redis_url, queues):
    _by_value(queues)
    shown = cli(redis_url, "queue", "show", "by-value", "--json")
    assert shown.returncode == 0, shown.stderr
    assert '"network": [' in shown.stdout and '"none"' in shown.stdout
    old = cli(redis_url, "queue", "show", "by-name", "--json")
    assert '"network": null' in old.stdout


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client)
    yield fleet
    fleet.close()


@pytest.mark.docker
def test_records_written_into_redis_with_host_values_or_no_cpu_floor_are_refused_and_payload_mounts_dropped(
    redis_conn, base_image, docker_client, fleet, tmp_path
):
    """Issue 23: what enqueue refuses (host values, a CPU request under its floor) is refused by the agent
    too when written straight into Redis; before, the agent ran such a job with the values dropped.
    Neither job gets a container. A mount over launchbay's payload folders (an allowed option, a
    harmful target) still runs with that mount dropped, and the job's log says so."""
    make_queue(redis_conn, "open", submitter_may_set=["network", "ipc_mode", "mounts"])
    docker = {
        "network": "host",
        "ipc_mode": "host",
        "mounts": [{"source": str(tmp_path), "target": "//launchbay/inputs", "read_only": False}],
    }
    spec = {"image": base_image, "command": ["sleep", "3"], "env": {}, "docker": docker}
    job_id = put_hostile_record(redis_conn, "open", spec=spec)
    tiny = put_hostile_record(redis_conn, "open", spec={**spec, "docker": {}})
    request = '{"cpus":1e-10,"memory_mib":0,"gpus":0,"gpu_model":"","gpu_memory_mib":0}'
    redis_conn.hset(f"launchbay:job:{tiny}", "request", request)
    shadow = put_hostile_record(redis_conn, "open", spec={**spec, "docker": {"mounts": docker["mounts"]}})
    fleet.start("values-agent", queues=("open",))

    mounts = container_of(docker_client, shadow).attrs["HostConfig"]["Mounts"]
    wait_for(lambda: state_of(redis_conn, shadow) == "finished", timeout_s=90, what=fleet.output())
    assert sorted(m["Target"] for m in mounts) == ["/launchbay/inputs", "/launchbay/output"]
    dropped = "\n".join(line for line in log_lines(redis_conn, shadow) if line.startswith("[launchbay] ignored"))
    assert "hide launchbay's payload folders" in dropped

    for job in (job_id, tiny):
        wait_for(lambda job=job: state_of(redis_conn, job) == "failed", timeout_s=90, what=fleet.output())
        assert docker_client.containers.list(all=True, filters={"label": f"{JOB_ID_LABEL}={job}"}) == []
    hostile, small = record(redis_conn, job_id), record(redis_conn, tiny)
    assert hostile["reason"] == small["reason"] == "refused"
    for option in ("network", "ipc_mode"):
        assert f"docker option {option!r} = 'host' is not allowed for submitters" in hostile["message"]
    assert "cpus: Input should be greater than or equal to 0.01" in small["message"]
