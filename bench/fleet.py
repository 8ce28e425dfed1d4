"""Fleet: what one Redis pays per idle agent and per job, with real agents, 10 to 1,000 of them; claims at depth 1M.

For each fleet size N, a fresh redis-server and N real agents (``fleet_agents.py``: ``agent/daemon.py``'s
``Agent`` as ``launchbay agent`` builds it, every thread and service, only Docker replaced by the fake
runtime) in ``--processes`` worker processes. Measured with Redis's own counters (INFO commandstats:
calls, commands run by Lua scripts included; INFO cpu: used_cpu_sys + used_cpu_user):

1. the idle fleet (``--idle-s``): three queued jobs that no agent can run (each asks for a GPU) and
   one open sweep whose trial cannot run either, so every agent's claim pass, the pending reasons,
   the sweep driver, the heartbeats and the reaper all do what they do between jobs: Redis commands/s
   per agent and the share of one core Redis spends;
2. load (``--load-s``): jobs enqueued through the client at ``--rate`` per second, each running
   ``--run-s``, measured until every one has finished. Per job: Redis commands from enqueue to finished
   and Redis CPU, the idle fleet's rate times the phase's length taken off (the total is shown too);
   enqueue-to-claim latency (``starting_at - queued_at``).

The size 1 (``--one``, on by default) is one agent alone: its commands per job, listed by command.

Targets, in one run: idle Redis commands/s per agent at the largest size <= 1.2x at the smallest, and
under 10% of a Redis core; commands per job at the largest size <= 1.2x at the smallest; p99
enqueue-to-claim at the largest <= 100 ms; commands per job with one agent <= 40.

Then the claim rate with 1,000,000 jobs queued (100,000 with ``--quick``), filled by a Lua script in
chunks of 20,000, against 1,000 queued in the same run: ``claim_rate.py``'s 8 claimers, one round each.

    .venv/bin/python bench/fleet.py [--sizes 10,100,1000] [--rate 10] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import redis
import yaml
from _common import RedisServer, Row, apply_queues, at_least, at_most, emit, wait_until
from claim_rate import FILL_BATCH, REQUEST, one_round, queue_for
from fleet_agents import serve
from launchbay.agent.settings import AgentSettings
from launchbay.client import enqueue
from launchbay.client.sweeps import create as create_sweep
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.agents import read_summary
from launchbay.queue_config.job import State, to_hash
from launchbay.queue_config.keys import Keys

QUEUE = "fleet"
SLOTS = 4
SPEC = {"name": "bench-fleet", "image": "none", "command": ["true"]}
#: What no agent of the fleet can run (they have no GPUs): the idle fleet's queued jobs and sweep trial.
UNRUNNABLE = {"gpus": 1}
IDLE_QUEUED = 3
TARGET_IDLE_RATIO = 1.2
TARGET_IDLE_CORE = 0.10
TARGET_COMMANDS_RATIO = 1.2
TARGET_P99_MS = 100.0
TARGET_ONE_AGENT_COMMANDS = 40.0


def redis_counters(conn: redis.Redis) -> Dict[str, float]:
    """Commands run so far (less our own INFO calls) and Redis CPU seconds."""
    stats = conn.info("commandstats")
    cpu = conn.info("cpu")
    calls = {k[len("cmdstat_") :]: v["calls"] for k, v in stats.items() if k != "cmdstat_info"}
    return {
        "commands": sum(calls.values()),
        "cpu_s": cpu["used_cpu_sys"] + cpu["used_cpu_user"],
        "at": time.monotonic(),
        **{f"cmd_{name}": count for name, count in calls.items()},
    }


def delta(before: Dict[str, float], after: Dict[str, float]) -> Dict[str, float]:
    return {k: after[k] - before.get(k, 0) for k in after}


def commands_by_name(load: Dict[str, float], idle: Dict[str, float], jobs: int) -> Dict[str, float]:
    """Every command of the load phase per job, the idle fleet's share taken off, the most frequent first."""
    counts = []
    for key, value in load.items():
        if key.startswith("cmd_") and value:
            per_job = (value - idle.get(key, 0) / idle["at"] * load["at"]) / jobs
            counts.append((round(per_job, 2), key[4:]))
    return {name: count for count, name in sorted(counts, reverse=True) if count > 0}


def agent_settings(index: int, folder: Path) -> AgentSettings:
    return AgentSettings(
        agent_id=f"sim-{index:04d}",
        host=f"sim-host-{index:04d}",
        queues=[QUEUE],
        max_jobs=SLOTS,
        state_dir=folder / f"agent-{index:04d}",
    )


def start_fleet(url: str, size: int, processes: int, run_s: float, folder: Path) -> Dict[str, Any]:
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no threads or locks of ours copied
    shared = (context.Queue(), context.Event(), context.Queue())
    everyone = [agent_settings(i, folder) for i in range(size)]
    workers = min(processes, size)
    procs = [
        context.Process(target=serve, args=(url, everyone[p::workers], run_s, shared), daemon=True)
        for p in range(workers)
    ]
    for proc in procs:
        proc.start()
    ready = [shared[0].get(timeout=600) for _ in procs]
    assert sum(r["agents"] for r in ready) == size, f"{ready} of {size} agents started"
    return {"procs": procs, "pids": [r["pid"] for r in ready], "stop": shared[1], "out": shared[2]}


def stop_fleet(fleet: Dict[str, Any]) -> List[Dict[str, int]]:
    fleet["stop"].set()
    reports = [fleet["out"].get(timeout=120) for _ in fleet["procs"]]
    for proc in fleet["procs"]:
        proc.join(timeout=30)
    return reports


def idle_scene(conn: redis.Redis, folder: Path) -> List[str]:
    """Three queued jobs no agent can run and one open sweep whose one trial cannot run either."""
    jobs = [enqueue(SPEC, QUEUE, conn=conn, resources=UNRUNNABLE).id for _ in range(IDLE_QUEUED)]
    job_file = folder / "sweep-job.yaml"
    job_file.write_text(yaml.safe_dump({**SPEC, "inputs": {"run_config": {"include": ["x"]}}}))
    body = {
        "method": "random",
        "metric": {"name": "loss", "goal": "minimize"},
        "parameters": {"x": {"min": 0.0, "max": 1.0}},
        "run_cap": 10,
        "max_parallel": 1,
        "job": str(job_file),
        "resources": UNRUNNABLE,
    }
    create_sweep(body, QUEUE, conn=conn, keys=Keys())
    return jobs


def settled(conn: redis.Redis, size: int, jobs: List[str]) -> bool:
    """Every agent is in the summary, alive, and the waiting jobs (the sweep's trial too) have a reason."""
    now_ms, lines = read_summary(conn, Keys())
    if sum(1 for line in lines if line.alive(now_ms)) < size:
        return False
    queued = [rq_bridge.rq_queue(conn, QUEUE).key]
    ids = [i.decode() for i in conn.lrange(queued[0], 0, -1)]
    reasons = [conn.hget(Keys().job(i), "pending_reason") for i in ids]
    return len(ids) > len(jobs) and all(r == b"never_fits" for r in reasons)


def load_phase(conn: redis.Redis, rate: float, seconds: float) -> List[str]:
    """Enqueue through the client at ``rate`` per second for ``seconds``; the job ids."""
    job_ids: List[str] = []
    began = time.monotonic()
    while (elapsed := time.monotonic() - began) < seconds:
        due = int(elapsed * rate) + 1
        while len(job_ids) < due:
            job_ids.append(enqueue(SPEC, QUEUE, conn=conn).id)
        time.sleep(max(0.0, len(job_ids) / rate - (time.monotonic() - began)))
    return job_ids


def latencies_ms(conn: redis.Redis, job_ids: List[str]) -> List[float]:
    """Enqueue-to-claim of each job, once every one has finished."""
    keys = Keys()

    def finished() -> List[Any]:
        with conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(keys.job(job_id), ["queued_at", "starting_at", "state"])
            values = pipe.execute()
        return values if all(state == b"finished" for _, _, state in values) else []

    values = wait_until(finished, 300, "every job of the load phase to finish", every_s=0.2)
    return sorted(1000 * (float(started) - float(queued)) for queued, started, _ in values)


def percentile(values: List[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))]


def measure_size(size: int, options: argparse.Namespace, *, rate: Optional[float] = None) -> Dict[str, Any]:
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="lb-fleet-") as folder:
        conn = redis.Redis.from_url(server.url)
        apply_queues(conn, QUEUE)
        waiting = idle_scene(conn, Path(folder))
        memory_before = conn.info("memory")["used_memory"]
        fleet = start_fleet(server.url, size, options.processes, options.run_s, Path(folder))
        try:
            wait_until(lambda: settled(conn, size, waiting), 600, f"{size} agents to settle", every_s=0.5)
            memory_per_agent = (conn.info("memory")["used_memory"] - memory_before) / size
            start = redis_counters(conn)
            time.sleep(options.idle_s)  # the phase's length is the measurement, not a wait for a condition
            idle = delta(start, redis_counters(conn))
            start = redis_counters(conn)
            job_ids = load_phase(conn, rate or options.rate, options.load_s)
            latencies = latencies_ms(conn, job_ids)
            load = delta(start, redis_counters(conn))
        finally:
            reports = stop_fleet(fleet)
    return {**summarize(size, idle, load, latencies, reports), "redis_bytes_per_agent": memory_per_agent}


def summarize(size, idle, load, latencies, reports) -> Dict[str, Any]:
    jobs = len(latencies)
    idle_commands_s, idle_cpu_s = idle["commands"] / idle["at"], idle["cpu_s"] / idle["at"]
    claimed = sum(r["claimed"] for r in reports)
    return {
        "agents": size,
        "jobs": jobs,
        "commands_per_job": (load["commands"] - idle_commands_s * load["at"]) / jobs,
        "commands_per_job_total": load["commands"] / jobs,
        "redis_cpu_ms_per_job": 1000 * (load["cpu_s"] - idle_cpu_s * load["at"]) / jobs,
        "redis_cpu_ms_per_job_total": 1000 * load["cpu_s"] / jobs,
        "p50_ms": percentile(latencies, 0.50),
        "p99_ms": percentile(latencies, 0.99),
        "lost_races_per_claim": sum(r["lost_races"] for r in reports) / max(1, claimed),
        "idle_core_share": idle_cpu_s,
        "idle_commands_s": idle_commands_s,
        "idle_commands_s_per_agent": idle_commands_s / size,
        "idle_by_name_s": {k[4:]: round(v / idle["at"], 2) for k, v in idle.items() if k.startswith("cmd_") and v},
        "commands_per_job_by_name": commands_by_name(load, idle, jobs),
    }


_FILL_LUA = """
for i = 1, tonumber(ARGV[1]) do
  local id = ARGV[2] .. i
  redis.call('HSET', ARGV[3] .. id, 'id', id, unpack(ARGV, 4))
  redis.call('RPUSH', KEYS[1], id)
end
return 1
"""


def fill_fast(conn: redis.Redis, name: str, count: int) -> float:
    """``count`` queued records as the client writes them (less rq's own job hash), by Lua; seconds taken."""
    began, keys = time.monotonic(), Keys()
    fields = {"name": "bench-claim", "queue": name, "priority": "normal", "request": REQUEST}
    template = to_hash({**fields, "state": State.QUEUED, "queued_at": time.time(), "attempts": 0, "constraints": {}})
    pairs = [x for k, v in template.items() if v != "" for x in (k, v)]
    script = conn.register_script(_FILL_LUA)
    for start in range(0, count, FILL_BATCH * 20):
        n = min(FILL_BATCH * 20, count - start)
        script(keys=[rq_bridge.rq_queue(conn, name).key], args=[n, f"d{start:08d}-", keys.job(""), *pairs])
    return time.monotonic() - began


def measure_depth(depth: int) -> Dict[str, Any]:
    """Claims + releases per second (claim_rate.py's round) at ``depth`` queued and at 1,000, same server."""
    with RedisServer() as server:
        conn = redis.Redis.from_url(server.url)
        out: Dict[str, Any] = {"depth": depth}
        for each in (1000, depth):
            name = queue_for(each)
            out[f"fill_s_{each}"] = fill_fast(conn, name, each + 800)
            out[f"round_{each}"] = one_round(server.url, name)
        out["used_memory_mib"] = conn.info("memory")["used_memory"] / 2**20
    return out


def rows(result: Dict[str, Any]) -> List[Row]:
    by_size = {r["agents"]: r for r in result["sizes"]}
    out = []
    for size, r in sorted(by_size.items()):
        idle_note = (
            f"whole fleet {r['idle_commands_s']:.0f} commands/s, Redis {100 * r['idle_core_share']:.2f}% of a core, "
            f"{r['redis_bytes_per_agent'] / 1024:.1f} KiB of Redis memory per agent; "
            f"{IDLE_QUEUED} queued jobs no agent can run and one open sweep"
        )
        out.append(Row(f"fleet {size:,} agents idle: Redis commands/s per agent", [r["idle_commands_s_per_agent"]],
                       note=idle_note))  # fmt: skip
        note = (
            f"{r['jobs']} jobs, enqueue to finished; total incl. idle fleet {r['commands_per_job_total']:.0f} "
            f"commands, Redis CPU {r['redis_cpu_ms_per_job']:.2f} ms/job (total {r['redis_cpu_ms_per_job_total']:.2f}); "
            f"claim latency p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms; "
            f"{r['lost_races_per_claim']:.2f} lost races/claim"
        )
        out.append(Row(f"fleet {size:,} agents: Redis commands/job", [r["commands_per_job"]], note=note))
    one = result.get("one")
    if one:
        top = ", ".join(f"{name} {count:g}" for name, count in list(one["commands_per_job_by_name"].items())[:8])
        out.append(
            at_most(
                "fleet, one agent: Redis commands/job",
                [one["commands_per_job"]],
                TARGET_ONE_AGENT_COMMANDS,
                target=f"<= {TARGET_ONE_AGENT_COMMANDS:g}",
                note=f"{one['jobs']} jobs, enqueue to finished; most: {top}",
            )
        )
    small, large = by_size[min(by_size)], by_size[max(by_size)]
    sizes = f"{large['agents']:,} vs {small['agents']:,} agents"
    idle_ratio = large["idle_commands_s_per_agent"] / small["idle_commands_s_per_agent"]
    out.append(
        at_most(
            f"fleet idle: commands/s per agent, {sizes}",
            [large["idle_commands_s_per_agent"]],
            TARGET_IDLE_RATIO,
            baseline=small["idle_commands_s_per_agent"],
            ratio=idle_ratio,
            judged=idle_ratio,
            target=f"ratio <= {TARGET_IDLE_RATIO:g}",
        )
    )
    out.append(
        at_most(
            f"fleet {large['agents']:,} idle: Redis CPU (% core)",
            [100 * large["idle_core_share"]],
            100 * TARGET_IDLE_CORE,
            target=f"<= {100 * TARGET_IDLE_CORE:g}%",
        )
    )
    ratio = large["commands_per_job"] / small["commands_per_job"]
    out.append(
        at_most(
            f"fleet: commands/job {sizes}",
            [large["commands_per_job"]],
            TARGET_COMMANDS_RATIO,
            baseline=small["commands_per_job"],
            ratio=ratio,
            judged=ratio,
            target=f"ratio <= {TARGET_COMMANDS_RATIO:g}",
        )
    )
    out.append(
        at_most(
            f"fleet {large['agents']:,}: p99 enqueue-to-claim (ms)",
            [large["p99_ms"]],
            TARGET_P99_MS,
            target=f"p99 <= {TARGET_P99_MS:g} ms",
        )
    )
    depth = result["depth"]
    if not depth:
        return out
    deep, shallow = depth[f"round_{depth['depth']}"], depth["round_1000"]
    out.append(
        at_least(
            f"claim rate (ops/s): depth {depth['depth']:,}",
            [deep["per_s"]],
            0.75,
            baseline=shallow["per_s"],
            ratio=deep["per_s"] / shallow["per_s"],
            judged=deep["per_s"] / shallow["per_s"],
            target="ratio to depth 1,000 >= 0.75",
            note=f"filled in {depth['fill_s_' + str(depth['depth'])]:.1f} s; Redis {depth['used_memory_mib']:.0f} MiB",
        )
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,100,1000", help="fleet sizes, comma-separated (10,100 with --quick)")
    parser.add_argument("--processes", type=int, default=4, help="worker processes holding the agents")
    parser.add_argument("--rate", type=float, default=10.0, help="jobs enqueued per second in the load phase")
    parser.add_argument("--run-s", type=float, default=0.5, help="how long each fake job runs")
    parser.add_argument("--idle-s", type=float, help="length of the idle phase (default 15, 10 with --quick)")
    parser.add_argument("--load-s", type=float, help="length of the load phase (default 15, 5 with --quick)")
    parser.add_argument("--no-one", dest="one", action="store_false", help="leave out the one-agent figure")
    parser.add_argument(
        "--depth", type=int, help="deep queue for the claim rate (default 1,000,000; 100,000 quick; 0: none)"
    )
    parser.add_argument("--quick", action="store_true", help="shorter phases, a 100,000-deep queue")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    if options.quick and options.sizes == "10,100,1000":  # real agents: 1,000 of them take minutes to start
        options.sizes = "10,100"
    options.idle_s = options.idle_s or (10.0 if options.quick else 15.0)
    options.load_s = options.load_s or (5.0 if options.quick else 15.0)
    depth = options.depth if options.depth is not None else (100_000 if options.quick else 1_000_000)
    sizes = [int(s) for s in options.sizes.split(",")]
    result = {
        "sizes": [measure_size(size, options) for size in sizes],
        "one": measure_size(1, options, rate=2.0) if options.one else None,
        "depth": measure_depth(depth) if depth else None,
        "settings": {**{k: v for k, v in vars(options).items() if k != "json"}, "slots": SLOTS, "cpus": os.cpu_count()},
    }
    emit(
        rows(result),
        result,
        options.json,
        f"Fleet: real agents in {options.processes} processes, {options.rate:g} jobs/s",
    )


if __name__ == "__main__":
    main()
