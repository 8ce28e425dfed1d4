"""GPU health (agent/gpu_health.py): each fault nvidia-smi or the kernel reports quarantines the GPU.

The stand-in nvidia-smi replays captures in tests/agent/fixtures/captures (real output formats of
each condition); XIDs come from a kernel log capture in tests/agent/fixtures/kernel-log.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from launchbay.agent.gpu_health import apply_drain, bus_key, jobs_on_failed_gpus, parse_xids, read_kernel_log
from launchbay.agent.inventory import InventoryProbe, capacity_json, capacity_of
from test_control_support import FIXTURES, agent_settings

CAPTURES = FIXTURES / "captures"
KERNEL_LOG = FIXTURES / "kernel-log"


def health_of(monkeypatch, tmp_path: Path, mode: str, **settings):
    """{gpu id: (health, reason)} as the capacity JSON says, and the capacity the agent hands out."""
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", mode)
    agent = agent_settings(tmp_path, **settings)
    inventory = InventoryProbe(agent).read()
    data = capacity_json(agent, inventory)
    return {g["id"]: (g["health"], g["health_reason"]) for g in data["gpus"]}, capacity_of(agent, inventory)


@pytest.mark.parametrize(
    ("mode", "bad_gpu", "reason"),
    [
        ("ecc-uncorrected", "1", "uncorrectable ECC errors: 2"),
        ("row-remap-pending", "0", "row remapping pending"),
        ("retired-pages-pending", "1", "retired pages pending"),
        ("hw-slowdown", "0", "hw slowdown"),
        ("hw-slowdown-r525", "1", "hw slowdown"),
        ("requires-reset", "1", "GPU requires reset"),
    ],
)
def test_each_fault_nvidia_smi_reports_quarantines_that_gpu_only(monkeypatch, tmp_path, mode, bad_gpu, reason):
    health, handed_out = health_of(monkeypatch, tmp_path, mode)
    assert health[bad_gpu] == ("unhealthy", reason)
    others = {gpu: value for gpu, value in health.items() if gpu != bad_gpu}
    assert others and all(value == ("ok", "") for value in others.values())
    assert [g.id for g in handed_out.gpus] == sorted(others)


def test_an_older_driver_gets_the_query_it_understands_once(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "retired-pages-pending")
    probe = InventoryProbe(agent_settings(tmp_path))
    with caplog.at_level("INFO", logger="launchbay.agent.inventory"):
        first, second = probe.read(), probe.read()
    assert [g.health for g in first.gpus] == [g.health for g in second.gpus] == ["ok", "unhealthy"]
    stepped_down = [r for r in caplog.records if "asking for fewer health fields" in r.getMessage()]
    assert len(stepped_down) == 2  # clocks_event_reasons, then remapped_rows; never again
    assert "is not a valid field to query" in stepped_down[0].getMessage()


def test_a_gpu_that_falls_off_the_bus_stays_listed_as_lost(monkeypatch, tmp_path):
    listing = tmp_path / "nvidia-smi.txt"
    shutil.copy(CAPTURES / "h100x4.txt", listing)
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "file")
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI_FILE", str(listing))
    settings = agent_settings(tmp_path)
    probe = InventoryProbe(settings)
    assert [g.health for g in probe.read().gpus] == ["ok"] * 4
    shutil.copy(CAPTURES / "gpu-lost.txt", listing)
    inventory = probe.read()
    assert inventory.gpu_problem is None, "the other three GPUs still answer"
    gpus = {g["id"]: g for g in capacity_json(settings, inventory)["gpus"]}
    assert gpus["2"]["health"] == "unhealthy"
    assert gpus["2"]["health_reason"] == "GPU is lost. Reboot the system to recover this GPU"
    assert gpus["2"]["memory_used_mib"] is None and gpus["2"]["temperature_c"] is None
    assert [g.id for g in capacity_of(settings, inventory).gpus] == ["0", "1", "3"]


def test_a_critical_xid_in_the_kernel_log_quarantines_the_gpu_on_that_bus(monkeypatch, tmp_path):
    health, handed_out = health_of(monkeypatch, tmp_path, "h100x4", kernel_log=str(KERNEL_LOG / "xid79.txt"))
    assert health["2"] == ("unhealthy", "xid 79: GPU has fallen off the bus")
    # XID 13 on GPU 1 is the program's own fault (an out-of-range address), not the hardware's.
    assert health["1"] == ("ok", "")
    assert [g.id for g in handed_out.gpus] == ["0", "1", "3"]


def test_an_unreadable_kernel_log_means_no_xids_and_one_note(monkeypatch, tmp_path, caplog):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "h100x4")
    probe = InventoryProbe(agent_settings(tmp_path, kernel_log=str(tmp_path / "no-such-log")))
    with caplog.at_level("INFO", logger="launchbay.agent.gpu_health"):
        assert all(g.health == "ok" for g in probe.read().gpus)
        probe.read()
    assert len([r for r in caplog.records if "cannot read the kernel log" in r.getMessage()]) == 1


def test_xid_lines_of_every_spelling_name_the_same_bus():
    text = (
        "[  12.5] NVRM: Xid (PCI:0000:3b:00): 48, pid='<unknown>', name=<unknown>, An uncorrectable double bit error\n"
        "2026-09-14T20:30:27-0400 host kernel: NVRM: Xid (PCI:0000:00:1e.0): 79, pid=0, GPU has fallen off the bus.\n"
        "NVRM: Xid (PCI:0000:5e:00): 31, pid=1, name=python, Ch 00000010, intr 00000000. MMU Fault\n"
    )
    assert parse_xids(text) == {"0000:3b:00": [48], "0000:00:1e": [79]}
    assert bus_key("00000000:3B:00.0") == bus_key("0000:3b:00") == "0000:3b:00"


def test_na_values_of_the_new_fields_become_null(monkeypatch, tmp_path):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "not-supported")
    settings = agent_settings(tmp_path)
    (gpu,) = capacity_json(settings, InventoryProbe(settings).read())["gpus"]
    assert gpu["utilization_pct"] is None and gpu["memory_used_mib"] is None
    assert gpu["temperature_c"] == 52 and gpu["health"] == "ok"


def test_a_drained_gpu_is_not_handed_out_and_keeps_a_fault_as_its_reason(monkeypatch, tmp_path):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "row-remap-pending")
    gpus = InventoryProbe(agent_settings(tmp_path)).read().gpus
    marked = {g.id: (g.health, g.health_reason) for g in apply_drain(gpus, ["0", "1"])}
    assert marked == {"0": ("unhealthy", "row remapping pending"), "1": ("drained", "drained by operator")}


def test_only_jobs_on_an_unhealthy_gpu_are_hit(monkeypatch, tmp_path):
    monkeypatch.setenv("LAUNCHBAY_FAKE_NVIDIA_SMI", "ecc-uncorrected")
    gpus = apply_drain(InventoryProbe(agent_settings(tmp_path)).read().gpus, ["0"])
    hit = jobs_on_failed_gpus(gpus, [("on-drained", ["0"]), ("on-bad", ["1"]), ("cpu-only", [])])
    assert hit == {"on-bad": "GPU 1 became unhealthy (uncorrectable ECC errors: 2)"}


def test_a_character_device_is_read_record_by_record_without_waiting_for_more():
    # /dev/kmsg is a character device whose reads block at the end unless O_NONBLOCK; /dev/null is
    # one too (it ends at once), so the device branch is exercised without the host's kernel log.
    assert read_kernel_log("/dev/null") == ""
