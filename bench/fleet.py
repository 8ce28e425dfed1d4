"""Fleet: what one Redis pays per job and per idle agent, with 10, 100 and 1,000 agents; and claims at depth 1M.

For each fleet size N, a fresh redis-server and N simulated agents (``fleet_agents.py``: each the
agent's own claim pass, ledger, heartbeat, idle offer and reaper, with the fake runtime's timers
for containers) in ``--processes`` worker processes. Three phases, measured with Redis's own
counters (INFO commandstats: calls; INFO cpu: used_cpu_sys + used_cpu_user):

1. heartbeats only (``--idle-s``): Redis CPU of N agents beating every ``heartbeat_interval_s``;
2. the idle fleet (``--idle-s``): beats, safety-net polls and reaper tries, no jobs;
3. load (``--load-s``): jobs enqueued through the client at ``--rate`` per second, each running
   ``--run-s``. Per job: Redis commands and CPU above the idle fleet's (phase 2's rate times the
   phase's length taken off, so the per-job figure is what the jobs cost; the total is shown too),
   enqueue-to-claim latency (``starting_at - queued_at`` of each record), lost races per claim.

Sized for the 2-core machine it runs on: 2 worker processes hold all N agents (one core for the
agents, one for Redis and the driver); 20 jobs/s of 0.5 s keeps about 10 running, so at N = 1,000
the fleet is mostly idle, the case the latency target names, and at N = 10 (4 slots each, room for
40) it is a quarter busy. The phases last a multiple of the reaper interval (5 s), so the lock
holder's read of every alive key falls as often into the idle phase as into the load phase. Targets, in one run: commands per job at 1,000 agents <= 2x at 10; p99 enqueue-to-claim at
1,000 agents <= 100 ms; heartbeats of 1,000 idle agents < 5% of one core of Redis CPU.

Then the claim rate with 1,000,000 jobs queued (100,000 with ``--quick``), filled by a Lua script in
chunks of 20,000, against 1,000 queued in the same run: ``claim_rate.py``'s 8 claimers, one round each.

    .venv/bin/python bench/fleet.py [--sizes 10,100,1000] [--rate 20] [--quick] [--json]
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

import redis
from _common import RedisServer, Row, apply_queues, at_least, at_most, emit, wait_until
from claim_rate import CAPACITY, FILL_BATCH, REQUEST, one_round, queue_for
from fleet_agents import FULL, HEARTBEATS_ONLY, serve
from launchbay.agent.settings import AgentSettings
from launchbay.client import enqueue
from launchbay.queue_config import rq_bridge
from launchbay.queue_config.job import State, to_hash
from launchbay.queue_config.keys import Keys
from launchbay.queue_config.matching import Capacity

QUEUE = "fleet"
SLOTS = 4
SPEC = {"name": "bench-fleet", "image": "none", "command": ["true"]}
TARGET_COMMANDS_RATIO = 2.0
TARGET_P99_MS = 100.0
TARGET_HEARTBEAT_CORE = 0.05


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


def commands_by_name(load: Dict[str, float], jobs: int) -> Dict[str, float]:
    """Every command of the load phase, per job (idle fleet included), the most frequent first."""
    counts = sorted(((v, k[4:]) for k, v in load.items() if k.startswith("cmd_") and v), reverse=True)
    return {name: round(count / jobs, 2) for count, name in counts}


def agent_settings(index: int, folder: Path) -> AgentSettings:
    return AgentSettings(
        agent_id=f"sim-{index:04d}", host=f"sim-host-{index:04d}", queues=[QUEUE], max_jobs=SLOTS, state_dir=folder
    )


def start_fleet(url: str, size: int, processes: int, run_s: float, folder: Path) -> Dict[str, Any]:
    context = multiprocessing.get_context("fork")
    shared = (context.Value("i", HEARTBEATS_ONLY), context.Queue(), context.Event(), context.Queue())
    capacity = Capacity(cpus=CAPACITY.cpus, memory_mib=CAPACITY.memory_mib, slots=SLOTS)
    everyone = [agent_settings(i, folder) for i in range(size)]
    procs = [
        context.Process(target=serve, args=(url, everyone[p::processes], capacity, run_s, shared), daemon=True)
        for p in range(processes)
    ]
    for proc in procs:
        proc.start()
    started = sum(shared[1].get(timeout=300) for _ in procs)
    assert started == size, f"{started} of {size} agents started"
    return {"procs": procs, "mode": shared[0], "stop": shared[2], "out": shared[3]}


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
    keys = Keys()

    def claimed() -> List[Any]:
        with conn.pipeline(transaction=False) as pipe:
            for job_id in job_ids:
                pipe.hmget(keys.job(job_id), ["queued_at", "starting_at"])
            values = pipe.execute()
        return values if all(started for _, started in values) else []

    values = wait_until(claimed, 120, "every job of the load phase to be claimed", every_s=0.2)
    return sorted(1000 * (float(started) - float(queued)) for queued, started in values)


def percentile(values: List[float], share: float) -> float:
    return values[min(len(values) - 1, int(share * len(values)))]


def measure_size(size: int, options: argparse.Namespace) -> Dict[str, Any]:
    with RedisServer() as server, tempfile.TemporaryDirectory(prefix="lb-fleet-") as folder:
        conn = redis.Redis.from_url(server.url)
        apply_queues(conn, QUEUE)
        fleet = start_fleet(server.url, size, options.processes, options.run_s, Path(folder))
        try:
            start = redis_counters(conn)
            time.sleep(options.idle_s)  # the phase's length is the measurement, not a wait for a condition
            beats = delta(start, redis_counters(conn))
            fleet["mode"].value = FULL
            start = redis_counters(conn)
            time.sleep(options.idle_s)
            idle = delta(start, redis_counters(conn))
            start = redis_counters(conn)
            job_ids = load_phase(conn, options.rate, options.load_s)
            latencies = latencies_ms(conn, job_ids)
            load = delta(start, redis_counters(conn))
        finally:
            fleet["stop"].set()
        reports = [fleet["out"].get(timeout=60) for _ in fleet["procs"]]
    return summarize(size, beats, idle, load, latencies, reports)


def summarize(size, beats, idle, load, latencies, reports) -> Dict[str, Any]:
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
        "heartbeat_core_share": beats["cpu_s"] / beats["at"],
        "heartbeat_commands_s": beats["commands"] / beats["at"],
        "idle_core_share": idle_cpu_s,
        "idle_commands_s": idle_commands_s,
        "passes": sum(r["passes"] for r in reports),
        "commands_per_job_by_name": commands_by_name(load, jobs),
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
        note = (
            f"{r['jobs']} jobs; total incl. idle fleet {r['commands_per_job_total']:.0f} commands, "
            f"Redis CPU {r['redis_cpu_ms_per_job']:.2f} ms/job (total {r['redis_cpu_ms_per_job_total']:.2f}); "
            f"claim latency p50 {r['p50_ms']:.1f} ms p99 {r['p99_ms']:.1f} ms; "
            f"{r['lost_races_per_claim']:.2f} lost races/claim; idle fleet {r['idle_commands_s']:.0f} commands/s, "
            f"{100 * r['idle_core_share']:.1f}% of a core; heartbeats {100 * r['heartbeat_core_share']:.2f}%"
        )
        out.append(Row(f"fleet {size:,} agents: Redis commands/job", [r["commands_per_job"]], note=note))
    small, large = by_size[min(by_size)], by_size[max(by_size)]
    out.append(
        at_most(
            f"fleet: commands/job {large['agents']:,} vs {small['agents']:,} agents",
            [large["commands_per_job"]],
            TARGET_COMMANDS_RATIO,
            baseline=small["commands_per_job"],
            ratio=large["commands_per_job"] / small["commands_per_job"],
            judged=large["commands_per_job"] / small["commands_per_job"],
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
    share = 100 * large["heartbeat_core_share"]
    out.append(
        at_most(
            f"fleet {large['agents']:,}: heartbeat Redis CPU (% core)",
            [share],
            100 * TARGET_HEARTBEAT_CORE,
            target=f"< {100 * TARGET_HEARTBEAT_CORE:g}%",
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
    parser.add_argument("--sizes", default="10,100,1000", help="fleet sizes, comma-separated")
    parser.add_argument("--processes", type=int, default=2, help="worker processes holding the agents")
    parser.add_argument("--rate", type=float, default=20.0, help="jobs enqueued per second in the load phase")
    parser.add_argument("--run-s", type=float, default=0.5, help="how long each fake job runs")
    parser.add_argument("--idle-s", type=float, help="length of each idle phase (default 10, 5 with --quick)")
    parser.add_argument("--load-s", type=float, help="length of the load phase (default 15, 5 with --quick)")
    parser.add_argument(
        "--depth", type=int, help="deep queue for the claim rate (default 1,000,000; 100,000 quick; 0: none)"
    )
    parser.add_argument("--quick", action="store_true", help="shorter phases, a 100,000-deep queue")
    parser.add_argument("--json", action="store_true", help="print the rows as one JSON object")
    options = parser.parse_args()
    options.idle_s = options.idle_s or (5.0 if options.quick else 10.0)
    options.load_s = options.load_s or (5.0 if options.quick else 15.0)
    depth = options.depth if options.depth is not None else (100_000 if options.quick else 1_000_000)
    sizes = [int(s) for s in options.sizes.split(",")]
    result = {
        "sizes": [measure_size(size, options) for size in sizes],
        "depth": measure_depth(depth) if depth else None,
        "settings": {**{k: v for k, v in vars(options).items() if k != "json"}, "slots": SLOTS, "cpus": os.cpu_count()},
    }
    emit(rows(result), result, options.json, f"Fleet: {options.processes} processes, {options.rate:g} jobs/s")


if __name__ == "__main__":
    main()
