"""What the SDK adds to a job's start-up: import, a 1,000-key payload, init, load and a file patch.

Each sample is a fresh interpreter (``sys.executable``), timed from spawn to exit, so the figure
is what a job pays. The baseline, measured in the same session and interleaved with the work,
is ``python -c "import yaml"``: PyYAML is in every job image anyway. The added cost of a run is
its time minus the baseline median. Target: a median under 50 ms.

Bytecode is cached (in a temporary ``PYTHONPYCACHEPREFIX``, even where the shell sets
``PYTHONDONTWRITEBYTECODE``), as it is for a package pip installed into a job image; the
warm-up runs fill the cache for both commands.

    .venv/bin/python bench/sdk_startup.py [--runs 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGET_MS = 50.0
GROUPS, KEYS_PER_GROUP = 20, 50  # 1,000 leaves

JOB = """
import launchbay.sdk as sdk

base = {f"group{g}": {f"param{k}": k * 0.5 for k in range(KEYS_PER_GROUP)} for g in range(GROUPS)}
sdk.manage_config(include=[f"group{g}" for g in range(15)], exclude=["group3.param7", "group4"])
sdk.manage_config_file("config.yaml", exclude="private")
with sdk.init(config=base) as run:
    overrides = sdk.load_config()
    assert run.config["group0"]["param0"] == "v0" and "group4" not in overrides
""".replace("KEYS_PER_GROUP", str(KEYS_PER_GROUP)).replace("GROUPS", str(GROUPS))

CONFIG_YAML = """\
# Training settings
learning_rate: 0.01  # tuned by hand
batch_size: 32
model:
  name: resnet
  depth: 50
private:
  token: abc
"""


def payload() -> dict:
    """1,000 nested keys of mixed types."""
    kinds = (lambda k: f"v{k}", lambda k: k, lambda k: k / 10, lambda k: k % 2 == 0, lambda k: [k, k + 1])
    return {
        f"group{g}": {f"param{k}": kinds[(g + k) % len(kinds)](k) for k in range(KEYS_PER_GROUP)} for g in range(GROUPS)
    }


def time_ms(command: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
    elapsed = (time.perf_counter() - start) * 1000
    if proc.returncode != 0:
        sys.exit(f"benchmark command failed: {' '.join(command)}\n{proc.stderr}")
    return elapsed


def measure(runs: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="sdk-startup-") as folder:
        root = Path(folder)
        inputs, workdir = root / "inputs", root / "job"
        inputs.mkdir()
        workdir.mkdir()
        (inputs / "run_config.json").write_text(json.dumps(payload()))
        file_overrides = {"config.yaml": {"learning_rate": 0.1, "model": {"depth": 101}, "private": {"token": "x"}}}
        (inputs / "file_overrides.json").write_text(json.dumps(file_overrides))
        (workdir / "job.py").write_text(JOB)
        env = {key: value for key, value in os.environ.items() if key != "PYTHONDONTWRITEBYTECODE"}
        env.update(
            LAUNCHBAY_INPUTS_DIR=str(inputs),
            LAUNCHBAY_OUTPUT_DIR=str(root / "output"),
            PYTHONPYCACHEPREFIX=str(root / "pycache"),
        )
        baseline_cmd = [sys.executable, "-c", "import yaml"]
        work_cmd = [sys.executable, "job.py"]

        baseline, work = [], []
        for index in range(runs + 2):  # the first two of each warm the disk cache and are dropped
            (workdir / "config.yaml").write_text(CONFIG_YAML)
            pair = (time_ms(baseline_cmd, workdir, env), time_ms(work_cmd, workdir, env))
            if index >= 2:
                baseline.append(pair[0])
                work.append(pair[1])

    base_median = statistics.median(baseline)
    added = [sample - base_median for sample in work]
    median = statistics.median(added)
    return {
        "runs": runs,
        "payload_keys": GROUPS * KEYS_PER_GROUP,
        "python": sys.version.split()[0],
        "baseline_median_ms": round(base_median, 2),
        "work_median_ms": round(statistics.median(work), 2),
        "added_median_ms": round(median, 2),
        "added_min_ms": round(min(added), 2),
        "added_max_ms": round(max(added), 2),
        "target_ms": TARGET_MS,
        "verdict": "PASS" if median <= TARGET_MS else "MISS",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20, help="samples of each command (default 20)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    options = parser.parse_args()
    result = measure(options.runs)
    if options.json:
        print(json.dumps(result))
        return
    print(f"SDK start-up, {result['payload_keys']}-key payload, {result['runs']} runs, Python {result['python']}")
    print(f"  baseline (python -c 'import yaml'): median {result['baseline_median_ms']:.1f} ms")
    print(f"  job with the SDK:                   median {result['work_median_ms']:.1f} ms")
    print(
        f"  added by the SDK: median {result['added_median_ms']:.1f} ms, "
        f"min {result['added_min_ms']:.1f} ms, max {result['added_max_ms']:.1f} ms"
    )
    print(f"  {result['verdict']}: target {TARGET_MS:.0f} ms (median)")


if __name__ == "__main__":
    main()
