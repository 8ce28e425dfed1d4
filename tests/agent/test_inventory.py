"""Host inventory: nvidia-smi's formats and failures, psutil and cgroup limits (agent/inventory.py)."""

from __future__ import annotations

import logging
import stat
import subprocess

import pytest
from launchbay.agent.inventory import (
    BASE_FIELDS,
    QUERY_FIELDS,
    GpuQueryError,
    InventoryProbe,
    capacity_json,
    cgroup_cpu_limit,
    cgroup_memory_limit_mib,
    host_cpus,
    host_memory_mib,
    parse_gpu_csv,
    query_gpus,
)
from test_control_support import FAKE_NVIDIA_SMI, agent_settings


def test_the_stand_in_reports_four_h200s_as_the_real_capture_does(monkeypatch):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h200x4")
    gpus = query_gpus(str(FAKE_NVIDIA_SMI))
    assert [g.id for g in gpus] == ["0", "1", "2", "3"]
    assert {g.name for g in gpus} == {"NVIDIA H200-141C"}
    assert gpus[0].uuid == "GPU-78aaaccb-3af1-11b3-b1f8-3828c251d9f2"
    assert gpus[1].memory_total_mib == 144384 and gpus[1].memory_used_mib == 131470
    assert gpus[1].memory_free_mib == 12914 and gpus[1].utilization_pct == 99


@pytest.mark.parametrize(
    ("mode", "missing"),
    [
        ("na", ["utilization_pct"]),
        ("plain-na", ["memory_used_mib", "memory_free_mib", "utilization_pct"]),
        ("not-supported", ["memory_used_mib", "memory_free_mib", "utilization_pct"]),
    ],
)
def test_values_nvidia_smi_cannot_give_become_none(monkeypatch, mode, missing):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", mode)
    (gpu,) = query_gpus(str(FAKE_NVIDIA_SMI))
    for name in missing:
        assert getattr(gpu, name) is None, name
    assert gpu.memory_total_mib is not None and gpu.uuid.startswith("GPU-")


def test_parsing_is_strict_about_the_shape_of_each_line():
    with pytest.raises(GpuQueryError, match="has 2 fields, expected 7"):
        parse_gpu_csv("NVIDIA GeForce GTX 1050 Ti, 2131\n", BASE_FIELDS)
    with pytest.raises(GpuQueryError, match=r"memory\.total is 'lots'"):
        parse_gpu_csv("0, GPU-1, Tesla T4, lots, 6, 15354, 0\n", BASE_FIELDS)
    with pytest.raises(GpuQueryError, match="index is 'x'"):
        parse_gpu_csv("x, GPU-1, Tesla T4, 15360, 6, 15354, 0\n", BASE_FIELDS)
    assert parse_gpu_csv("") == []


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("driver-not-loaded", "exited 9 (NVIDIA driver is not loaded): NVIDIA-SMI has failed"),
        ("version-mismatch", "exited 18 (driver/library version mismatch): Failed to initialize NVML"),
        ("garbage", f"has 1 fields, expected {len(QUERY_FIELDS)}"),
    ],
)
def test_a_failing_nvidia_smi_is_one_warning_and_no_gpus(monkeypatch, caplog, tmp_path, mode, message):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", mode)
    probe = InventoryProbe(agent_settings(tmp_path))
    with caplog.at_level(logging.WARNING, logger="launchbay.agent.inventory"):
        inventories = [probe.read() for _ in range(3)]
    assert all(inv.gpus == () for inv in inventories)
    assert message in inventories[0].gpu_problem
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 1, "one warning per distinct failure, not one per refresh"
    assert message in warnings[0]


def test_a_new_kind_of_failure_warns_again_and_recovery_brings_the_gpus_back(monkeypatch, caplog, tmp_path):
    probe = InventoryProbe(agent_settings(tmp_path))
    with caplog.at_level(logging.WARNING, logger="launchbay.agent.inventory"):
        monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "driver-not-loaded")
        probe.read()
        monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "version-mismatch")
        probe.read()
        monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h200x4")
        assert len(probe.read().gpus) == 4
    assert len(caplog.records) == 2


def test_a_hanging_nvidia_smi_times_out_into_no_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "hang")
    inventory = InventoryProbe(agent_settings(tmp_path), timeout_s=0.3).read()
    assert inventory.gpus == ()
    assert "did not answer within 0.3s" in inventory.gpu_problem


def test_no_nvidia_smi_means_a_cpu_host_without_a_warning(caplog, tmp_path):
    settings = agent_settings(tmp_path, nvidia_smi=str(tmp_path / "no-such-nvidia-smi"))
    with caplog.at_level(logging.WARNING):
        inventory = InventoryProbe(settings).read()
    assert inventory.gpus == () and inventory.gpu_problem is None
    assert caplog.records == []


def test_gpus_option_limits_the_agent_to_the_named_gpus(monkeypatch, tmp_path):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h200x4")
    by_index = InventoryProbe(agent_settings(tmp_path, gpus=["3", "1"])).read()
    assert [g.id for g in by_index.gpus] == ["1", "3"]
    by_uuid = InventoryProbe(agent_settings(tmp_path, gpus=["GPU-7eb48ff1-3af1-11b3-9b3a-93ee06a0ff76"])).read()
    assert [g.id for g in by_uuid.gpus] == ["2"]


def test_a_gpu_that_disappears_leaves_the_inventory_on_the_next_read(monkeypatch, tmp_path):
    listing = tmp_path / "gpus.csv"
    header = f"# fields: {', '.join(QUERY_FIELDS)}\n"
    lines = [
        "0, GPU-a, NVIDIA A100-SXM4-80GB, 81920, 0, 81920, 0, 30, 00000000:07:00.0, 0, [N/A], No, No, Not Active",
        "1, GPU-b, NVIDIA A100-SXM4-80GB, 81920, 0, 81920, 0, 30, 00000000:0F:00.0, 0, [N/A], No, No, Not Active",
    ]
    listing.write_text(header + "\n".join(lines) + "\n")
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "file")
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI_FILE", str(listing))
    probe = InventoryProbe(agent_settings(tmp_path))
    assert [g.id for g in probe.read().gpus] == ["0", "1"]
    listing.write_text(header + lines[0] + "\n")
    assert [g.id for g in probe.read().gpus] == ["0"]


def test_the_stand_in_refuses_other_arguments_as_nvidia_smi_does():
    assert FAKE_NVIDIA_SMI.stat().st_mode & stat.S_IXUSR
    done = subprocess.run([str(FAKE_NVIDIA_SMI), "-L"], capture_output=True, text=True, check=False)
    assert done.returncode == 2 and "Invalid combination of input arguments" in done.stderr


def test_cpus_and_memory_come_from_psutil_capped_by_cgroup_limits(tmp_path):
    assert host_cpus(tmp_path) >= 1
    total, available = host_memory_mib(tmp_path)
    assert total > 0 and 0 <= available <= total
    (tmp_path / "cpu.max").write_text("150000 100000\n")
    (tmp_path / "memory.max").write_text(str(512 << 20) + "\n")
    assert cgroup_cpu_limit(tmp_path) == 1.5
    assert cgroup_memory_limit_mib(tmp_path) == 512
    assert host_cpus(tmp_path) <= 1.5
    assert host_memory_mib(tmp_path)[0] == 512
    (tmp_path / "cpu.max").write_text("max 100000\n")
    (tmp_path / "memory.max").write_text("max\n")
    assert cgroup_cpu_limit(tmp_path) is None and cgroup_memory_limit_mib(tmp_path) is None


def test_capacity_json_is_the_host_less_what_is_kept_back(monkeypatch, tmp_path):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h200x4")
    settings = agent_settings(
        tmp_path, reserve_cpus=0.5, reserve_memory_mib=256, labels={"zone": "eu"}, queues=["gpu", "cpu"], max_jobs=3
    )
    inventory = InventoryProbe(settings, cgroup_root=tmp_path).read()
    data = capacity_json(settings, inventory)
    assert set(data) == {"agent_id", "host", "labels", "queues", "cpus", "memory_mib", "max_jobs", "gpus"}
    assert data["cpus"] == inventory.cpus - 0.5
    assert data["memory_mib"] == inventory.memory_mib - 256
    assert data["labels"] == {"zone": "eu"} and data["queues"] == ["gpu", "cpu"] and data["max_jobs"] == 3
    assert set(data["gpus"][0]) == {
        "id", "uuid", "name", "memory_total_mib", "memory_free_mib",
        "memory_used_mib", "utilization_pct", "temperature_c", "health", "health_reason",
    }  # fmt: skip
    assert data["gpus"][1]["health"] == "ok" and data["gpus"][1]["health_reason"] == ""
    assert data["gpus"][1]["memory_used_mib"] == 131470 and data["gpus"][1]["temperature_c"] == 58
