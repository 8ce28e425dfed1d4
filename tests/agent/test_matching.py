"""The fit rules shared by the agent and the client (queue_config/matching.py)."""

from __future__ import annotations

from dataclasses import replace

from launchbay.queue_config.matching import (
    Capacity,
    GpuInfo,
    Request,
    choose_gpus,
    could_ever_fit,
    fit,
    gpu_model_matches,
    labels_match,
    misfit_reason,
)


def gpu(index: int, name: str = "NVIDIA A100-SXM4-80GB", total: int = 81920, free: int | None = 81000) -> GpuInfo:
    return GpuInfo(id=str(index), uuid=f"GPU-{index}", name=name, memory_total_mib=total, memory_free_mib=free)


def capacity(*gpus: GpuInfo, cpus: float = 16, memory_mib: int = 65536, slots: int = 8, **labels: str) -> Capacity:
    return Capacity(cpus=cpus, memory_mib=memory_mib, slots=slots, gpus=tuple(gpus), labels=dict(labels))


def test_gpu_model_is_a_case_insensitive_substring_of_any_alternative():
    assert gpu_model_matches("NVIDIA A100-SXM4-80GB", "a100")
    assert gpu_model_matches("NVIDIA H100 PCIe", "A100|h100")
    assert not gpu_model_matches("NVIDIA GeForce RTX 3090", "A100|H100")
    assert gpu_model_matches("anything", "")


def test_every_constraint_label_must_equal_the_agents_label():
    assert labels_match({"zone": "eu"}, {"zone": "eu", "rack": "7"})
    assert not labels_match({"zone": "eu"}, {"zone": "us"})
    assert not labels_match({"zone": "eu"}, {})
    assert labels_match({}, {})


def test_a_cpu_job_fits_when_cpus_memory_and_a_slot_are_free():
    free = capacity(cpus=2, memory_mib=1024)
    assert fit(Request(cpus=2, memory_mib=1024), {}, free) == ()
    assert fit(Request(cpus=2.5), {}, free) is None
    assert fit(Request(memory_mib=1025), {}, free) is None
    assert fit(Request(), {}, capacity(slots=0)) is None


def test_fractional_cpus_add_up_without_rounding_errors():
    assert fit(Request(cpus=0.3), {}, capacity(cpus=0.1 + 0.2)) == ()


def test_gpu_memory_request_needs_enough_total_and_live_free_memory():
    busy = gpu(0, free=10_000)  # a process outside launchbay uses most of it
    idle = gpu(1)
    assert choose_gpus(Request(gpus=1, gpu_memory_mib=40_000), [busy, idle]) == ("1",)
    assert choose_gpus(Request(gpus=2, gpu_memory_mib=40_000), [busy, idle]) is None
    small = gpu(2, name="NVIDIA A100-PCIE-40GB", total=40960, free=40960)
    assert choose_gpus(Request(gpus=1, gpu_memory_mib=80_000), [small]) is None


def test_foreign_gpu_usage_does_not_block_a_job_that_asks_for_no_gpu_memory():
    busy = gpu(0, free=100)
    assert choose_gpus(Request(gpus=1), [busy]) == ("0",)


def test_a_gpu_whose_free_memory_is_unknown_is_judged_by_its_total():
    unknown = gpu(0, free=None)
    assert choose_gpus(Request(gpus=1, gpu_memory_mib=40_000), [unknown]) == ("0",)
    assert choose_gpus(Request(gpus=1, gpu_memory_mib=40_000), [GpuInfo(id="0", name="x")]) is None


def test_one_job_gets_gpus_of_one_model_only():
    mixed = [gpu(0, "NVIDIA A100"), gpu(1, "NVIDIA H100"), gpu(2, "NVIDIA A100"), gpu(3, "NVIDIA H100")]
    chosen = choose_gpus(Request(gpus=2, gpu_model="A100|H100"), mixed)
    assert chosen in (("0", "2"), ("1", "3"))
    assert choose_gpus(Request(gpus=3, gpu_model="A100|H100"), mixed) is None


def test_gpu_choice_packs_into_the_smallest_block_that_holds_the_job():
    # Free: 0 | 2,3 | 5,6,7 ; a 1-GPU job takes the lone GPU 0, keeping blocks whole.
    free = [gpu(i) for i in (0, 2, 3, 5, 6, 7)]
    assert choose_gpus(Request(gpus=1), free) == ("0",)
    assert choose_gpus(Request(gpus=2), free) == ("2", "3")
    assert choose_gpus(Request(gpus=3), free) == ("5", "6", "7")
    # No block is long enough: smallest fragments first.
    assert choose_gpus(Request(gpus=4), free) == ("0", "2", "3", "5")


def test_gpu_choice_prefers_the_model_group_with_fewest_free_gpus():
    free = [gpu(0, "NVIDIA H100"), gpu(1, "NVIDIA H100"), gpu(2, "NVIDIA H100"), gpu(5, "NVIDIA A100")]
    assert choose_gpus(Request(gpus=1), free) == ("5",)


def test_gpu_ids_sort_numerically():
    free = [gpu(10), gpu(2)]
    assert choose_gpus(Request(gpus=1), free) == ("2",)


def test_misfit_reason_says_what_can_never_fit():
    total = capacity(gpu(0), gpu(1), cpus=8, memory_mib=16384, zone="eu")
    assert misfit_reason(Request(cpus=4, gpus=2), {"zone": "eu"}, total) is None
    assert "16 CPUs" in misfit_reason(Request(cpus=16), {}, total)
    assert "MiB of memory" in misfit_reason(Request(memory_mib=20000), {}, total)
    assert "3 GPU(s)" in misfit_reason(Request(gpus=3), {}, total)
    assert "matching 'H100'" in misfit_reason(Request(gpus=1, gpu_model="H100"), {}, total)
    assert "zone=us" in misfit_reason(Request(), {"zone": "us"}, total)
    assert "no label rack" in misfit_reason(Request(), {"rack": "1"}, total)
    assert could_ever_fit(Request(gpus=1, gpu_memory_mib=80000), {}, total)


def test_capacity_json_round_trips_into_capacity():
    data = {
        "agent_id": "a",
        "cpus": 14.0,
        "memory_mib": 60000,
        "max_jobs": 8,
        "labels": {"zone": "eu"},
        "gpus": [
            {"id": "0", "uuid": "GPU-x", "name": "A100", "memory_total_mib": 81920, "memory_free_mib": 81000,
             "memory_used_mib": 920, "utilization_pct": None, "temperature_c": 41,
             "health": "unhealthy", "health_reason": "row remapping pending"},
        ],
    }  # fmt: skip
    cap = Capacity.from_capacity_json(data)
    assert cap.slots == 8 and cap.labels == {"zone": "eu"}
    assert cap.gpus[0].to_capacity_dict() == data["gpus"][0]


def test_a_gpu_that_is_not_ok_is_never_chosen_now_but_counts_for_planning():
    gpus = [replace(gpu(0), health="unhealthy", health_reason="hw slowdown"), gpu(1), replace(gpu(2), health="drained")]
    assert choose_gpus(Request(gpus=1), gpus) == ("1",)
    assert choose_gpus(Request(gpus=2), gpus) is None
    assert choose_gpus(Request(gpus=3), gpus, live=False) == ("0", "1", "2")
