"""Helpers for the fault and security tests (no tests here): agent processes, a recorder of
container lifetimes from Docker events, a private dockerd, and Redis snapshots.

The control-plane helpers (queues, jobs written the way the client writes them, polling) live in
``tests/agent/test_control_support.py`` and the CLI helpers in ``tests/queue/queue_helpers.py``;
this module puts both folders on ``sys.path`` so the tests here reuse them, whichever folder
pytest collected first.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional, Set, Tuple

_TESTS = Path(__file__).resolve().parent.parent
for _folder in ("agent", "queue"):
    if str(_TESTS / _folder) not in sys.path:
        sys.path.append(str(_TESTS / _folder))

from conftest import BIN_DIR  # noqa: E402
from launchbay.agent.runtime import AGENT_ID_LABEL, JOB_ID_LABEL, MANAGED_LABEL  # noqa: E402
from launchbay.queue_config.keys import Keys  # noqa: E402
from launchbay.queue_config.lifecycle import Records  # noqa: E402
from queue_helpers import cli, cli_popen, redis_snapshot  # noqa: E402
from test_control_support import agent_settings, make_queue, put_job, record, wait_for  # noqa: E402

__all__ = [
    "FAST_BEATS",
    "TERMINAL",
    "AgentFleet",
    "AgentProcess",
    "ContainerLifetimes",
    "PrivateDockerd",
    "agent_settings",
    "cli",
    "cli_popen",
    "eof_entries",
    "ledger_sizes",
    "log_lines",
    "make_queue",
    "put_job",
    "record",
    "records_of",
    "redis_snapshot",
    "state_of",
    "unique_path",
    "wait_for",
]

TERMINAL = {"finished", "failed", "canceled"}
#: Beats short enough for tests, a lost-agent window (TTL + grace, 6 s) longer than an agent restart.
FAST_BEATS = {
    "LAUNCHBAY_AGENT_HEARTBEAT_INTERVAL_S": "0.5",
    "LAUNCHBAY_AGENT_HEARTBEAT_TTL_S": "3",
    "LAUNCHBAY_AGENT_LOST_GRACE_S": "3",
    "LAUNCHBAY_AGENT_REAPER_INTERVAL_S": "0.5",
    "LAUNCHBAY_AGENT_INVENTORY_REFRESH_S": "2",
    "LAUNCHBAY_AGENT_STOP_GRACE_S": "2",
    "LAUNCHBAY_AGENT_POLL_INTERVAL_S": "1",
}


def log_lines(conn, job_id: str) -> List[str]:
    """The ``line`` entries of the job's Redis log stream, in order."""
    return [
        fields[b"line"].decode("utf-8", errors="replace")
        for _, fields in conn.xrange(Keys().job_log(job_id))
        if b"line" in fields
    ]


def eof_entries(conn, job_id: str) -> List[str]:
    return [fields[b"eof"].decode() for _, fields in conn.xrange(Keys().job_log(job_id)) if b"eof" in fields]


def state_of(conn, job_id: str) -> Optional[str]:
    state = conn.hget(Keys().job(job_id), "state")
    return state.decode() if state else None


def ledger_sizes(conn, agent_ids: Iterable[str]) -> Dict[str, int]:
    return {agent_id: conn.hlen(Keys().agent_ledger(agent_id)) for agent_id in agent_ids}


def records_of(conn, job_ids: Iterable[str]) -> List[Dict[str, Any]]:
    """The records of ``job_ids`` (``{"id", "state": None}`` for one that is missing)."""
    records = Records(conn, Keys())
    return [records.as_json(job_id) or {"id": job_id, "state": None} for job_id in job_ids]


# -- agent processes ------------------------------------------------------------------------------


class AgentProcess:
    """One ``launchbay agent`` process; its stderr goes to ``log_path`` (appended across restarts)."""

    def __init__(self, agent_id: str, args: List[str], env: Dict[str, str], log_path: Path) -> None:
        self.agent_id = agent_id
        self.args = args
        self.env = env
        self.log_path = log_path
        self.proc: Optional[subprocess.Popen] = None
        self.starts = 0
        self._log_offset = 0

    def start(self) -> AgentProcess:
        self._log_offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(BIN_DIR / "launchbay"), "agent", *self.args], env=self.env, stdout=log, stderr=log
            )
        self.starts += 1
        return self

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, as a crash or an OOM kill would: no clean-up code runs."""
        if self.running:
            self.proc.send_signal(signal.SIGKILL)
        if self.proc is not None:
            self.proc.wait(30)

    def serving(self) -> bool:
        """Whether this start of the process has logged that it serves its queues."""
        with self.log_path.open("rb") as log:
            log.seek(self._log_offset)
            return f"agent {self.agent_id} serving".encode() in log.read()

    def wait_serving(self, timeout_s: float = 60) -> None:
        wait_for(lambda: self.serving() or not self.running, timeout_s=timeout_s, what=f"{self.agent_id} to serve")

    def terminate(self, timeout_s: float = 30) -> int:
        """SIGTERM once this start is serving (a restart can take seconds on a busy host), then the exit code."""
        if self.running:
            self.wait_serving()
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(30)

    def output(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""


class AgentFleet:
    """Starts ``launchbay agent`` processes with distinct ids and state dirs.

    :meth:`close` kills every process it started and removes every container labelled with one of
    their agent ids, pass or fail (the tests call it from a fixture finalizer).
    """

    def __init__(
        self,
        redis_url: str,
        workdir: Path,
        docker_client: Any,
        *,
        env: Optional[Dict[str, str]] = None,
        beats: Optional[Dict[str, str]] = None,
    ) -> None:
        """``beats`` replaces FAST_BEATS (``{}``: the agent's own defaults); ``env`` goes over both."""
        self.redis_url = redis_url
        self.workdir = workdir
        self.docker_client = docker_client
        self.env = {**os.environ, **(FAST_BEATS if beats is None else beats), **(env or {})}
        self.agents: Dict[str, AgentProcess] = {}

    def start(
        self, agent_id: str, *extra: str, queues: Tuple[str, ...] = ("rel",), env: Optional[Dict[str, str]] = None
    ) -> AgentProcess:
        args = ["--redis-url", self.redis_url, "--agent-id", agent_id, "--state-dir", str(self.state_dir(agent_id))]
        for queue in queues:
            args += ["-q", queue]
        agent = AgentProcess(agent_id, [*args, *extra], {**self.env, **(env or {})}, self.workdir / f"{agent_id}.log")
        self.agents[agent_id] = agent
        return agent.start()

    def state_dir(self, agent_id: str) -> Path:
        return self.workdir / agent_id

    def restart(self, agent_id: str) -> AgentProcess:
        """Kill (SIGKILL) and start again with the same id, state dir and options."""
        agent = self.agents[agent_id]
        agent.kill()
        return agent.start()

    def output(self) -> str:
        return "\n".join(f"--- {a.agent_id} ---\n{a.output()[-4000:]}" for a in self.agents.values())

    def containers(self) -> List[str]:
        """Ids of the containers (running or not) of these agents; one list call, no inspect that could race."""
        found = []
        for agent_id in self.agents:
            summaries = self.docker_client.api.containers(all=True, filters={"label": f"{AGENT_ID_LABEL}={agent_id}"})
            found += [summary["Id"] for summary in summaries]
        return found

    def close(self) -> None:
        for agent in self.agents.values():
            with contextlib.suppress(Exception):
                agent.kill()
        for container_id in self.containers():
            with contextlib.suppress(Exception):
                self.docker_client.api.remove_container(container_id, force=True)


# -- container lifetimes from Docker events ---------------------------------------------------------


class ContainerLifetimes:
    """Records when each launchbay container starts and dies, from the engine's event stream.

    Docker events are the engine's own account, so two containers of one job alive at the same
    moment show up even if they lived for milliseconds, which sampling ``docker ps`` could miss.
    """

    def __init__(self, docker_client: Any) -> None:
        self.docker_client = docker_client
        self.events: List[Tuple[int, str, str, str]] = []  # (time ns, action, container id, job id)
        self._stream: Any = None
        self._thread: Optional[threading.Thread] = None
        self._since = int(time.time()) - 1

    def __enter__(self) -> ContainerLifetimes:
        self._stream = self.docker_client.events(
            decode=True, since=self._since, filters={"type": "container", "label": f"{MANAGED_LABEL}=1"}
        )
        self._thread = threading.Thread(target=self._read, name="docker-events", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    def _read(self) -> None:
        with contextlib.suppress(Exception):  # the stream raises when it is closed
            for event in self._stream:
                action = event.get("Action") or event.get("status") or ""
                if action not in ("create", "start", "die", "destroy"):
                    continue
                attributes = (event.get("Actor") or {}).get("Attributes") or {}
                self.events.append((int(event["timeNano"]), action, event["id"], attributes.get(JOB_ID_LABEL, "")))

    def close(self, settle_s: float = 1.0) -> None:
        if self._stream is None:
            return
        time.sleep(settle_s)  # events of the last moments are still on their way
        with contextlib.suppress(Exception):
            self._stream.close()
        if self._thread is not None:
            self._thread.join(10)
        self._stream = None

    def intervals(self) -> Dict[str, List[Tuple[str, int, float]]]:
        """``{job id: [(container id, started ns, died ns or inf)]}`` for every container that started."""
        started: Dict[str, Tuple[str, int]] = {}
        ended: Dict[str, int] = {}
        for when, action, container_id, job_id in sorted(self.events):
            if action == "start" and container_id not in started:
                started[container_id] = (job_id, when)
            elif action in ("die", "destroy") and container_id not in ended:
                ended[container_id] = when
        by_job: Dict[str, List[Tuple[str, int, float]]] = collections.defaultdict(list)
        for container_id, (job_id, when) in started.items():
            by_job[job_id].append((container_id, when, ended.get(container_id, float("inf"))))
        return dict(by_job)

    def overlapping_jobs(self) -> Dict[str, List[str]]:
        """Jobs that had two containers alive at one moment, with those containers."""
        overlapping = {}
        for job_id, spans in self.intervals().items():
            spans.sort(key=lambda span: span[1])
            for earlier, later in zip(spans, spans[1:]):
                if later[1] < earlier[2]:
                    overlapping[job_id] = [span[0][:12] for span in spans]
                    break
        return overlapping

    def jobs_started_more_than_once(self) -> Dict[str, int]:
        return {job_id: len(spans) for job_id, spans in self.intervals().items() if len(spans) > 1}


# -- a second, private Docker engine ---------------------------------------------------------------


class PrivateDockerd:
    """A dockerd of its own (socket, data root, exec root, pid file), stopped and started by the test.

    It runs in a network namespace of its own (``unshare --net``) with ``--bridge=none
    --iptables=false``: a dockerd started with ``--bridge=none`` *deletes* the host's ``docker0``
    at start-up, which in the shared namespace would cut off every container of the engine the
    other tests use. Its containers get no network. Images come from the main engine through
    ``docker save | docker load``. :meth:`close` stops it and deletes its folders; :meth:`start`
    fails loudly if the host's ``docker0`` disappeared anyway.
    """

    def __init__(self) -> None:
        # Short paths: the unix sockets under the exec root must fit in 108 bytes.
        self.root = Path(tempfile.mkdtemp(prefix="lbd2-", dir="/tmp"))
        self.socket = self.root / "d.sock"
        self.url = f"unix://{self.socket}"
        self.pidfile = self.root / "d.pid"
        self.log_path = self.root / "dockerd.log"
        self.proc: Optional[subprocess.Popen] = None

    def start(self, timeout_s: float = 60) -> PrivateDockerd:
        bridge_before = _host_has_docker0()
        args = [
            "unshare", "--net", "dockerd",
            "--host", self.url,
            "--data-root", str(self.root / "data"),
            "--exec-root", str(self.root / "x"),
            "--pidfile", str(self.pidfile),
            "--bridge=none",
            "--iptables=false",
            "--ip-masq=false",
        ]  # fmt: skip
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(args, stdout=log, stderr=log)
        wait_for(self.answers, timeout_s=timeout_s, what=f"the private dockerd on {self.url} to answer")
        if bridge_before and not _host_has_docker0():
            self.close()
            raise RuntimeError("the private dockerd removed the host's docker0 bridge; the shared engine needs it back")
        return self

    def answers(self) -> bool:
        result = subprocess.run(["docker", "-H", self.url, "version"], capture_output=True, timeout=30, check=False)
        return result.returncode == 0

    def stop(self, timeout_s: float = 60) -> None:
        """SIGTERM, as ``systemctl stop docker`` does: the engine stops its containers on the way out."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(30)

    def load_image(self, image: str, from_host: Optional[str] = None) -> None:
        """Copy ``image`` from the main engine (``from_host``, default $DOCKER_HOST) with save | load."""
        env = dict(os.environ)
        if from_host:
            env["DOCKER_HOST"] = from_host
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE, env=env)
        load = subprocess.run(
            ["docker", "-H", self.url, "load"], stdin=save.stdout, capture_output=True, timeout=300, check=False
        )
        save.stdout.close()
        save.wait(60)
        if load.returncode != 0 or save.returncode != 0:
            raise RuntimeError(f"docker save | docker load of {image} failed: {load.stderr.decode(errors='replace')}")

    def client(self) -> Any:
        import docker

        return docker.DockerClient(base_url=self.url, timeout=60)

    def close(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(Exception):
                for container_id in subprocess.run(
                    ["docker", "-H", self.url, "ps", "-aq"], capture_output=True, text=True, timeout=30, check=False
                ).stdout.split():
                    subprocess.run(
                        ["docker", "-H", self.url, "rm", "-f", container_id], capture_output=True, timeout=60
                    )
        self.stop()
        # Anything the engine left mounted under its root must go before the folder can.
        with contextlib.suppress(Exception):
            for line in reversed(Path("/proc/mounts").read_text().splitlines()):
                target = line.split()[1]
                if target.startswith(str(self.root)):
                    subprocess.run(["umount", "-l", target], capture_output=True, timeout=30, check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _host_has_docker0() -> bool:
    return Path("/sys/class/net/docker0").exists()


def unique_path(prefix: str) -> Path:
    """A path in /tmp that nothing has used: for files a hostile job must NOT manage to create."""
    return Path(tempfile.gettempdir()) / f"{prefix}-{uuid.uuid4().hex}"


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """Mount a tmpfs on ``path`` (root only) for the block; unmounted afterwards, even on failure."""
    path.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", ",".join(options or ("size=1m",)), "tmpfs", str(path)], check=True)
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, check=False)


def can_mount_tmpfs() -> bool:
    if os.geteuid() != 0 or shutil.which("mount") is None:
        return False
    probe = Path(tempfile.mkdtemp(prefix="lb-tmpfs-probe-"))
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(probe)], capture_output=True)
        if done.returncode != 0:
            return False
        subprocess.run(["umount", str(probe)], capture_output=True, check=False)
        return True
    finally:
        shutil.rmtree(probe, ignore_errors=True)


def agents_json(redis_url: str) -> List[Dict[str, Any]]:
    result = cli(redis_url, "agents", "--json", "--all")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def live_containers_by_job(docker_client: Any, agent_ids: Set[str]) -> Dict[str, List[str]]:
    """``{job id: [container ids]}`` of running containers of these agents (one ``docker ps``)."""
    found: Dict[str, List[str]] = collections.defaultdict(list)
    for container in docker_client.containers.list(filters={"label": f"{MANAGED_LABEL}=1"}, ignore_removed=True):
        labels = container.labels
        if labels.get(AGENT_ID_LABEL) in agent_ids:
            found[labels.get(JOB_ID_LABEL, "")].append(container.id)
    return dict(found)
