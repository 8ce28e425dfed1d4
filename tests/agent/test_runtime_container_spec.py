"""The container the agent asks Docker for, built without Docker: GPUs, limits, payload, security, options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from docker.types import DeviceRequest, Mount
from launchbay.agent.container_spec import build_container_spec, gpu_settings
from launchbay.agent.ledger import LedgerEntry
from launchbay.agent.payload_dir import ENV_VALUE_LIMIT_BYTES, prepare_payload, read_outputs
from launchbay.queue_config.job import JobRecord
from launchbay.queue_config.models import QueueConfig
from launchbay.sdk.payload import (
    ENV_FILE_OVERRIDES,
    ENV_GPUS,
    ENV_INPUTS_DIR,
    ENV_JOB_ID,
    ENV_OUTPUT_DIR,
    ENV_QUEUE,
    ENV_RUN_CONFIG,
    FILE_OVERRIDES_FILE,
    INPUTS_MOUNT,
    OUTPUT_MOUNT,
    RUN_CONFIG_FILE,
)


def no_uuid(gpu_id: str) -> None:
    return None


def allocation(*, gpus=(), cpus=0.0, memory_mib=0) -> LedgerEntry:
    return LedgerEntry("job-1", "gpu", cpus, memory_mib, tuple(gpus), claimed_at=0.0, max_runtime_s=None)


def record(**spec) -> dict:
    base = {"image": "python:3.12-slim", "command": ["python", "train.py"], "workdir": None, "env": {}, "docker": {}}
    return {
        "id": "job-1",
        "name": "train",
        "spec": {**base, **spec},
        "run_config": {"lr": 0.1},
        "file_overrides": {"conf/model.yaml": {"depth": 4}},
    }


@pytest.fixture
def payload(tmp_path):
    return prepare_payload(tmp_path, "job-1", {"lr": 0.1}, {"conf/model.yaml": {"depth": 4}})


def build(rec, queue, alloc, payload, warnings=None, gpu_uuid_for=no_uuid):
    return build_container_spec(
        JobRecord.from_fields(alloc.job_id, rec),
        queue,
        alloc,
        agent_id="agent-7",
        payload=payload,
        gpu_uuid_for=gpu_uuid_for,
        warn=(warnings.append if warnings is not None else lambda _: None),
    )


# -- GPUs ------------------------------------------------------------------------------------------


def test_two_gpus_become_one_device_request_with_their_ids():
    env, kwargs = gpu_settings(("1", "3"), "device_request", no_uuid)

    assert kwargs == {"device_requests": [DeviceRequest(device_ids=["1", "3"], capabilities=[["gpu"]])]}
    assert env == {ENV_GPUS: "1,3"}


def test_device_requests_name_gpus_by_uuid_when_the_inventory_knows_it():
    uuids = {"1": "GPU-aaaa", "3": "GPU-cccc"}

    _, kwargs = gpu_settings(("1", "3"), "device_request", uuids.get)

    assert kwargs["device_requests"][0]["DeviceIDs"] == ["GPU-aaaa", "GPU-cccc"]


def test_env_only_mode_sets_the_visible_devices_and_no_runtime_or_device_request():
    env, kwargs = gpu_settings(("1", "3"), "env_only", {"1": "GPU-a"}.get)

    assert kwargs == {}
    assert env == {
        ENV_GPUS: "1,3",
        "CUDA_VISIBLE_DEVICES": "1,3",
        "NVIDIA_VISIBLE_DEVICES": "1,3",
        "CUDA_DEVICE_ORDER": "PCI_BUS_ID",
    }


def test_nvidia_runtime_env_mode_uses_the_nvidia_runtime_and_its_env_var():
    env, kwargs = gpu_settings(("0",), "nvidia_runtime_env", no_uuid)

    assert kwargs == {"runtime": "nvidia"}
    assert env == {ENV_GPUS: "0", "NVIDIA_VISIBLE_DEVICES": "0"}


@pytest.mark.parametrize("mode", ["device_request", "nvidia_runtime_env", "env_only"])
def test_a_job_without_gpus_sees_none_in_every_mode(mode):
    env, kwargs = gpu_settings((), mode, no_uuid)

    assert kwargs == {}
    assert env == {ENV_GPUS: "", "CUDA_VISIBLE_DEVICES": "", "NVIDIA_VISIBLE_DEVICES": "void"}


def test_the_queue_gpu_mode_reaches_the_container(payload):
    queue = QueueConfig(name="gpu", docker={"gpu_mode": "env_only"})

    spec = build(record(), queue, allocation(gpus=("2",)), payload)

    assert "device_requests" not in spec
    assert spec["environment"]["CUDA_VISIBLE_DEVICES"] == "2"


def test_job_env_cannot_widen_the_gpus_it_sees(payload):
    rec = record(env={"CUDA_VISIBLE_DEVICES": "0,1,2,3", "NVIDIA_VISIBLE_DEVICES": "all"})

    spec = build(rec, QueueConfig(name="gpu"), allocation(), payload)

    assert spec["environment"]["CUDA_VISIBLE_DEVICES"] == ""
    assert spec["environment"]["NVIDIA_VISIBLE_DEVICES"] == "void"


# -- the whole spec ----------------------------------------------------------------------------------


def test_a_plain_job_gets_secure_defaults_labels_and_its_argv(payload):
    spec = build(record(workdir="/src"), QueueConfig(name="gpu"), allocation(), payload)

    assert spec["image"] == "python:3.12-slim"
    assert spec["command"] == ["python", "train.py"]
    assert spec["working_dir"] == "/src"
    assert spec["name"] == "launchbay-job-1"
    assert spec["init"] is True
    assert spec["security_opt"] == ["no-new-privileges"]
    assert spec["auto_remove"] is False
    assert spec["labels"] == {
        "launchbay.job_id": "job-1",
        "launchbay.agent_id": "agent-7",
        "launchbay.queue": "gpu",
        "launchbay.managed": "1",
    }
    for risky in ("privileged", "network_mode", "cap_add", "devices", "pid_mode", "ipc_mode", "runtime", "user"):
        assert risky not in spec, risky


def test_a_job_without_command_keeps_the_image_default(payload):
    spec = build(record(command=None), QueueConfig(name="gpu"), allocation(), payload)

    assert "command" not in spec


def test_cpu_and_memory_requests_become_hard_limits_without_swap(payload):
    spec = build(record(), QueueConfig(name="gpu"), allocation(cpus=1.5, memory_mib=512), payload)

    assert spec["nano_cpus"] == 1_500_000_000
    assert spec["mem_limit"] == 512 * 1024 * 1024
    assert spec["memswap_limit"] == spec["mem_limit"]


def test_an_empty_request_sets_no_limits(payload):
    spec = build(record(), QueueConfig(name="gpu"), allocation(), payload)

    assert "nano_cpus" not in spec and "mem_limit" not in spec and "memswap_limit" not in spec


def test_payload_is_mounted_inputs_read_only_and_output_writable(payload):
    spec = build(record(), QueueConfig(name="gpu"), allocation(), payload)

    assert spec["mounts"][:2] == [
        Mount(target=INPUTS_MOUNT, source=str(payload.inputs_dir), type="bind", read_only=True),
        Mount(target=OUTPUT_MOUNT, source=str(payload.output_dir), type="bind", read_only=False),
    ]
    env = spec["environment"]
    assert env[ENV_INPUTS_DIR] == INPUTS_MOUNT and env[ENV_OUTPUT_DIR] == OUTPUT_MOUNT
    assert env[ENV_JOB_ID] == "job-1" and env[ENV_QUEUE] == "gpu"
    assert json.loads(env[ENV_RUN_CONFIG]) == {"lr": 0.1}
    assert json.loads(env[ENV_FILE_OVERRIDES]) == {"conf/model.yaml": {"depth": 4}}


def test_env_layers_queue_then_job_then_launchbay(payload):
    queue = QueueConfig(name="gpu", docker={"env": {"A": "queue", "B": "queue", "HF_HOME": "/cache"}})
    rec = record(env={"B": "job", "LAUNCHBAY_JOB_ID": "spoofed", "LAUNCHBAY_RUN_CONFIG": "{}"})

    env = build(rec, queue, allocation(), payload)["environment"]

    assert env["A"] == "queue" and env["HF_HOME"] == "/cache"
    assert env["B"] == "job"
    assert env[ENV_JOB_ID] == "job-1"
    assert json.loads(env[ENV_RUN_CONFIG]) == {"lr": 0.1}


def test_queue_docker_options_are_applied(payload):
    queue = QueueConfig(
        name="gpu",
        docker={
            "shm_size": "1GiB",
            "network": "none",
            "ipc_mode": "host",
            "user": "1000:1000",
            "mounts": [{"source": "/data", "target": "/data"}],
        },
    )

    spec = build(record(), queue, allocation(), payload)

    assert spec["shm_size"] == 1 << 30
    assert spec["network_mode"] == "none"
    assert spec["ipc_mode"] == "host"
    assert spec["user"] == "1000:1000"
    assert spec["mounts"][2] == Mount(target="/data", source="/data", type="bind", read_only=True)


def test_submitter_options_the_queue_does_not_allow_are_dropped_with_a_warning(payload):
    queue = QueueConfig(name="gpu", submitter_may_set=["shm_size"])
    rec = record(
        docker={
            "shm_size_mib": 256,
            "privileged": True,
            "network": "host",
            "cap_add": ["SYS_ADMIN"],
            "mounts": [{"source": "/", "target": "/host", "read_only": False}],
        }
    )
    warnings: list = []

    spec = build(rec, queue, allocation(), payload, warnings)

    assert spec["shm_size"] == 256 << 20
    assert "privileged" not in spec and "network_mode" not in spec and "cap_add" not in spec
    assert [m["Target"] for m in spec["mounts"]] == [INPUTS_MOUNT, OUTPUT_MOUNT]
    assert len(warnings) == 4
    assert all("does not let submitters set it" in w for w in warnings)
    assert any("'privileged'" in w for w in warnings)


def test_allowed_submitter_lists_join_the_queue_lists_and_env_merges(payload):
    queue = QueueConfig(
        name="gpu",
        docker={"cap_add": ["SYS_PTRACE"], "env": {"A": "queue"}},
        submitter_may_set=["cap_add", "env"],
    )
    rec = record(docker={"cap_add": ["NET_ADMIN", "SYS_PTRACE"], "env": {"A": "submitter", "B": "x"}})

    spec = build(rec, queue, allocation(), payload)

    assert spec["cap_add"] == ["SYS_PTRACE", "NET_ADMIN"]
    assert spec["environment"]["A"] == "submitter" and spec["environment"]["B"] == "x"


def test_a_mount_over_the_payload_folders_is_refused(payload):
    queue = QueueConfig(name="gpu", docker={"mounts": [{"source": "/tmp", "target": "/launchbay/inputs"}]})
    warnings: list = []

    spec = build(record(), queue, allocation(), payload, warnings)

    assert [m["Target"] for m in spec["mounts"]] == [INPUTS_MOUNT, OUTPUT_MOUNT]
    assert "hide launchbay's payload folders" in warnings[0]


# -- the payload folder ------------------------------------------------------------------------------


def test_payload_files_are_written_with_their_modes(payload):
    assert json.loads((payload.inputs_dir / RUN_CONFIG_FILE).read_text()) == {"lr": 0.1}
    assert json.loads((payload.inputs_dir / FILE_OVERRIDES_FILE).read_text()) == {"conf/model.yaml": {"depth": 4}}
    assert payload.inputs_dir.stat().st_mode & 0o777 == 0o755
    assert (payload.inputs_dir / RUN_CONFIG_FILE).stat().st_mode & 0o777 == 0o644
    assert payload.output_dir.stat().st_mode & 0o777 == 0o777


def test_a_payload_over_64_kib_travels_by_file_only(tmp_path):
    big = {"blob": "x" * (ENV_VALUE_LIMIT_BYTES + 1)}

    paths = prepare_payload(tmp_path, "job-2", big, {})

    assert ENV_RUN_CONFIG not in paths.env
    assert json.loads(paths.env[ENV_FILE_OVERRIDES]) == {}
    assert json.loads((paths.inputs_dir / RUN_CONFIG_FILE).read_text()) == big


def test_a_job_id_that_is_not_a_plain_name_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot name a folder"):
        prepare_payload(tmp_path, "../etc", {}, {})


def test_output_files_that_are_symlinks_or_not_objects_are_ignored(payload):
    (payload.output_dir / "inputs.json").symlink_to(Path("/etc/hostname"))
    (payload.output_dir / "config.json").write_text("[1, 2]")

    outputs = read_outputs(payload)

    assert outputs.inputs is None and outputs.effective_config is None
    assert len(outputs.problems) == 2
