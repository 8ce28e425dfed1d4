# ruff: noqa: F811  (the agents fixture is imported from test_e2e_agent)
"""Multi-node gang jobs end to end: real ``launchbay agent`` processes (one per --agent-id, all on this
machine and its Docker engine), a real Redis, jobs enqueued with ``launchbay enqueue --nodes 2``.

What a user sees: both ranks' logs, ``launchbay status --json``'s ``nodes``, the job's end and reason,
which containers are left. docs/multi-node.md describes the design these tests hold it to.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from typing import Any, Dict, List

import pytest
from conftest import REPO_ROOT, run_cli
from launchbay.agent.runtime import JOB_ID_LABEL
from launchbay.queue_config import gang
from launchbay.queue_config.keys import Keys
from test_control_support import make_queue, record, wait_for
from test_e2e_agent import FAST_BEATS, agents  # noqa: F401  (the fixture)

pytestmark = [pytest.mark.integration, pytest.mark.docker]

TERMINAL = {"finished", "failed", "canceled"}
QUEUE = "gang"
#: The CPU build of torch that pip finds on this machine's disk for Python 3.11 (Debian bookworm's).
TORCH = "torch==2.13.0"
TORCH_TAG = "launchbay-test-torch:2.13.0"
FIXTURES = REPO_ROOT / "tests" / "agent" / "fixtures"


@pytest.fixture(scope="session")
def torch_image(docker_client, base_image, tmp_path_factory) -> str:
    """The base image with torch, from wheels lb_wheels downloads on the host once (cached per Python and
    package list); Docker's layer cache makes the build a no-op after the first."""
    context = tmp_path_factory.mktemp("torch-image")
    wheels = subprocess.run(
        ["bash", "-c", 'source scripts/lib.sh && lb_wheels "$@"', "lb_wheels", base_image, str(context / "wheels"), TORCH],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert wheels.returncode == 0, wheels.stdout + wheels.stderr
    for wheel in (context / "wheels").glob("launchbay-*.whl"):
        wheel.unlink()  # the job needs torch only
    docker_client.images.build(
        path=str(context), dockerfile=str(FIXTURES / "Dockerfile.torch"), tag=TORCH_TAG,
        buildargs={"BASE_IMAGE": base_image}, rm=True,
    )  # fmt: skip
    return TORCH_TAG


def gang_queue(redis_conn, **config: Any) -> None:
    options = {"gang": {"max_nodes": 2, "assemble_timeout_s": 60}, "docker": {"env": {"PYTHONUNBUFFERED": "1"}}}
    make_queue(redis_conn, QUEUE, **{**options, **config})


def enqueue(redis_url: str, image: str, source: str, *extra: str) -> str:
    done = run_cli(
        "enqueue", "--redis-url", redis_url, "-q", QUEUE, "--nodes", "2", "--cpus", "0.5", "--memory", "512MiB",
        "--image", image, *extra, "--", "python3", "-c", source,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def status(redis_url: str, job_id: str) -> Dict[str, Any]:
    done = run_cli("status", "--redis-url", redis_url, job_id, "--json")
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def logs(redis_url: str, job_id: str, rank: int) -> List[str]:
    done = run_cli("logs", "--redis-url", redis_url, job_id, "--rank", str(rank))
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()


def ended(redis_conn, job_id: str, timeout_s: float, *procs) -> Dict[str, Any]:
    def check():
        rec = record(redis_conn, job_id)
        return rec if rec.get("state") in TERMINAL else None

    try:
        return wait_for(check, timeout_s=timeout_s, what=f"job {job_id} to end")
    except AssertionError as exc:
        raise AssertionError(f"{record(redis_conn, job_id)}\n" + "\n".join(p.output()[-3000:] for p in procs)) from exc


def containers_of(docker_client, job_id: str) -> list:
    return docker_client.containers.list(all=True, filters={"label": f"{JOB_ID_LABEL}={job_id}"}, ignore_removed=True)


def ledger(redis_conn, agent_id: str) -> dict:
    return redis_conn.hgetall(Keys().agent_ledger(agent_id))


# -- a real framework's rendezvous ----------------------------------------------------------------------

ALL_REDUCE = """
import os, torch, torch.distributed as dist
dist.init_process_group("gloo", init_method="env://")
rank = dist.get_rank()
value = torch.tensor([float(rank + 1)])
dist.all_reduce(value)
print(f"rank {rank} of {dist.get_world_size()} on {os.environ['MASTER_ADDR']}:{os.environ['MASTER_PORT']}: "
      f"all_reduce={value.item():g}", flush=True)
dist.destroy_process_group()
"""


def test_two_agents_run_a_torch_gloo_all_reduce_across_two_containers(
    redis_url,
    redis_conn,
    torch_image,
    agents,
    docker_client,
):
    gang_queue(redis_conn)
    first, second = agents("gang-a", queue=QUEUE), agents("gang-b", queue=QUEUE)
    job_id = enqueue(redis_url, torch_image, ALL_REDUCE)
    rec = ended(redis_conn, job_id, 240, first, second)
    assert rec["state"] == "finished", (rec, first.output()[-3000:], second.output()[-3000:])
    rank0, rank1 = logs(redis_url, job_id, 0), logs(redis_url, job_id, 1)
    assert any(line.startswith("rank 0 of 2") and line.endswith("all_reduce=3") for line in rank0), rank0
    assert any(line.startswith("rank 1 of 2") and line.endswith("all_reduce=3") for line in rank1), rank1
    nodes = status(redis_url, job_id)["nodes"]
    assert [(n["rank"], n["state"], n["exit_code"]) for n in nodes] == [(0, "finished", 0), (1, "finished", 0)]
    assert {n["agent"] for n in nodes} == {"gang-a", "gang-b"}
    port = next(line for line in rank0 if "all_reduce" in line).split(":")[-2]
    assert port != "29500"  # the port rank 0's agent found free, never a fixed one
    wait_for(lambda: not containers_of(docker_client, job_id), timeout_s=30, what="the members' containers to go")


# -- all or nothing, no deadlock ----------------------------------------------------------------------------

HELLO = "import os; print('rank', os.environ['RANK'], 'of', os.environ['WORLD_SIZE'], 'peers', os.environ['LAUNCHBAY_NODE_ADDRS'])"


def test_one_agent_holds_nothing_for_a_two_node_job_until_a_second_starts(
    redis_url,
    redis_conn,
    base_image,
    agents,
):
    gang_queue(redis_conn)
    alone = agents("gang-alone", queue=QUEUE)
    job_id = enqueue(redis_url, base_image, HELLO)
    waiting = wait_for(
        lambda: (r := record(redis_conn, job_id)).get("pending_reason") == gang.PENDING_UNPLACEABLE and r,
        timeout_s=30,
        what="the gang's pending reason",
    )
    assert waiting["state"] == "queued"
    assert "needs 2 agents" in waiting["pending_detail"] and "1 live agent" in waiting["pending_detail"]
    assert ledger(redis_conn, "gang-alone") == {}  # it holds nothing for a gang it cannot complete
    time.sleep(1.5)  # a few more passes: still nothing held (holding is not a race it could win later)
    assert ledger(redis_conn, "gang-alone") == {} and record(redis_conn, job_id)["state"] == "queued"
    other = agents("gang-other", queue=QUEUE)
    rec = ended(redis_conn, job_id, 90, alone, other)
    assert rec["state"] == "finished", rec
    assert any(line.startswith("rank 1 of 2 peers ") for line in logs(redis_url, job_id, 1))


def test_three_agents_run_two_two_node_gangs_one_after_the_other(
    redis_url,
    redis_conn,
    base_image,
    agents,
):
    gang_queue(redis_conn)
    procs = [agents(f"gang-{i}", "--max-jobs", "1", queue=QUEUE) for i in range(3)]
    source = "import time; print('working', flush=True); time.sleep(3)"
    job_ids = [enqueue(redis_url, base_image, source) for _ in range(2)]
    recs = [ended(redis_conn, job_id, 120, *procs) for job_id in job_ids]
    assert [r["state"] for r in recs] == ["finished", "finished"], recs
    windows = sorted((r["running_at"], r["finished_at"]) for r in recs)
    assert windows[1][0] >= windows[0][1] - 0.5, windows  # only three agents: the second gang waited for the first


# -- fail together ------------------------------------------------------------------------------------------

RANK1_EXITS_3 = (
    "import os, sys, time\n"
    "rank = int(os.environ['RANK'])\n"
    "print('started', flush=True)\n"
    "if rank == 1:\n    time.sleep(3)\n    sys.exit(3)\n"
    "time.sleep(300)\n"
)


def test_rank_1_exiting_3_stops_rank_0_and_fails_the_job_naming_both(
    redis_url,
    redis_conn,
    base_image,
    agents,
    docker_client,
):
    gang_queue(redis_conn)
    first, second = agents("gang-x", queue=QUEUE), agents("gang-y", queue=QUEUE)
    job_id = enqueue(redis_url, base_image, RANK1_EXITS_3)
    rec = ended(redis_conn, job_id, 90, first, second)
    assert rec["state"] == "failed" and rec["reason"] == "exit_code" and rec["exit_code"] == 3, rec
    assert rec["message"].startswith("rank 1 "), rec
    nodes = wait_for(
        lambda: (n := status(redis_url, job_id)["nodes"]) and all(m["state"] in gang.ENDED for m in n) and n,
        timeout_s=30,
        what="both members to end",
    )
    stopped = gang.read(redis_conn, Keys(), job_id).current()
    assert (nodes[1]["state"], nodes[1]["exit_code"]) == ("failed", 3)
    assert nodes[0]["state"] == "stopped"
    grace_s = float(FAST_BEATS["LAUNCHBAY_AGENT_STOP_GRACE_S"])
    assert stopped[0].at - stopped[1].at <= grace_s + 5, stopped
    wait_for(lambda: not containers_of(docker_client, job_id), timeout_s=30, what="no container of the job left")


def test_rank_1s_agent_killed_mid_run_ends_the_gang_and_its_restart_removes_what_it_left(
    redis_url,
    redis_conn,
    base_image,
    agents,
    docker_client,
):
    gang_queue(redis_conn)
    first, second = agents("gang-p", queue=QUEUE), agents("gang-q", queue=QUEUE)
    job_id = enqueue(redis_url, base_image, "import time; print('started', flush=True); time.sleep(300)")
    wait_for(
        lambda: [n["state"] for n in status(redis_url, job_id).get("nodes", [])] == ["running", "running"],
        timeout_s=60,
        what="both members running",
    )
    rank1_agent = status(redis_url, job_id)["nodes"][1]["agent"]
    victim, survivor = (second, first) if rank1_agent == "gang-q" else (first, second)
    os.kill(victim.proc.pid, signal.SIGKILL)
    rec = ended(redis_conn, job_id, 60, survivor)
    assert rec["state"] == "failed" and rec["reason"] == "agent_lost", rec
    assert rec["message"].startswith("rank 1 lost: agent "), rec
    survivor_id = "gang-p" if survivor is first else "gang-q"
    wait_for(
        lambda: all(c.labels.get("launchbay.agent_id") != survivor_id for c in containers_of(docker_client, job_id)),
        timeout_s=30,
        what="rank 0's container to go",
    )
    agents(rank1_agent, queue=QUEUE)  # the killed agent comes back: what it left is an orphan now
    wait_for(lambda: not containers_of(docker_client, job_id), timeout_s=60, what="no container of the job left")


def container_events(docker_client, job_id: str, since: float):
    """Collects the Docker engine's start and die events of ``job_id``'s containers, as they happen.

    The engine's clock, not a poll: a member's table entry is overwritten by the next round's hold, so a
    poll of the table can miss the moment an old member stopped; the engine's events cannot."""
    stream = docker_client.api.events(
        since=int(since),
        decode=True,
        filters={"label": f"{JOB_ID_LABEL}={job_id}", "type": "container", "event": ["start", "die"]},
    )
    seen: List[Dict[str, Any]] = []

    def pump():
        try:
            for event in stream:
                seen.append({"id": event["id"], "status": event["status"], "at": event["timeNano"] / 1e9})
        except Exception:  # the stream was closed
            pass

    threading.Thread(target=pump, daemon=True).start()
    return stream, seen


def test_a_requeued_gang_never_runs_two_attempts_at_once(redis_url, redis_conn, base_image, agents, docker_client):
    gang_queue(redis_conn, retry={"on_agent_lost": "requeue", "max_requeues": 1})
    procs = {name: agents(name, queue=QUEUE) for name in ("gang-r", "gang-s", "gang-t")}
    job_id = enqueue(redis_url, base_image, "import time; print('started', flush=True); time.sleep(8)")
    stream, events = container_events(docker_client, job_id, since=time.time() - 5)
    wait_for(
        lambda: [n["state"] for n in status(redis_url, job_id).get("nodes", [])] == ["running", "running"],
        timeout_s=60,
        what="both members running",
    )
    first_round = gang.read(redis_conn, Keys(), job_id)
    old_rank0, old_rank1 = first_round.current()
    os.kill(procs[old_rank1.agent].proc.pid, signal.SIGKILL)
    rec = ended(redis_conn, job_id, 120, *procs.values())
    stream.close()
    assert rec["state"] == "finished" and rec["attempts"] == 2, rec
    second_round = gang.read(redis_conn, Keys(), job_id)
    assert second_round.round > first_round.round and second_round.attempt == 2
    # the surviving member of the first attempt was stopped by its agent (its container died) ...
    old_deaths = [e["at"] for e in events if e["status"] == "die" and e["id"] == old_rank0.container]
    assert old_deaths, (old_rank0, events)
    # ... before the second attempt was complete (starting), and before any of its containers started
    new_containers = {m.container for m in second_round.current()}
    new_starts = [e["at"] for e in events if e["status"] == "start" and e["id"] in new_containers]
    assert len(new_starts) == 2, (second_round, events)
    assert rec["starting_at"] >= old_deaths[0] - 0.05, (rec["starting_at"], old_deaths, events)
    assert min(new_starts) > old_deaths[0], (new_starts, old_deaths, events)


# -- bounded holds, the start barrier, cancel, the payload --------------------------------------------------


def test_a_gang_not_complete_in_its_assemble_timeout_releases_every_hold_and_says_who_was_missing(
    redis_url,
    redis_conn,
    base_image,
    agents,
):
    gang_queue(redis_conn, gang={"max_nodes": 3, "assemble_timeout_s": 2})
    busy = agents("gang-busy", "--max-jobs", "1", queue=QUEUE)
    blocker = run_cli(
        "enqueue", "--redis-url", redis_url, "-q", QUEUE, "--cpus", "0.5", "--memory", "256MiB",
        "--image", base_image, "--", "sleep", "300",
    ).stdout.strip()  # fmt: skip
    wait_for(lambda: record(redis_conn, blocker).get("state") == "running", timeout_s=60, what="the blocker running")
    first, second = agents("gang-h1", queue=QUEUE), agents("gang-h2", queue=QUEUE)
    # both on the queue's idle list, so the enqueue wakes both: an agent still starting would find the
    # job only at its next safety-net pass (5 s), after the 2 s round ran out with one hold
    wait_for(
        lambda: {b"gang-h1", b"gang-h2"} <= set(redis_conn.lrange(Keys().idle(QUEUE), 0, -1)),
        timeout_s=30,
        what="gang-h1 and gang-h2 on the idle list",
    )
    job_id = run_cli(
        "enqueue", "--redis-url", redis_url, "-q", QUEUE, "--nodes", "3", "--cpus", "0.5", "--memory", "256MiB",
        "--image", base_image, "--", "true",
    ).stdout.strip()  # fmt: skip
    # gang-busy runs its one job: two of three members are held, the round runs out, both holds go back
    waiting = wait_for(
        lambda: (s := status(redis_url, job_id)).get("pending_reason") == gang.PENDING_INCOMPLETE and s,
        timeout_s=30,
        what="the gang_incomplete pending reason",
    )
    assert waiting["state"] == "queued", waiting
    detail = waiting["pending_detail"]
    assert "held 2 of 3 members" in detail and "but 1 could not be placed" in detail, detail
    assert "gang-h1" in detail and "gang-h2" in detail and "gang-busy" not in detail, detail
    assert ledger(redis_conn, "gang-busy").keys() == {blocker.encode()}
    assert run_cli("cancel", "--redis-url", redis_url, job_id).returncode == 0
    wait_for(
        lambda: not ledger(redis_conn, "gang-h1") and not ledger(redis_conn, "gang-h2"),
        timeout_s=30,
        what="every hold of the canceled gang to be released",
    )
    assert record(redis_conn, job_id)["state"] == "canceled"
    assert redis_conn.hgetall(Keys().user_usage(QUEUE, record(redis_conn, job_id)["submitter"])) in (
        {},
        {b"cpus": b"0.5", b"jobs": b"1"},  # the blocker's own share, when its user has a quota counter
    )
    del busy, first, second


def test_members_not_all_ready_in_time_put_the_job_back_with_gang_not_ready(
    redis_url,
    redis_conn,
    base_image,
    agents,
):
    gang_queue(redis_conn, gang={"max_nodes": 2, "assemble_timeout_s": 2})
    first, second = agents("gang-r0", queue=QUEUE), agents("gang-r1", queue=QUEUE)
    wait_for(lambda: len(list(redis_conn.scan_iter(Keys().agent_alive("gang-r*")))) == 2, timeout_s=30, what="2 agents")
    os.kill(second.proc.pid, signal.SIGSTOP)  # still counted live (its heartbeat lasts 3 s): gang-r0 holds rank 0
    try:
        job_id = enqueue(redis_url, base_image, "print('both ready')")
        wait_for(lambda: ledger(redis_conn, "gang-r0"), timeout_s=10, what="gang-r0 to hold rank 0")
        os.kill(first.proc.pid, signal.SIGSTOP)  # rank 0 never gets to be ready ...
        os.kill(second.proc.pid, signal.SIGCONT)  # ... while gang-r1 completes the gang and waits at the barrier
        try:
            back = wait_for(
                lambda: (r := record(redis_conn, job_id)).get("reason") == "gang_not_ready" and r,
                timeout_s=15,
                what="the start barrier to give up",
            )
        except AssertionError as exc:
            table = gang.read(redis_conn, Keys(), job_id)
            raise AssertionError(f"{record(redis_conn, job_id)}\n{table}\n{second.output()[-3000:]}") from exc
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
        os.kill(second.proc.pid, signal.SIGCONT)
    assert back["state"] in ("queued", "starting", "running"), back  # put back; it may assemble again at once
    assert "not every member was ready within the queue's gang assemble_timeout" in back["message"], back
    assert "waiting for rank 0 on gang-r0" in back["message"], back
    rec = ended(redis_conn, job_id, 90, first, second)  # both agents well again: the next round runs
    assert rec["state"] == "finished" and int(rec["attempts"]) == 2, rec


def test_canceling_a_running_gang_stops_every_member_and_leaves_no_container(
    redis_url,
    redis_conn,
    base_image,
    agents,
    docker_client,
):
    gang_queue(redis_conn)
    first, second = agents("gang-c1", queue=QUEUE), agents("gang-c2", queue=QUEUE)
    job_id = enqueue(redis_url, base_image, "import time; print('started', flush=True); time.sleep(300)")
    wait_for(
        lambda: [n["state"] for n in status(redis_url, job_id).get("nodes", [])] == ["running", "running"],
        timeout_s=60,
        what="both members running",
    )
    assert len(containers_of(docker_client, job_id)) == 2
    assert run_cli("cancel", "--redis-url", redis_url, job_id).returncode == 0
    rec = ended(redis_conn, job_id, 30, first, second)
    assert rec["state"] == "canceled", rec
    nodes = wait_for(
        lambda: (n := status(redis_url, job_id)["nodes"]) and all(m["state"] == "stopped" for m in n) and n,
        timeout_s=30,
        what="both members stopped",
    )
    assert len(nodes) == 2
    wait_for(lambda: not containers_of(docker_client, job_id), timeout_s=30, what="no container of the job left")
    wait_for(
        lambda: not ledger(redis_conn, "gang-c1") and not ledger(redis_conn, "gang-c2"), timeout_s=15, what="ledgers"
    )


PAYLOAD = """
import json, os
inputs = os.environ["LAUNCHBAY_INPUTS_DIR"]
seen = {name: os.environ.get(name) for name in ("WANDB_LAUNCH", "WANDB_CONFIG", "WANDB_DIR", "WANDB_MODE",
                                                  "LAUNCHBAY_RUN_CONFIG", "LAUNCHBAY_JOB_ID", "RANK")}
seen["run_config.json"] = json.load(open(os.path.join(inputs, "run_config.json")))
seen["output_dir_writable"] = os.access(os.environ["LAUNCHBAY_OUTPUT_DIR"], os.W_OK)
print("PAYLOAD " + json.dumps(seen, sort_keys=True), flush=True)
"""


def test_every_member_gets_the_wandb_env_contract_and_the_payload(redis_url, redis_conn, base_image, agents):
    gang_queue(redis_conn)
    first, second = agents("gang-w1", queue=QUEUE), agents("gang-w2", queue=QUEUE)
    job_id = enqueue(redis_url, base_image, PAYLOAD, "--set", "lr=0.02", "--set", "model.depth=4")
    rec = ended(redis_conn, job_id, 90, first, second)
    assert rec["state"] == "finished", rec
    for rank in (0, 1):
        line = next(line for line in logs(redis_url, job_id, rank) if line.startswith("PAYLOAD "))
        seen = json.loads(line[len("PAYLOAD ") :])
        overrides = {"lr": 0.02, "model": {"depth": 4}}
        assert seen["RANK"] == str(rank) and seen["LAUNCHBAY_JOB_ID"] == job_id, seen
        assert seen["WANDB_LAUNCH"] == "true" and json.loads(seen["WANDB_CONFIG"]) == overrides, seen
        assert seen["WANDB_DIR"] and seen["WANDB_MODE"] == "offline", seen  # the queue gives no API key
        assert json.loads(seen["LAUNCHBAY_RUN_CONFIG"]) == overrides and seen["run_config.json"] == overrides, seen
        assert seen["output_dir_writable"] is True, seen
