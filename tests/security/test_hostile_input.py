"""Hostile and malformed input, table-driven.

Refused at the door (``launchbay enqueue`` / ``queue apply``): one ``error:`` line on stderr, exit
code 2, no traceback, and Redis exactly as it was (nothing enqueued, nothing half-written).

Faults that only show when the job runs (a missing image, a command not in the image, a container
that dies at once, records written straight into Redis): a failed job with a clear reason, and the
agent goes on. Shell metacharacters reach the container as literal argv; a 5 MB payload travels by
file only and the SDK reads it.
"""

from __future__ import annotations

import json
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Tuple, Union

import pytest
import redis
import yaml
from conftest import RedisServer
from launchbay.queue_config import rq_bridge
from security_helpers import (
    SDK_MOUNT,
    AgentFleet,
    cli,
    log_lines,
    make_queue,
    put_hostile_record,
    record,
    record_inputs,
    redis_snapshot,
    run_agent_once,
    unique_path,
)

SPEC = {"name": "trainer", "image": "launchbay-base:test", "command": ["python3", "train.py"]}
HUGE = "9" * 400  # a float of it is infinity
BOMB = "a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]\n" for i in range(1, 9)
)


def spec_yaml(**changes) -> str:
    return yaml.safe_dump({**SPEC, **changes})


@dataclass(frozen=True)
class Refused:
    """One hostile request: the files it needs (name -> text or bytes), its arguments, and the error."""

    args: Tuple[str, ...]
    message: str
    files: Dict[str, Union[str, bytes]] = field(default_factory=dict)
    command: str = "enqueue"


def spec_case(spec_text: Union[str, bytes], message: str, *, name: str = "job.yaml") -> Refused:
    return Refused(args=(f"{{dir}}/{name}",), message=message, files={name: spec_text})


def flag_case(*args: str, message: str, files: Optional[Dict[str, str]] = None) -> Refused:
    return Refused(args=("{dir}/job.yaml", *args), message=message, files={"job.yaml": spec_yaml(), **(files or {})})


ENQUEUE_CASES = {
    # malformed YAML and JSON
    "spec-yaml-unclosed-list": spec_case("name: [trainer\nimage: x\n", "job.yaml: invalid YAML at line"),
    "spec-yaml-tab-indent": spec_case("name: t\n\timage: x\n", "job.yaml: invalid YAML at line 2"),
    "spec-json-truncated": spec_case('{"name": "t", "image":', "job.json: invalid JSON at line 1", name="job.json"),
    "spec-json-trailing-comma": spec_case('{"name": "t",}', "job.json: invalid JSON at line 1", name="job.json"),
    "spec-binary-garbage": spec_case(b"\xff\xfe\x00\x81garbage", "job.yaml: cannot read"),
    "spec-empty-file": spec_case("", "expected a mapping at the top level, got NoneType"),
    "spec-a-list": spec_case("- name\n- image\n", "expected a mapping at the top level, got list"),
    "spec-alias-bomb": spec_case(f"name: t\nimage: x\nconfig:\n{BOMB}".replace("\na", "\n  a"), "expands to more than"),
    "spec-refers-to-itself": spec_case("name: t\nimage: x\nconfig: &c {a: *c}\n", "nested deeper than 100 levels"),
    "spec-impossible-date": spec_case("name: t\nimage: x\nconfig: {when: 2024-13-45}\n", "month must be in 1..12"),
    "spec-missing-file": Refused(args=("{dir}/nowhere.yaml",), message="nowhere.yaml: no such file"),
    "spec-is-a-folder": Refused(args=("{dir}/folder.yaml",), message="cannot read", files={"folder.yaml/x": ""}),
    # wrong types and unknown fields
    "command-one-string": spec_case(spec_yaml(command="python train.py; rm -rf /"), "command must be a list"),
    "env-value-a-mapping": spec_case(spec_yaml(env={"A": {"b": 1}}), "env A must be a string, number or bool"),
    "cpus-a-word": spec_case(spec_yaml(resources={"cpus": "many"}), "resources.cpus: Input should be a valid number"),
    "name-a-number": spec_case(spec_yaml(name=123), "name: Input should be a valid string"),
    "max-runtime-a-list": spec_case(spec_yaml(max_runtime=[1]), "max_runtime must be a duration"),
    "unknown-top-level-field": spec_case(spec_yaml(colour="red"), "colour: unknown field"),
    "unknown-resource": spec_case(spec_yaml(resources={"tpus": 4}), "resources.tpus: unknown field"),
    "unknown-docker-option": spec_case(spec_yaml(docker={"cap_drop": ["ALL"]}), "docker.cap_drop: unknown field"),
    "memory-given-twice": spec_case(spec_yaml(resources={"memory": "1GiB", "memory_mib": 5}), "not both"),
    # negative, absurd, unparseable amounts
    "cpus-negative": flag_case("--cpus", "-1", message="cpus: Input should be greater than 0"),
    "cpus-absurd": flag_case("--cpus", "1e9", message="cpus: Input should be less than or equal to 4096"),
    "cpus-not-a-number": flag_case("--cpus", "nan", message="cpus: Input should be"),
    "cpus-a-word-flag": flag_case("--cpus", "lots", message="Invalid value for '--cpus'"),
    "gpus-absurd": flag_case("--gpus", "100000", message="gpus: Input should be less than or equal to 64"),
    "gpus-negative-count": flag_case("--gpus", "A100:-2", message="must be a count (2), a model (A100)"),
    "memory-zero": flag_case("--memory", "0GiB", message="memory_mib: Input should be greater than 0"),
    "memory-over-queue-limit": flag_case("--memory", "64GiB", message="queue 'sec' allows at most 16GiB"),
    "memory-no-unit": flag_case("--memory", "1024", message="has no unit"),
    "memory-unknown-unit": flag_case("--memory", "16parsecs", message="has an unknown unit"),
    "memory-infinite": flag_case("--memory", f"{HUGE}GiB", message="is too large"),
    "runtime-infinite": flag_case("--max-runtime", f"{HUGE}s", message="is too long"),
    "runtime-negative": flag_case("--max-runtime", "-5s", message="is not a duration"),
    "runtime-over-queue-limit": flag_case("--max-runtime", "2d", message="queue 'sec' allows at most 1h"),
    # queues
    "unknown-queue": Refused(
        args=("{dir}/job.yaml", "-q", "nope"),
        message="unknown queue 'nope'; known queues: sec",
        files={"job.yaml": spec_yaml()},
    ),
    "queue-name-a-path": Refused(
        args=("{dir}/job.yaml", "-q", "../../etc/passwd"), message="unknown queue", files={"job.yaml": spec_yaml()}
    ),
    # override keys against what the job's last run recorded
    "override-excluded-key": flag_case("--set", "trainer.seed=1", message="is excluded by prefix 'trainer.seed'"),
    "override-unknown-key": flag_case("--set", "trainer.nonexistent=1", message="is unknown to the job"),
    "override-outside-includes": flag_case("--set", "data.path=x", message="is under no include prefix"),
    "override-wrong-type": flag_case("--set", "trainer.epochs=abc", message="expected int, got str"),
    "override-schema-violation": flag_case("--set", "trainer.learning_rate=5", message="greater than the maximum of 1"),
    "override-key-with-dot": flag_case("--set", r"trainer.learning\.rate=1", message="is unknown to the job"),
    "override-unicode-key": flag_case("--set", "trainer.lérning_rät=1", message="is unknown to the job"),
    "override-empty-key-part": flag_case("--set", "trainer..lr=1", message="empty key between dots"),
    "override-empty-key": flag_case("--set", "=1", message="must look like KEY=VALUE"),
    "override-no-equals": flag_case("--set", "trainer.lr", message="must look like KEY=VALUE"),
    "override-alias-bomb": flag_case("--set", "trainer.x=&a [*a]", message="nested deeper than 100 levels"),
    "override-file-a-list": flag_case(
        "--config", "{dir}/over.yaml", message="expected a mapping of keys to values", files={"over.yaml": "- 1\n- 2\n"}
    ),
    "override-file-too-deep": flag_case(
        "--config",
        "{dir}/deep.json",
        message="nested deeper than 100 levels",
        files={"deep.json": "[" * 1000 + "]" * 1000},
    ),
    # config-file paths
    "file-path-absolute": flag_case("--file-set", "/etc/cron.d/x.yaml:a=1", message="must be relative to the job"),
    "file-path-dot-dot": flag_case("--file-set", "../../x.yaml:a=1", message="must be relative to the job"),
    "file-path-other-extension": flag_case("--file-set", "config.sh:model.depth=1", message="not one the job manages"),
    "file-key-excluded": flag_case("--file-set", "config.yaml:secrets.token=x", message="excluded by prefix 'secrets'"),
    "file-config-missing-file": flag_case("--file-config", "config.yaml={dir}/missing.yaml", message="no such file"),
    # environment variable names
    "env-name-leading-digit": flag_case("--env", "1BAD=x", message="is not a valid variable name"),
    "env-name-with-dash": flag_case("--env", "BAD-NAME=x", message="is not a valid variable name"),
    "env-name-with-space": flag_case("--env", "A B=x", message="is not a valid variable name"),
    "env-name-unicode": flag_case("--env", "ÉTÉ=x", message="is not a valid variable name"),
    "env-name-empty": flag_case("--env", "=x", message="must look like NAME=VALUE"),
    "env-name-empty-in-spec": spec_case(spec_yaml(env={"": "x"}), "is not a valid variable name"),
    # other fields and options
    "image-looks-like-a-flag": Refused(
        args=("--image", "--privileged", "--", "true"), message="is not an image reference"
    ),
    "image-with-spaces": Refused(args=("--image", "a b", "--", "true"), message="is not an image reference"),
    "job-name-a-path": Refused(
        args=("--image", "x", "--name", "../../etc", "--", "true"), message="job name '../../etc'"
    ),
    "constraint-label-with-space": flag_case("--constraint", "zone eu=1", message="constraint label 'zone eu'"),
    "priority-unknown": flag_case("--priority", "urgent", message="Invalid value for '--priority'"),
    "option-unknown": flag_case("--privileged", message="No such option '--privileged'"),
    "docker-privileged-in-spec": spec_case(spec_yaml(docker={"privileged": True}), "may not be set by submitters"),
    "workdir-relative": spec_case(spec_yaml(workdir="../.."), "workdir '../..' must be an absolute path"),
}

QUEUE_APPLY_CASES = {
    "queue-yaml-malformed": Refused(
        args=("{dir}/q.yaml",), message="invalid YAML", files={"q.yaml": "name: [q\n"}, command="queue apply"
    ),
    "queue-unknown-field": Refused(
        args=("{dir}/q.yaml",),
        message="sumbitter_may_set: unknown field",
        files={"q.yaml": "name: q\nsumbitter_may_set: [privileged]\n"},
        command="queue apply",
    ),
    "queue-unknown-docker-option-allowed": Refused(
        args=("{dir}/q.yaml",),
        message="unknown docker option 'everything'",
        files={"q.yaml": "name: q\nsubmitter_may_set: [everything]\n"},
        command="queue apply",
    ),
    "queue-relative-mount": Refused(
        args=("{dir}/q.yaml",),
        message="must be absolute",
        files={"q.yaml": "name: q\ndocker: {mounts: [{source: data, target: /d}]}\n"},
        command="queue apply",
    ),
    "queue-mount-with-colon": Refused(
        args=("{dir}/q.yaml",),
        message="contain no ':'",
        files={"q.yaml": "name: q\ndocker: {mounts: [{source: '/a:/etc', target: /d}]}\n"},
        command="queue apply",
    ),
    "queue-name-a-path": Refused(
        args=("{dir}/q.yaml",),
        message="queue name '../x' must be",
        files={"q.yaml": "name: ../x\n"},
        command="queue apply",
    ),
    "queue-negative-limit": Refused(
        args=("{dir}/q.yaml",),
        message="limits.cpus: Input should be greater than 0",
        files={"q.yaml": "name: q\nlimits: {cpus: -4}\n"},
        command="queue apply",
    ),
    "queue-alias-bomb": Refused(
        args=("{dir}/q.yaml",),
        message="expands to more than",
        files={"q.yaml": f"name: q\ndescription: x\nx-bomb:\n{BOMB}".replace("\na", "\n  a")},
        command="queue apply",
    ),
}


def _materialize(case: Refused, folder: Path) -> List[str]:
    for name, content in case.files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    args = [arg.replace("{dir}", str(folder)) for arg in case.args]
    if case.command == "enqueue" and "-q" not in args:
        args = [*args[:1], "-q", "sec", *args[1:]] if not args[0].startswith("--") else ["-q", "sec", *args]
    return [*case.command.split(), *args]


@pytest.fixture
def hostile_setup(redis_conn):
    make_queue(
        redis_conn,
        "sec",
        limits={"cpus": 8, "memory": "16GiB", "gpus": 2, "max_runtime": "1h"},
        submitter_may_set=["shm_size"],
    )
    record_inputs(redis_conn)
    return redis_conn


@pytest.mark.parametrize(
    "case",
    list(ENQUEUE_CASES.values()) + list(QUEUE_APPLY_CASES.values()),
    ids=list(ENQUEUE_CASES) + list(QUEUE_APPLY_CASES),
)
def test_hostile_input_is_refused_in_one_line_with_exit_2_and_nothing_written(redis_url, hostile_setup, tmp_path, case):
    args = _materialize(case, tmp_path)
    before = redis_snapshot(hostile_setup)

    result = cli(redis_url, *args)

    assert result.returncode == 2, (args, result.stdout, result.stderr)
    assert result.stderr.startswith("error: ") and result.stderr.count("\n") == 1, result.stderr
    assert case.message in result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert redis_snapshot(hostile_setup) == before
    assert rq_bridge.rq_queue(hostile_setup, "sec").count == 0


def test_a_wrong_redis_password_is_refused_in_one_line_with_exit_2(tmp_path, redis_server):
    server = RedisServer(tmp_path / "pw", password="the-right-one").start()
    try:
        result = cli(f"redis://:not-it@127.0.0.1:{server.port}/0", "enqueue", "--image", "x", "-q", "sec", "--", "true")
        assert result.returncode == 2
        assert result.stderr.startswith(
            f"error: Redis at redis://:***@127.0.0.1:{server.port}/0 refused the credentials"
        )
        assert "not-it" not in result.stderr and result.stderr.count("\n") == 1
        assert redis.Redis(port=server.port, password="the-right-one").dbsize() == 0
    finally:
        server.stop()


# -- faults that show when the job runs ----------------------------------------------------------------


@dataclass(frozen=True)
class RunFault:
    args: Tuple[str, ...]
    state: str
    reason: Optional[str]
    message: str


RUN_FAULTS = {
    "image-that-does-not-exist": RunFault(
        ("--image", "launchbay-test/no-such-image:never", "--", "true"),
        "failed",
        "image_pull_failed",
        "cannot pull image launchbay-test/no-such-image:never",
    ),
    "command-not-in-the-image": RunFault(
        ("--", "no-such-command", "--flag"),
        "failed",
        "container_failed",
        "exec no-such-command failed: No such file or directory",
    ),
    "command-is-a-folder": RunFault(
        ("--", "/etc"), "failed", "container_failed", "exec /etc failed: Permission denied"
    ),
    "exits-at-once-with-an-error": RunFault(
        ("--", "sh", "-c", "echo bye; exit 3"), "failed", "exit_code", "exited with code 3; last output: bye"
    ),
    "exits-at-once-cleanly": RunFault(("--", "true"), "finished", None, ""),
    "kills-itself": RunFault(("--", "sh", "-c", "kill -9 $$"), "failed", "exit_code", "exited with code 137"),
}

HOSTILE_RECORDS = {
    "spec-not-json": ({"spec": "{not json"}, "the job's record is malformed (not readable: spec)"),
    "command-a-string": (
        {"spec": json.dumps({"image": "launchbay-base:test", "command": "rm -rf /"})},
        "spec.command must be a list of strings",
    ),
    "env-name-with-equals": (
        {"spec": json.dumps({"image": "x", "env": {"CUDA_VISIBLE_DEVICES=0,1,2,3,#": "1"}})},
        "spec.env must map valid variable names",
    ),
    "run-config-a-list": ({"run_config": "[1, 2]"}, "run_config must be a JSON object"),
    "spec-null": ({"spec": "null"}, "spec.image must be an image name"),
}


@pytest.fixture(scope="module")
def ran(tmp_path_factory, redis_server, docker_client, base_image):
    """Every run-time case enqueued (through the CLI) or written (straight into Redis), then one
    ``agent --once`` run over all of them, on a Redis of this module's own."""
    folder = tmp_path_factory.mktemp("hostile-run")
    server = RedisServer(folder / "redis").start()
    conn = redis.Redis.from_url(server.url)
    fleet = AgentFleet(server.url, folder, docker_client)
    try:
        make_queue(conn, "sec", docker={"mounts": [SDK_MOUNT], "env": {"PYTHONPATH": "/opt/launchbay-sdk"}})
        jobs = {name: _enqueue(server.url, base_image, fault.args) for name, fault in RUN_FAULTS.items()}
        for name, (fields, _) in HOSTILE_RECORDS.items():
            spec = {"image": base_image, "command": ["true"], "env": {}, "docker": {}}
            jobs[name] = put_hostile_record(conn, "sec", spec=spec, raw=fields)
        negative = json.dumps({"cpus": -1000, "memory_mib": -1, "gpus": 0})
        jobs["negative-cpus"] = put_hostile_record(conn, "sec", spec={"image": base_image}, raw={"request": negative})
        jobs["metacharacters"], marker = _metacharacter_job(server.url, base_image)
        jobs["five-megabytes"] = _five_megabyte_job(server.url, base_image, folder)
        agent_log = run_agent_once(fleet, "hostile-agent", timeout_s=240)
        yield conn, jobs, agent_log, marker
    finally:
        fleet.close()
        conn.close()
        server.stop()


def _enqueue(url: str, image: str, args: Tuple[str, ...]) -> str:
    if "--image" not in args:
        args = ("--image", image, *args)
    result = cli(url, "enqueue", "-q", "sec", *args)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


@pytest.mark.parametrize("name", list(RUN_FAULTS))
def test_a_job_that_fails_at_run_time_fails_with_a_clear_reason(ran, name):
    conn, jobs, _, _ = ran
    fault = RUN_FAULTS[name]
    ended = record(conn, jobs[name])
    assert (ended["state"], ended.get("reason")) == (fault.state, fault.reason), ended
    assert fault.message in (ended.get("message") or "")


@pytest.mark.parametrize("name", list(HOSTILE_RECORDS))
def test_a_malformed_record_written_behind_the_clients_back_fails_clearly_and_the_agent_goes_on(ran, name):
    conn, jobs, agent_log, _ = ran
    ended = record(conn, jobs[name])
    assert (ended["state"], ended["reason"]) == ("failed", "container_failed")
    assert HOSTILE_RECORDS[name][1] in ended["message"]
    assert "Traceback" not in agent_log


def test_a_record_asking_for_negative_resources_is_never_claimed(ran):
    conn, jobs, agent_log, _ = ran
    assert record(conn, jobs["negative-cpus"])["state"] == "queued"
    assert agent_log.count(f"job {jobs['negative-cpus']} has an unreadable record") == 1


# -- shell metacharacters and a 5 MB payload ---------------------------------------------------------

METACHARACTERS = ("$(touch {m})", "; touch {m};", "`touch {m}`", "&& touch {m}", "| touch {m}", "' \" \\ > {m}")
SHOW_ARGS = (
    "import json, os, sys; print(json.dumps(sys.argv[1:])); print('env', os.environ['HOSTILE']); "
    "print('payload', open('/launchbay/inputs/run_config.json').read()); "
    "print('marker in container', os.path.exists(sys.argv[-1]))"
)


def _metacharacter_job(url: str, image: str) -> Tuple[str, Path]:
    marker = unique_path("launchbay-pwned")
    argv = [m.format(m=marker) for m in METACHARACTERS]
    result = cli(
        url,
        "enqueue",
        "-q",
        "sec",
        "--image",
        image,
        "--env",
        f"HOSTILE=$(touch {marker}); `id`",
        "--set",
        f"note=$(touch {marker}); rm -rf /",
        "--",
        "python3",
        "-c",
        SHOW_ARGS,
        *argv,
        str(marker),
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip(), marker


def test_shell_metacharacters_reach_the_container_as_literal_arguments_and_run_nowhere(ran):
    conn, jobs, _, marker = ran
    lines = log_lines(conn, jobs["metacharacters"])
    assert record(conn, jobs["metacharacters"])["state"] == "finished", lines
    assert json.loads(lines[0]) == [m.format(m=marker) for m in METACHARACTERS] + [str(marker)]
    assert lines[1] == f"env $(touch {marker}); `id`"
    assert json.loads(lines[2].removeprefix("payload ")) == {"note": f"$(touch {marker}); rm -rf /"}
    assert lines[3] == "marker in container False"
    assert not marker.exists(), "nothing ran on the host"
    assert shlex.quote(str(marker)) == str(marker)  # the marker itself needs no quoting: the test is fair


FIVE_MB = 5 * 1024 * 1024
READ_BY_SDK = (
    "import os; from launchbay.sdk.payload import read_run_config; config = read_run_config(); "
    "print('env has it', 'LAUNCHBAY_RUN_CONFIG' in os.environ); "
    "print('file bytes', os.path.getsize('/launchbay/inputs/run_config.json')); "
    "print('sdk read', len(config['blob']), config['blob'][:5], config['tail'])"
)


def _five_megabyte_job(url: str, image: str, folder: Path) -> str:
    big = folder / "big.json"
    big.write_text(json.dumps({"blob": "x" * FIVE_MB, "tail": "end"}))
    result = cli(
        url, "enqueue", "-q", "sec", "--image", image, "--config", str(big), "--", "python3", "-c", READ_BY_SDK
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


def test_a_5_mb_override_payload_goes_by_file_not_env_and_the_sdk_reads_it(ran):
    conn, jobs, _, _ = ran
    lines = log_lines(conn, jobs["five-megabytes"])
    assert record(conn, jobs["five-megabytes"])["state"] == "finished", lines
    # Too big for W&B's env contract as well: the agent leaves it out and says so first.
    assert lines[0].startswith("[launchbay] W&B env: left out, the overrides take "), lines[0]
    lines = lines[1:]
    assert lines[0] == "env has it False"
    assert int(lines[1].split()[-1]) > FIVE_MB
    assert lines[2] == f"sdk read {FIVE_MB} xxxxx end"
