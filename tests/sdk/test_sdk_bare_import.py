"""The SDK imports and works in a bare Python that has only PyYAML, as in any job image.

A temporary folder gets a copy of ``launchbay/__init__.py``, ``sdk/`` as ``launchbay/sdk/`` and
the venv's PyYAML. The interpreter runs with ``-I -S`` so no site-packages is visible, which the
test proves by failing to import pydantic there. Python 3.9 (the oldest we support) runs it too on a
machine that has one (the CI machine's pyenv does; a fresh Debian bookworm has only 3.11). Everywhere,
vermin reads the SDK's source and names the oldest Python each construct needs: at most 3.9.
"""

from __future__ import annotations

import glob
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("redis", "rq", "docker", "click", "jsonschema", "pydantic")

PROBE = r"""
import json, os, sys
sys.path.insert(0, os.environ["BARE_SITE"])
try:
    import pydantic  # noqa: F401
    pydantic_visible = True
except ImportError:
    pydantic_visible = False
import yaml
import launchbay.sdk as sdk
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
sdk.manage_config(include=["trainer"], exclude="trainer.private")
with sdk.init(config={"trainer": {"lr": 0.01, "private": {"key": "value"}}, "seed": 1}) as run:
    config = run.config.as_dict()
with open("config.yaml", "w") as f:
    f.write("lr: 0.01  # tuned\nname: resnet\n")
sdk.manage_config_file("config.yaml")
with open("config.yaml") as f:
    patched = f.read()
heavy_after = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
print(json.dumps({
    "version": list(sys.version_info[:2]),
    "pydantic_visible": pydantic_visible,
    "yaml": yaml.__file__,
    "heavy": heavy,
    "heavy_after": heavy_after,
    "config": config,
    "patched": patched,
}))
""".replace("HEAVY", repr(HEAVY))


def python39() -> str | None:
    for candidate in [shutil.which("python3.9"), *glob.glob("/root/.pyenv/versions/3.9*/bin/python3.9")]:
        if candidate and subprocess.run([candidate, "-c", ""], capture_output=True).returncode == 0:
            return candidate
    return None


@pytest.fixture(scope="module")
def bare_site(tmp_path_factory) -> Path:
    site = tmp_path_factory.mktemp("bare-site")
    (site / "launchbay").mkdir()
    shutil.copy(REPO / "launchbay" / "__init__.py", site / "launchbay" / "__init__.py")
    shutil.copytree(REPO / "sdk", site / "launchbay" / "sdk", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(
        REPO / "launchbay" / "wandb", site / "launchbay" / "wandb", ignore=shutil.ignore_patterns("__pycache__")
    )
    yaml_dir = Path(yaml.__file__).parent
    shutil.copytree(yaml_dir, site / "yaml", ignore=shutil.ignore_patterns("__pycache__"))
    if (yaml_dir.parent / "_yaml").is_dir():
        shutil.copytree(yaml_dir.parent / "_yaml", site / "_yaml", ignore=shutil.ignore_patterns("__pycache__"))
    return site


#: "3.9" only where such an interpreter exists: a run on a machine without one is not a skip, since
#: test_the_sdk_source_needs_at_most_python_3_9 checks the floor on every machine.
INTERPRETERS = ["current", *(["3.9"] if python39() else [])]


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_sdk_imports_and_round_trips_a_payload_with_only_pyyaml(bare_site, tmp_path, interpreter):
    executable = sys.executable if interpreter == "current" else python39()
    env = {
        "BARE_SITE": str(bare_site),
        "LAUNCHBAY_RUN_CONFIG": json.dumps({"trainer": {"lr": 0.5, "private": {"key": "leaked"}}, "seed": 9}),
        "LAUNCHBAY_FILE_OVERRIDES": json.dumps({"config.yaml": {"lr": 0.1}}),
        "LAUNCHBAY_OUTPUT_DIR": str(tmp_path / "out"),
    }

    proc = subprocess.run(
        [executable, "-I", "-S", "-c", PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["pydantic_visible"] is False
    assert result["yaml"].startswith(str(bare_site))
    assert result["heavy"] == []
    assert result["heavy_after"] == []
    assert result["config"] == {"trainer": {"lr": 0.5, "private": {"key": "value"}}, "seed": 1}
    assert result["patched"] == "lr: 0.1  # tuned\nname: resnet\n"
    assert proc.stderr == "launchbay: ignored overrides outside the job's inputs: trainer.private.key, seed\n"
    recorded = json.loads((tmp_path / "out" / "inputs.json").read_text())
    assert recorded["run_config"]["types"] == {"trainer": {"lr": "float"}}
    if interpreter == "3.9":
        assert result["version"] == [3, 9]


def test_importing_the_sdk_where_everything_is_installed_still_loads_none_of_the_heavy_packages():
    # In the venv redis, rq, docker, click, jsonschema and pydantic are all importable, so this
    # catches an optional ("try: import pydantic") import that the bare interpreter cannot see.
    code = (
        "import sys, json, launchbay.sdk as sdk\n"
        "sdk.manage_config(include='a', schema={'type': 'object'})\n"
        "sdk.init(config={'a': 1})\n"
        f"print(json.dumps(sorted({{n.split('.')[0] for n in sys.modules}} & set({HEAVY!r}))))"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


WANDB_PROBE = r"""
import json, os, sys
sys.path.insert(0, os.environ["BARE_SITE"])
import launchbay.wandb as wandb
from launchbay.wandb.sdk import launch
with wandb.init(project="p", config={"trainer": {"lr": 0.01}, "seed": 1}) as run:
    launch.manage_wandb_config(include=["trainer"])
    wandb.log({"loss": 0.5})
    config = run.config.as_dict()
heavy = sorted({name.split(".")[0] for name in sys.modules} & set(HEAVY))
print(json.dumps({"config": config, "heavy": heavy}))
""".replace("HEAVY", repr(HEAVY))


@pytest.mark.parametrize("interpreter", INTERPRETERS)
def test_launchbay_wandb_imports_and_logs_with_only_pyyaml(bare_site, tmp_path, interpreter):
    executable = sys.executable if interpreter == "current" else python39()
    env = {
        "BARE_SITE": str(bare_site),
        "LAUNCHBAY_RUN_CONFIG": json.dumps({"trainer": {"lr": 0.5}}),
        "LAUNCHBAY_OUTPUT_DIR": str(tmp_path / "out"),
    }

    proc = subprocess.run(
        [executable, "-I", "-S", "-c", WANDB_PROBE], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )

    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == {"config": {"trainer": {"lr": 0.5}, "seed": 1}, "heavy": []}
    (line,) = (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(line)["loss"] == 0.5


def test_the_sdk_source_needs_at_most_python_3_9():
    """vermin's reading of every module a job image gets: the SDK and the one-import W&B layer."""
    sources = [REPO / "sdk", REPO / "launchbay" / "wandb", REPO / "launchbay" / "__init__.py"]
    done = subprocess.run(
        [str(Path(sys.executable).parent / "vermin"), "--no-tips", "--violations", "-t=3.9-", *map(str, sources)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
