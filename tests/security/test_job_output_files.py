"""Issue 13, finding 7: a job's output folder is a host folder, and a job running as root in its
container can ``chmod 4755`` a copy of a shell there. No other local user of the agent host may
reach it: the agent's ``<state_dir>/jobs`` is 0700, whatever the umask and the state dir's mode.
"""

from __future__ import annotations

import os
import stat
import subprocess
import tempfile
from pathlib import Path

import pytest
from security_helpers import AgentFleet, cli, make_queue, wait_for

pytestmark = [pytest.mark.integration, pytest.mark.docker]

NOBODY = 65534


@pytest.fixture
def open_state_dir():
    """A state dir any local user can traverse (as an operator might leave one)."""
    folder = Path(tempfile.mkdtemp(prefix="launchbay-state-", dir="/tmp"))
    folder.chmod(0o755)
    yield folder
    subprocess.run(["rm", "-rf", str(folder)], check=False)


@pytest.fixture
def fleet(redis_url, tmp_path, docker_client):
    fleet = AgentFleet(redis_url, tmp_path, docker_client)
    yield fleet
    fleet.close()


def as_nobody(*command: str) -> subprocess.CompletedProcess:
    setpriv = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"]
    return subprocess.run([*setpriv, *command], capture_output=True, text=True, timeout=30, check=False)


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to act as another local user")
def test_a_setuid_file_a_job_plants_in_its_output_folder_is_out_of_other_users_reach(
    redis_url, redis_conn, base_image, fleet, open_state_dir
):
    make_queue(redis_conn, "sec")
    script = 'cp /bin/sh "$LAUNCHBAY_OUTPUT_DIR/sh" && chmod 4755 "$LAUNCHBAY_OUTPUT_DIR/sh" && sleep 60'
    job_id = cli(redis_url, "enqueue", "--image", base_image, "-q", "sec", "--", "sh", "-c", script).stdout.strip()
    fleet.start("suid-agent", "--state-dir", str(open_state_dir), queues=("sec",))

    planted = open_state_dir / "jobs" / job_id / "output" / "sh"
    wait_for(lambda: planted.exists() and planted.stat().st_mode & stat.S_ISUID, timeout_s=90, what=fleet.output())
    assert planted.stat().st_uid == 0  # root on the host: usable for root by whoever can run it

    run_it = ["/bin/sh", "-c", f"{planted} -p -c 'id -u'"]  # through a shell: setpriv opens its argv[0] as root
    for probe in (["test", "-x", str(planted)], ["ls", str(planted.parent)], run_it):
        result = as_nobody(*probe)
        assert result.returncode != 0, (probe, result.stdout)
    assert stat.S_IMODE((open_state_dir / "jobs").stat().st_mode) == 0o700
    assert cli(redis_url, "cancel", job_id).returncode == 0
