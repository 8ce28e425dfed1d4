"""What the benchmark scripts share: statistics, the results table, a private Redis, a running agent.

Every figure is a row: its samples (min, median and max come from them), the baseline measured in
the same run, the ratio that is judged, the target and the verdict. Each script prints its rows
as a table, or as JSON with ``--json`` (what ``bench/run`` collects).
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
BIN_DIR = Path(sys.executable).parent
#: The image the Docker figures run: the test base image (python3 + PyYAML on Debian bookworm).
IMAGE = (
    os.environ.get("LAUNCHBAY_BENCH_IMAGE") or os.environ.get("LAUNCHBAY_TEST_BASE_IMAGE") or "launchbay-base:bookworm"
)
#: The container's first instruction: print the wall clock (coreutils date, no interpreter start-up).
FIRST_INSTRUCTION = ["date", "+%s.%N"]
COLUMNS = ("figure", "min", "median", "max", "baseline", "ratio", "target", "verdict")


@dataclass
class Row:
    """One line of the results table.

    ``judged`` is the number compared with the target (a median, a mean, a maximum or a ratio, as
    ``target`` says); ``passed`` is None for rows that only show a baseline.
    """

    figure: str
    samples: Sequence[float]
    baseline: Optional[float] = None
    ratio: Optional[float] = None
    target: str = ""
    judged: Optional[float] = None
    passed: Optional[bool] = None
    note: str = ""
    min: float = field(init=False)
    median: float = field(init=False)
    max: float = field(init=False)

    def __post_init__(self) -> None:
        values = list(self.samples) or [float("nan")]
        self.samples = [round(v, 6) for v in values]
        self.min, self.median, self.max = min(values), statistics.median(values), max(values)

    @property
    def verdict(self) -> str:
        return "-" if self.passed is None else ("PASS" if self.passed else "MISS")

    def to_dict(self) -> Dict[str, Any]:
        data = asdict(self)
        data["verdict"] = self.verdict
        return data

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> Row:
        fields = ("figure", "samples", "baseline", "ratio", "target", "judged", "passed", "note")
        return cls(**{name: data.get(name) for name in fields})


def at_most(figure: str, samples: Sequence[float], limit: float, *, judged: Optional[float] = None, **kw: Any) -> Row:
    """A row passing when ``judged`` (default: the ratio, else the median) is at most ``limit``."""
    row = Row(figure, samples, **kw)
    row.judged = judged if judged is not None else (row.ratio if row.ratio is not None else row.median)
    row.passed = row.judged <= limit
    return row


def at_least(figure: str, samples: Sequence[float], limit: float, *, judged: Optional[float] = None, **kw: Any) -> Row:
    row = Row(figure, samples, **kw)
    row.judged = judged if judged is not None else (row.ratio if row.ratio is not None else row.median)
    row.passed = row.judged >= limit
    return row


def fmt(value: Optional[float]) -> str:
    """Three significant digits, no exponent for everyday sizes."""
    if value is None:
        return ""
    if value != value:  # NaN
        return "n/a"
    magnitude = abs(value)
    if magnitude >= 1000:
        return f"{value:,.0f}"
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3f}"


def table_cells(row: Row) -> List[str]:
    return [
        row.figure,
        fmt(row.min),
        fmt(row.median),
        fmt(row.max),
        fmt(row.baseline),
        "" if row.ratio is None else f"{row.ratio:.3f}",  # three decimals: 1.004 is not "1.00"
        row.target,
        row.verdict,
    ]


def render_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table."""
    grid = [list(COLUMNS)] + [table_cells(r) for r in rows]
    widths = [max(len(line[i]) for line in grid) for i in range(len(COLUMNS))]
    numbers = {1, 2, 3, 4, 5}
    lines = []
    for line in grid:
        cells = [c.rjust(w) if i in numbers else c.ljust(w) for i, (c, w) in enumerate(zip(line, widths))]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def markdown_table(rows: Sequence[Row]) -> str:
    head = "| " + " | ".join(COLUMNS) + " |\n|" + "---|" * len(COLUMNS)
    return head + "".join("\n| " + " | ".join(table_cells(r)) + " |" for r in rows)


def emit(rows: Sequence[Row], details: Dict[str, Any], as_json: bool, title: str) -> None:
    """Print the rows as a table (with the details indented under it), or as one JSON object."""
    if as_json:
        print(json.dumps({"rows": [r.to_dict() for r in rows], "details": details}))
        return
    print(title)
    print(render_table(rows))
    for row in rows:
        if row.note:
            print(f"  {row.figure}: {row.note}")


def median(values: Sequence[float]) -> float:
    return statistics.median(values)


def ratio(value: float, baseline: float) -> float:
    return value / baseline if baseline else float("inf")


def interleaved(methods: Dict[str, Callable[[], float]], runs: int, warmup: int = 2) -> Dict[str, List[float]]:
    """Run each method ``warmup + runs`` times, rotating their order every round; drop the warm-up."""
    names = list(methods)
    samples: Dict[str, List[float]] = {name: [] for name in names}
    for index in range(warmup + runs):
        shift = index % len(names)
        for name in names[shift:] + names[:shift]:
            value = methods[name]()
            if index >= warmup:
                samples[name].append(value)
    return samples


# -- services -------------------------------------------------------------------------------------


class RedisServer:
    """A throwaway redis-server on a free loopback port, no persistence; a context manager."""

    def __init__(self) -> None:
        self.folder = Path(tempfile.mkdtemp(prefix="lb-bench-redis-"))
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = sock.getsockname()[1]
        self.proc: Optional[subprocess.Popen] = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def __enter__(self) -> RedisServer:
        if shutil.which("redis-server") is None:
            raise SystemExit("redis-server is not installed (apt-get install redis-server)")
        args = [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self.folder),
        ]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        wait_until(self._answers, 10, "redis-server to listen")
        return self

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=0.2):
                return True
        except OSError:
            return False

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
        shutil.rmtree(self.folder, ignore_errors=True)


def wait_until(predicate: Callable[[], Any], timeout_s: float, what: str, every_s: float = 0.02) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g} s waiting for {what}")
        time.sleep(every_s)


def job_output(conn: Any, job_id: str, timeout_s: float = 60) -> str:
    """The job's log lines once its stream says eof (XREAD BLOCK: no polling); raises if it did not finish."""
    from launchbay.queue_config.keys import Keys

    key, last, lines = Keys().job_log(job_id), "0", []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for _, entries in conn.xread({key: last}, block=1000, count=100) or []:
            for entry_id, fields in entries:
                last = entry_id
                if b"eof" in fields:
                    if fields[b"eof"] != b"finished":
                        raise RuntimeError(f"job {job_id} {fields[b'eof'].decode()}: {lines}")
                    return "\n".join(lines)
                lines.append(fields.get(b"line", b"").decode())
    raise TimeoutError(f"job {job_id} did not end within {timeout_s:g} s")


def apply_queues(conn: Any, *names: str) -> None:
    from launchbay.queue_config.models import QueueConfig
    from launchbay.queue_config.store import QueueStore

    store = QueueStore(conn)
    for name in names:
        store.apply(QueueConfig(name=name))


class AgentProcess:
    """``launchbay agent`` as users run it, in its own process; a context manager that waits until it is healthy."""

    def __init__(self, redis_url: str, queues: Sequence[str], *, agent_id: str = "bench", max_jobs: int = 8) -> None:
        self.agent_id = agent_id
        self.folder = Path(tempfile.mkdtemp(prefix="lb-bench-agent-"))
        self.args = [
            str(BIN_DIR / "launchbay"),
            "agent",
            "--redis-url",
            redis_url,
            "--agent-id",
            agent_id,
            "--max-jobs",
            str(max_jobs),
            "--state-dir",
            str(self.folder / "state"),
        ]
        for queue in queues:
            self.args += ["-q", queue]
        self.redis_url = redis_url
        self.proc: Optional[subprocess.Popen] = None

    @property
    def log_path(self) -> Path:
        return self.folder / "agent.log"

    def __enter__(self) -> AgentProcess:
        import redis
        from launchbay.queue_config.keys import Keys

        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=subprocess.STDOUT)
        conn = redis.Redis.from_url(self.redis_url)
        key = Keys().agent(self.agent_id)
        try:
            wait_until(lambda: self.proc.poll() is not None or conn.hget(key, "status") == b"healthy", 30, "the agent")
        finally:
            conn.close()
        if self.proc.poll() is not None:
            raise SystemExit(f"launchbay agent exited with {self.proc.returncode}:\n{self.log_path.read_text()}")
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.folder, ignore_errors=True)


def thread_cpu_seconds(pid: int, comm_prefix: str) -> float:
    """CPU seconds (user + system) of process ``pid``'s threads whose OS name starts with ``comm_prefix``.

    The OS name is ``/proc/PID/task/TID/comm`` (15 bytes); raises when no thread has it.
    """
    import psutil

    total, found = 0.0, False
    for thread in psutil.Process(pid).threads():
        try:
            comm = Path(f"/proc/{pid}/task/{thread.id}/comm").read_text().strip()
        except OSError:  # the thread ended
            continue
        if comm.startswith(comm_prefix):
            total, found = total + thread.user_time + thread.system_time, True
    if not found:
        raise RuntimeError(f"process {pid} has no thread named {comm_prefix}*")
    return total


def docker_available() -> Optional[str]:
    """None when the Docker engine answers and the bench image is there, else why not."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True)
    if probe.returncode != 0:
        return (
            f"docker cannot use image {IMAGE} ({probe.stderr.strip()[:200]}); set LAUNCHBAY_BENCH_IMAGE or DOCKER_HOST"
        )
    probe = subprocess.run(["docker", "run", "--rm", IMAGE, "true"], capture_output=True, text=True)
    if probe.returncode != 0:  # e.g. the engine's bridge (docker0) was deleted under it
        return f"docker run {IMAGE} fails: {probe.stderr.strip()[:300]}"
    return None


def machine() -> Dict[str, Any]:
    """What the figures were measured on."""
    cpu_model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        import psutil

        memory_gib = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        memory_gib = None
    docker_version = (
        subprocess.run(
            ["docker", "version", "--format", "{{.Server.Version}}"], capture_output=True, text=True
        ).stdout.strip()
        if shutil.which("docker")
        else ""
    )
    return {
        "date": time.strftime("%Y-%m-%d %H:%M %Z"),
        "nproc": os.cpu_count(),
        "cpu_model": cpu_model,
        "memory_gib": memory_gib,
        "docker_server": docker_version or "not reachable",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "load_average": [round(x, 2) for x in os.getloadavg()],
        "image": IMAGE,
    }


def first_timestamp(text: str) -> float:
    """The clock value the container printed first."""
    for line in text.splitlines():
        line = line.strip()
        if line:
            return float(line)
    raise ValueError(f"the container printed no timestamp: {text!r}")


def chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
