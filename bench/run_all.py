"""Run every benchmark, print one table, and write ``bench/results.json``; ``bench/run`` calls this.

Each figure runs in its own process (``--json``), one after the other, so none disturbs another.
A script that fails gives an ERROR row and a non-zero exit; a missed target does not.

    bench/run [--quick] [--only NAME ...] [--out bench/results.json]
    bench/run --markdown        # print the table of bench/results.json as markdown (for docs/benchmarks.md)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

from _common import BENCH_DIR, Row, docker_available, machine, markdown_table, render_table

#: name -> (script, needs Docker, extra args for a full run, extra args for --quick)
FIGURES: Dict[str, Tuple[str, bool, List[str], List[str]]] = {
    "packing": ("simulate.py", False, [], []),
    "sdk_startup": ("sdk_startup.py", False, ["--runs", "20"], ["--runs", "10"]),
    "claim_rate": ("claim_rate.py", False, [], ["--rounds", "2"]),
    "metrics": ("metrics_stream.py", False, [], ["--runs", "1"]),
    "idle_agent": ("idle_agent.py", True, [], ["--quick"]),
    "dispatch": ("dispatch.py", True, [], ["--runs", "8"]),
    "gang": ("gang.py", True, [], ["--quick"]),
    "throughput": ("throughput.py", True, [], ["--jobs", "32", "--rounds", "1"]),
    "sweeps": ("sweeps.py", True, [], ["--quick"]),
    "fleet": ("fleet.py", False, [], ["--quick"]),
    "commands_per_job": ("commands_per_job.py", False, [], []),
    "fleet_processes": ("fleet_processes.py", True, [], ["--quick"]),
    "sweep_efficiency": ("sweep_efficiency.py", False, ["--jobs", "2", "--check-prefix"], ["--quick"]),
}
SDK_TARGET_MS = 50.0


def sdk_rows(data: Dict[str, Any]) -> List[Row]:
    """``bench/sdk_startup.py`` keeps its own JSON shape; turn it into a row."""
    row = Row(
        "SDK start-up, added (ms)",
        [data["added_min_ms"], data["added_median_ms"], data["added_max_ms"]],
        baseline=data["baseline_median_ms"],
        target=f"median < {SDK_TARGET_MS:g} ms",
        judged=data["added_median_ms"],
        passed=data["verdict"] == "PASS",
        note=f"{data['runs']} runs, {data['payload_keys']}-key payload; baseline: python -c 'import yaml' (subtracted)",
    )
    return [row]


def run_figure(name: str, quick: bool) -> Tuple[List[Row], Dict[str, Any]]:
    script, _, full_args, quick_args = FIGURES[name]
    command = [sys.executable, str(BENCH_DIR / script), "--json", *(quick_args if quick else full_args)]
    began = time.monotonic()
    done = subprocess.run(command, capture_output=True, text=True, cwd=BENCH_DIR.parent)
    elapsed = round(time.monotonic() - began, 1)
    if done.returncode != 0:
        error = (done.stderr or done.stdout).strip().splitlines()
        row = Row(f"{name}: ERROR", [], note=error[-1] if error else f"exit {done.returncode}")
        return [row], {"error": done.stderr[-4000:], "elapsed_s": elapsed}
    data = json.loads(done.stdout.strip().splitlines()[-1])
    if name == "sdk_startup":
        return sdk_rows(data), {**data, "elapsed_s": elapsed}
    return [Row.from_dict(r) for r in data["rows"]], {**data["details"], "elapsed_s": elapsed}


def print_markdown(results: Dict[str, Any]) -> None:
    host = results["machine"]
    print(
        f"{host['mode']} run, {host['date']}, {host['elapsed_s']:.0f} s: {host['nproc']} CPUs ({host['cpu_model']}), "
        f"{host['memory_gib']} GiB, Docker {host['docker_server']}, kernel {host['kernel']}, Python {host['python']}, "
        f"load average at start {host['load_average']}\n"
    )
    rows = [Row.from_dict(r) for r in results["rows"]]
    print(markdown_table(rows))
    for row in rows:
        if row.note and row.note != "baseline":
            print(f"\n- {row.figure}: {row.note}", end="")
    print()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer samples: under 2 minutes on a quiet machine")
    parser.add_argument("--only", nargs="+", choices=sorted(FIGURES), help="run only these figures")
    parser.add_argument("--out", type=Path, default=BENCH_DIR / "results.json", help="where to write the JSON")
    parser.add_argument(
        "--markdown", action="store_true", help="print the last results (--out) as markdown; run nothing"
    )
    options = parser.parse_args()
    if options.markdown:
        print_markdown(json.loads(options.out.read_text()))
        return
    host = machine()
    no_docker = docker_available()
    rows: List[Row] = []
    details: Dict[str, Any] = {}
    began = time.monotonic()
    for name in options.only or FIGURES:
        if FIGURES[name][1] and no_docker:
            rows.append(Row(f"{name}: not measured", [], note=no_docker))
            continue
        print(f"running {name} ...", file=sys.stderr, flush=True)
        figure_rows, details[name] = run_figure(name, options.quick)
        rows += figure_rows
    host["elapsed_s"] = round(time.monotonic() - began, 1)
    host["mode"] = "quick" if options.quick else "full"
    print(
        f"launchbay benchmarks ({host['mode']}), {host['date']}: {host['nproc']} CPUs ({host['cpu_model']}), "
        f"{host['memory_gib']} GiB, Docker {host['docker_server']}, load average at start {host['load_average']}"
    )
    print(render_table(rows))
    for row in rows:
        if row.note and row.note != "baseline":
            print(f"  {row.figure}: {row.note}")
    print(f"{host['elapsed_s']:.0f} s; details in {options.out}")
    options.out.write_text(
        json.dumps({"machine": host, "rows": [r.to_dict() for r in rows], "details": details}, indent=1) + "\n"
    )
    errors = [r for r in rows if r.figure.endswith(": ERROR")]
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
