"""Issue 13, findings 1 and 3: what a job leaves in its output folder must never keep its end from
being recorded.

1. ``mkfifo "$LAUNCHBAY_OUTPUT_DIR/inputs.json"`` made the agent's reader block in ``open()``: the
   record stayed ``running``, cancel did nothing, the allocation leaked, the container stayed, and an
   agent restarted over the job wedged again when it adopted it.
3. A deeply nested ``inputs.json`` raised RecursionError out of the reader: the ledger was freed
   and the container removed, but the record stayed ``running`` for ever.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from launchbay.agent.payload_dir import PayloadPaths, read_outputs
from security_helpers import AgentFleet, cli, log_lines, make_queue, state_of, wait_for

pytestmark = [pytest.mark.integration]

#: Both files the agent reads back from a job's output folder, made FIFOs (nobody ever writes them).
FIFOS = 'mkfifo "$LAUNCHBAY_OUTPUT_DIR/inputs.json" "$LAUNCHBAY_OUTPUT_DIR/config.json"'
#: ``{"run_config": [[[...]]]}``, 200,000 levels deep: far past any recursion limit, under the size limit.
NESTED = (
    "{ printf '{\"run_config\":'; head -c 200000 /dev/zero | tr '\\0' '['; "
    "head -c 200000 /dev/zero | tr '\\0' ']'; printf '}'; }"
)


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client)
    yield fleet
    fleet.close()


def enqueue(redis_url: str, image: str, script: str, *, name: str = "hostile-outputs") -> str:
    done = cli(redis_url, "enqueue", "--name", name, "--image", image, "-q", "sec", "--", "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_ended(redis_conn, fleet: AgentFleet, agent_id: str, job_id: str, state: str) -> None:
    """The end is recorded, the allocation released and the container gone."""
    wait_for(lambda: state_of(redis_conn, job_id) == state, timeout_s=90, what=f"{job_id} {state}\n{fleet.output()}")
    ledger = f"launchbay:agent:{agent_id}:ledger"
    wait_for(lambda: not redis_conn.hexists(ledger, job_id), timeout_s=30, what=f"{job_id} released")
    wait_for(lambda: not fleet.containers(), timeout_s=30, what=f"the container of {job_id} removed")


def still_serving(redis_conn, redis_url: str, image: str, fleet: AgentFleet, agent_id: str) -> None:
    """The agent is not wedged: it runs a plain job next."""
    wait_ended(redis_conn, fleet, agent_id, enqueue(redis_url, image, "true", name="plain"), "finished")


@pytest.mark.docker
def test_fifo_outputs_neither_wedge_the_agent_on_exit_nor_on_cancel(redis_url, redis_conn, base_image, fleet):
    make_queue(redis_conn, "sec")
    fleet.start("fifo-agent", queues=("sec",))
    exits = enqueue(redis_url, base_image, FIFOS)
    wait_ended(redis_conn, fleet, "fifo-agent", exits, "finished")
    assert any("inputs.json" in line and "not a regular file" in line for line in log_lines(redis_conn, exits))

    waits = enqueue(redis_url, base_image, f"{FIFOS} && exec sleep 600")
    wait_for(lambda: state_of(redis_conn, waits) == "running", timeout_s=90, what=fleet.output())
    assert cli(redis_url, "cancel", waits).returncode == 0
    wait_ended(redis_conn, fleet, "fifo-agent", waits, "canceled")
    still_serving(redis_conn, redis_url, base_image, fleet, "fifo-agent")


@pytest.mark.docker
def test_an_adopted_job_with_fifo_outputs_does_not_wedge_the_restarted_agent(redis_url, redis_conn, base_image, fleet):
    make_queue(redis_conn, "sec")
    fleet.start("adopt-agent", queues=("sec",))
    script = f'{FIFOS} && while [ ! -e "$LAUNCHBAY_OUTPUT_DIR/go" ]; do sleep 0.1; done'
    job_id = enqueue(redis_url, base_image, script)
    output = fleet.state_dir("adopt-agent") / "jobs" / job_id / "output"
    wait_for(lambda: (output / "inputs.json").exists(), timeout_s=90, what=fleet.output())

    fleet.restart("adopt-agent")  # SIGKILL: the container keeps running for the new process to adopt
    wait_for(lambda: "adopted" in fleet.agents["adopt-agent"].output(), timeout_s=60, what=fleet.output())
    (output / "go").touch()
    wait_ended(redis_conn, fleet, "adopt-agent", job_id, "finished")
    still_serving(redis_conn, redis_url, base_image, fleet, "adopt-agent")


@pytest.mark.docker
def test_a_deeply_nested_inputs_json_still_gets_the_job_its_end(redis_url, redis_conn, base_image, fleet):
    make_queue(redis_conn, "sec")
    fleet.start("nest-agent", queues=("sec",))
    out = "$LAUNCHBAY_OUTPUT_DIR"
    script = f'{NESTED} > "{out}/inputs.json" && cp "{out}/inputs.json" "{out}/config.json"'
    job_id = enqueue(redis_url, base_image, script)
    wait_ended(redis_conn, fleet, "nest-agent", job_id, "finished")
    lines = log_lines(redis_conn, job_id)
    assert any("inputs.json" in line and "nested deeper than" in line for line in lines), lines
    shown = cli(redis_url, "status", job_id, "--json")
    assert shown.returncode == 0 and '"finished"' in shown.stdout, shown.stdout + shown.stderr
    still_serving(redis_conn, redis_url, base_image, fleet, "nest-agent")


def _read_in_thread(paths: PayloadPaths):
    """read_outputs on a thread that may never return; (outputs or None, the thread)."""
    found = []
    thread = threading.Thread(target=lambda: found.append(read_outputs(paths)), daemon=True)
    thread.start()
    thread.join(timeout=10)
    return (found[0] if found else None), thread


def test_the_output_reader_never_blocks_on_a_fifo(tmp_path: Path):
    output = tmp_path / "output"
    output.mkdir()
    os.mkfifo(output / "inputs.json")
    os.mkfifo(output / "config.json")
    outputs, thread = _read_in_thread(PayloadPaths(tmp_path, tmp_path / "inputs", output))
    if thread.is_alive():  # unblock the reader stuck on the FIFO so the test process can end
        with open(output / "inputs.json", "wb"), open(output / "config.json", "wb"):
            pass
    assert outputs is not None, "read_outputs blocked on a FIFO"
    assert outputs.inputs is None and outputs.effective_config is None
    assert [p.split(":")[0] for p in outputs.problems] == [
        "ignored inputs.json from the job's output folder",
        "ignored config.json from the job's output folder",
    ]


def test_the_output_reader_refuses_deep_nesting_without_recursing(tmp_path: Path):
    output = tmp_path / "output"
    output.mkdir()
    (output / "inputs.json").write_text('{"a":' + "[" * 200_000 + "]" * 200_000 + "}")
    (output / "config.json").write_text('{"a":' + '{"b":' * 101 + "1" + "}" * 101 + "}")
    outputs = read_outputs(PayloadPaths(tmp_path, tmp_path / "inputs", output))
    assert outputs.inputs is None and outputs.effective_config is None
    assert all("nested deeper than 100 levels" in p for p in outputs.problems), outputs.problems
    assert len(outputs.problems) == 2
