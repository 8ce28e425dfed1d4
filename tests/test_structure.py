"""The design of the code, checked from its syntax trees (docs/architecture.md).

No import cycle; no function over 60 lines; every module opens with a docstring whose first line
names its one concern; no module reaches into another object's ``_private`` attributes; job states
compared only in the record module; job hashes written only by the lifecycle module.

A module's length is not a rule: one that outgrows its concern is split by concern, never packed or
stripped of its docstrings to fit a number. Modules over ``REPORT_MODULE_LINES`` are printed (``-s``
shows them) as a hint to look, not failed.

Pure: reads the source, starts nothing.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Set, Tuple

import job_reads
import tomllib

ROOT = Path(__file__).resolve().parent.parent
#: Modules longer than this are listed as information (run with ``-s``), never failed.
REPORT_MODULE_LINES = 500
MAX_FUNCTION_LINES = 60
#: The module that owns the job record and its states.
RECORD_MODULE = "launchbay.queue_config.job"
#: The module that owns every change to a job hash.
LIFECYCLE_MODULE = "launchbay.queue_config.lifecycle"
JOB_STATES = {"queued", "starting", "running", "finished", "failed", "canceled"}
#: Docker's container statuses share two words with job states; these modules compare only those.
CONTAINER_STATUS_MODULES = {"launchbay.agent.runtime", "launchbay.agent.runtime_fake"}
#: Redis commands that change a hash or its lifetime.
HASH_WRITES = {"hset", "hsetnx", "hmset", "hdel", "hincrby", "hincrbyfloat", "expire", "persist", "delete"}
#: The agent's composition root and the most it may hold: a new concern arrives as a service built
#: there, not as more state of the root (issue 22: it had grown to 39 attributes and 26 imports).
ROOT_MODULE, ROOT_CLASS = "launchbay.agent.daemon", "Agent"
ROOT_MAX_ATTRIBUTES, ROOT_MAX_IMPORTS = 20, 12
#: The most reads of a job's stored fields outside the record module that go around ``JobRecord``
#: (tests/job_reads.py says what counts), each saying why with ``# dict read:`` on its line. 79 when
#: issue 22 was filed and 59 after its first round, counted by job-only names on any dict; the count
#: that also traces shared names (``state``, ``queue``, ``spec`` ...) to job dicts and sees
#: constants, loops, HGETs and HMGETs found 96 before the CLI, client, UI and agent read records.
MAX_JOB_FIELD_DICT_READS = 5
#: Private attributes read on an object other than ``self``/``cls`` outside the module that defines them,
#: each with the reason it is allowed. Everything else of that kind is a failure.
PRIVATE_ACCESS_ALLOWED = {
    # ``namedtuple._replace`` (here on ``urllib.parse.SplitResult``) is public API; the underscore only
    # keeps it clear of the tuple's field names.
    ("launchbay.redis_connection.connect", "_replace"): "namedtuple API",
    # The job author's ``run.config`` object (wandb's shape) keeps launchbay's own setter out of the
    # names a job may use; the SDK's state module is the one caller.
    ("launchbay.sdk.state", "_set_overrides"): "kept out of the job author's namespace",
    # Optuna gives a trial's storage id only as ``_trial_id``; ``optuna.trial.Trial(study, id)`` needs it
    # to set a user attribute on a trial that is already asked.
    ("launchbay.sweeps.driver", "_trial_id"): "Optuna has no public trial id",
    # W&B's DataStore opens a run file only by path (following symlinks, read-write); the follower
    # hands it a handle opened safely and then asks it to read the header, which it has no public call for.
    ("launchbay.metric_stream.wandb_run", "_read_header"): "W&B's reader has no public call for a given handle",
}


def package_dirs() -> Dict[str, Path]:
    """``launchbay.X`` -> its folder, from pyproject's ``[tool.setuptools.package-dir]``."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return {name: ROOT / folder for name, folder in config["tool"]["setuptools"]["package-dir"].items()}


def modules() -> Dict[str, Path]:
    """Every module of the installed packages, by dotted name (``__init__`` is the package itself)."""
    found: Dict[str, Path] = {}
    for package, folder in package_dirs().items():
        for path in sorted(folder.glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


def trees() -> Iterator[Tuple[str, Path, ast.Module]]:
    for name, path in modules().items():
        yield name, path, ast.parse(path.read_text(), filename=str(path))


def imported(name: str, tree: ast.Module, known: Set[str]) -> Set[str]:
    """Our modules that ``name`` imports anywhere in its text (type-checking and lazy imports too)."""
    package = name if name in package_dirs() else name.rsplit(".", 1)[0]
    out: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*parts, base] if base else parts)
            # ``from pkg import mod`` imports the module ``pkg.mod``; ``from pkg import name`` imports ``pkg``.
            for alias in node.names:
                out.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base)
    return {module for module in out if module in known and module != name}


def import_graph() -> Dict[str, Set[str]]:
    known = set(modules())
    return {name: imported(name, tree, known) for name, _, tree in trees()}


def find_cycle(graph: Dict[str, Set[str]]) -> Optional[List[str]]:
    """One import cycle as ``[a, b, ..., a]``, or None."""
    done: Set[str] = set()
    path: List[str] = []
    on_path: Set[str] = set()

    def visit(node: str) -> Optional[List[str]]:
        path.append(node)
        on_path.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt in on_path:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in done:
                cycle = visit(nxt)
                if cycle:
                    return cycle
        on_path.discard(node)
        path.pop()
        done.add(node)
        return None

    for start in sorted(graph):
        if start not in done:
            cycle = visit(start)
            if cycle:
                return cycle
    return None


def is_state_literal(node: ast.AST) -> bool:
    if isinstance(node, ast.Constant):
        return node.value in JOB_STATES
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return any(is_state_literal(element) for element in node.elts)
    return False


def state_comparisons(tree: ast.Module) -> List[int]:
    """Lines that compare something with a job-state string literal."""
    return [
        node.lineno
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare) and any(is_state_literal(side) for side in [node.left, *node.comparators])
    ]


def is_job_key(node: ast.AST, job_key_names: Set[str]) -> bool:
    """``keys.job(...)`` (any object's ``.job``), or a local name assigned from one."""
    if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "job":
        return True
    return isinstance(node, ast.Name) and node.id in job_key_names


def job_hash_writes(tree: ast.Module) -> List[int]:
    """Lines that write a job hash: a hash write whose key is ``keys.job(...)``."""
    lines = []
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        names = {
            target.id
            for node in ast.walk(function)
            if isinstance(node, ast.Assign) and is_job_key(node.value, set())
            for target in node.targets
            if isinstance(target, ast.Name)
        }
        for node in ast.walk(function):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in HASH_WRITES
                and node.args
                and is_job_key(node.args[0], names)
            ):
                lines.append(node.lineno)
    return sorted(set(lines))


# -- the checks --------------------------------------------------------------------------------------


def test_package_dir_maps_every_package_to_a_folder_with_modules():
    for package, folder in package_dirs().items():
        assert (folder / "__init__.py").is_file(), f"{package} -> {folder} has no __init__.py"
    assert {"launchbay.queue_config.job", "launchbay.queue_config.lifecycle"} <= set(modules())


def test_the_import_graph_has_no_cycle():
    graph = import_graph()
    assert graph["launchbay.agent.daemon"], "the graph builder found no imports; it is broken"
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_long_modules_are_listed_not_failed():
    long = {
        name: n for name, path in modules().items() if (n := len(path.read_text().splitlines())) > REPORT_MODULE_LINES
    }
    for name, lines in sorted(long.items(), key=lambda item: -item[1]):
        print(f"information: {name} has {lines} lines (over {REPORT_MODULE_LINES}); is it still one concern?")


def concern_line(tree: ast.Module) -> Optional[str]:
    """The first line of a module's docstring, or None when the module opens without one."""
    docstring = ast.get_docstring(tree, clean=False)
    if docstring is None:
        return None
    return docstring.lstrip("\n").splitlines()[0].strip() if docstring.strip() else ""


def test_every_module_opens_with_a_docstring_naming_its_concern():
    missing = [name for name, _, tree in trees() if not concern_line(tree)]
    assert not missing, f"modules without a docstring whose first line names their concern: {missing}"


def test_the_docstring_check_sees_a_missing_docstring():
    assert concern_line(ast.parse('"""Keys of Redis, built in one place.\n\nMore."""\nx = 1\n')) == (
        "Keys of Redis, built in one place."
    )
    assert concern_line(ast.parse("import os\n")) is None
    assert concern_line(ast.parse('"""\n\n"""\n')) == ""


def names_defined(tree: ast.Module) -> Set[str]:
    """Every name a module defines: functions, classes, assigned names and attributes it assigns."""
    defined: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            defined.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            defined.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            defined.add(node.id)
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name):
            defined.add(node.target.id)
    return defined


def private_reaches(tree: ast.Module) -> List[Tuple[int, str, str]]:
    """``x._name`` where ``x`` is not ``self`` or ``cls`` and this module does not define ``_name``.

    (line, attribute, the expression). A module may use its own privates on any object of its own
    classes (a helper reading its owner's state); dunders are Python's, not privates.
    """
    defined = names_defined(tree)
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Attribute) or not node.attr.startswith("_") or node.attr.startswith("__"):
            continue
        if isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"):
            continue
        if node.attr not in defined:
            found.append((node.lineno, node.attr, ast.unparse(node)))
    return found


def test_no_module_reaches_into_another_objects_private_attributes():
    found = {
        name: [f"{line}: {text}" for line, attr, text in reaches if (name, attr) not in PRIVATE_ACCESS_ALLOWED]
        for name, _, tree in trees()
        if (reaches := private_reaches(tree))
    }
    found = {name: lines for name, lines in found.items() if lines}
    assert not found, f"private attributes of another module's objects read (pass what is needed instead): {found}"


def test_the_private_access_check_sees_a_reach():
    source = "def f(agent):\n    return agent._closing, self._own\n"
    assert private_reaches(ast.parse(source)) == [(2, "_closing", "agent._closing")]
    own = "class A:\n    def __init__(self):\n        self._x = 1\n\ndef f(a):\n    return a._x, a.__dict__\n"
    assert private_reaches(ast.parse(own)) == []


def test_no_function_is_over_the_line_limit():
    long = []
    for name, _, tree in trees():
        for node in ast.walk(tree):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                length = (node.end_lineno or node.lineno) - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{name}.{node.name} ({length} lines)")
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_job_states_are_compared_only_in_the_record_module():
    found = {
        name: lines
        for name, _, tree in trees()
        if name != RECORD_MODULE and name not in CONTAINER_STATUS_MODULES
        if (lines := state_comparisons(tree))
    }
    assert not found, f"job-state literals compared outside {RECORD_MODULE} (use job.State): {found}"


def test_the_state_literal_check_sees_a_comparison():
    assert state_comparisons(ast.parse("x = record.get('state') == 'running'")) == [1]
    assert state_comparisons(ast.parse("x = state in ('queued', 'starting')")) == [1]
    assert state_comparisons(ast.parse("x = state == State.QUEUED")) == []


def test_only_the_lifecycle_module_writes_a_job_hash():
    found = {name: lines for name, _, tree in trees() if name != LIFECYCLE_MODULE if (lines := job_hash_writes(tree))}
    assert not found, f"job hashes written outside {LIFECYCLE_MODULE}: {found}"


def test_the_job_hash_check_sees_a_write():
    source = (
        "def f(conn, keys):\n    key = keys.job('1')\n    conn.hset(key, 'a', 1)\n    conn.hdel(keys.job('1'), 'b')\n"
    )
    assert job_hash_writes(ast.parse(source)) == [3, 4]
    assert job_hash_writes(ast.parse("def f(conn, keys):\n    conn.hget(keys.job('1'), 'a')\n")) == []


def test_claim_lua_clears_the_run_fields_the_record_module_lists():
    from launchbay.queue_config.job import CANCEL_FIELDS, CLAIM_SETS, PENDING_FIELDS, RUN_FIELDS

    script = (ROOT / "queue_config" / "claim.lua").read_text()
    call = script[script.index("redis.call('HDEL', job_key,") :].split(")", 1)[0]
    cleared = set(re.findall(r"'([a-z_]+)'", call)) - {"HDEL"}
    # one HDEL: the previous run's fields and the waiting job's pending fields
    assert cleared == (set(RUN_FIELDS) - set(CLAIM_SETS) - set(CANCEL_FIELDS)) | set(PENDING_FIELDS)


def attributes_set(tree: ast.Module, class_name: str) -> Set[str]:
    """The ``self.X`` a class assigns anywhere in its methods (tuple targets and ``self.a = self.b = ...`` too)."""
    found: Set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == class_name:
            for inner in ast.walk(node):
                if (
                    isinstance(inner, ast.Attribute)
                    and isinstance(inner.ctx, ast.Store)
                    and isinstance(inner.value, ast.Name)
                    and inner.value.id == "self"
                ):
                    found.add(inner.attr)
    return found


def test_the_agent_root_only_composes():
    tree = ast.parse(modules()[ROOT_MODULE].read_text())
    attributes = attributes_set(tree, ROOT_CLASS)
    ours = import_graph()[ROOT_MODULE]
    print(f"information: {ROOT_CLASS} sets {len(attributes)} attributes, imports {len(ours)} launchbay modules")
    assert len(attributes) <= ROOT_MAX_ATTRIBUTES, f"{ROOT_CLASS} sets {len(attributes)}: {sorted(attributes)}"
    assert len(ours) <= ROOT_MAX_IMPORTS, f"{ROOT_MODULE} imports {len(ours)} of our modules: {sorted(ours)}"


def test_the_attribute_count_sees_every_assignment():
    source = "class A:\n    def __init__(self):\n        self.a, self.b = 1, 2\n        self.c = self.d = 3\n"
    assert attributes_set(ast.parse(source), "A") == {"a", "b", "c", "d"}


def job_field_reads() -> Dict[str, List[job_reads.Read]]:
    """Reads of job fields around ``JobRecord`` (tests/job_reads.py), by module, outside the record module."""
    paths = modules()
    fields = job_reads.job_fields(paths[RECORD_MODULE].read_text())
    sources = {name: path.read_text() for name, path in paths.items() if name != RECORD_MODULE}
    known = job_reads.constants(path.read_text() for path in paths.values())
    found = job_reads.find_all(sources, fields, known)
    return {name: reads for name, reads in found.items() if reads}


def test_job_fields_are_read_from_the_record_and_each_dict_read_left_says_why():
    """``-s`` lists the reads that go around ``JobRecord``; each says why on its line (``# dict read: ...``)."""
    reads = job_field_reads()
    total = sum(len(found) for found in reads.values())
    print(f"information: {total} reads of job fields around JobRecord outside {RECORD_MODULE} in {len(reads)} modules")
    for name, found in sorted(reads.items()):
        print(f"  {name}: {', '.join(f'{r.line} {r.field}' + ('' if r.noted else ' (no reason)') for r in found)}")
    assert total <= MAX_JOB_FIELD_DICT_READS, (
        f"{total} reads of job fields from dicts (at most {MAX_JOB_FIELD_DICT_READS}): read the job as a JobRecord "
        f"(queue_config/job.py)"
    )
    unexplained = {name: [r.line for r in found if not r.noted] for name, found in reads.items()}
    unexplained = {name: lines for name, lines in unexplained.items() if lines}
    assert not unexplained, f"dict reads of job fields that do not say why ('{job_reads.NOTE} ...'): {unexplained}"


def counted(source: str, extra: str = "") -> List[Tuple[int, str]]:
    """The reads ``tests/job_reads.py`` finds in ``source`` (with the record module's own field list)."""
    fields = job_reads.job_fields(modules()[RECORD_MODULE].read_text())
    known = job_reads.constants([source, extra])
    return [(read.line, read.field) for read in job_reads.find_all({"m": source}, fields, known)["m"]]


def test_the_job_field_counter_sees_reads_whatever_the_names():
    # a job-only field on any dict, a noted read still counted, an attribute read not at all
    source = 'a = thing.get("file_overrides")\nb = thing["summary"]  # dict read: why\nc = record.summary\n'
    assert counted(source) == [(1, "file_overrides"), (2, "summary")]
    # a constant naming a field, bytes, a loop over field names, a state's time written as an f-string
    source = (
        "def f(x, state):\n    a = x[CANCEL_REQUESTED]\n    b = x[b'preemptions']\n"
        "    for name in ('pending_reason', 'pending_detail'):\n        c = x.pop(name)\n"
        "    return x.get(f'{state}_at')\n"
    )
    assert counted(source, 'CANCEL_REQUESTED = "cancel_requested"\n') == [
        (2, "cancel_requested"), (3, "preemptions"), (5, "pending_reason"), (6, "<state>_at"),
    ]  # fmt: skip
    # a shared name ("state", "spec") counts on a job dict, whatever the variable is called, and not on another dict
    source = (
        "def f(records, sweeps, conn, keys, job_id):\n    zz = records.as_json(job_id) or {}\n"
        "    other = sweeps.get(job_id)\n    return zz['state'], other['state'], dict(zz).get('spec')\n"
    )
    assert counted(source) == [(4, "spec"), (4, "state")]
    # traced through a raw HGETALL, a loop over job dicts, a method that returns one, and ``self.X``
    source = (
        "class A:\n    def load(self):\n        return from_hash(self.conn.hgetall(self.keys.job(self.id)))\n"
        "    def start(self):\n        self.kept = self.load()\n    def run(self):\n        return self.kept['queue']\n"
        "def g(conn, keys, ids):\n    for one in [conn.hgetall(keys.job(i)) for i in ids]:\n        print(one['name'])\n"
    )
    assert counted(source) == [(7, "queue"), (10, "name")]
    # a dict that is read for a job-only field is a job dict: its shared names count too
    assert counted("def f(d):\n    return d['queued_at'], d['queue']\n") == [(2, "queue"), (2, "queued_at")]
    # a function handed a job dict reads one, whatever its parameter is called
    source = "def f(x):\n    return x.get('priority')\ndef g(records, i):\n    return f(records.as_json(i))\n"
    assert counted(source) == [(2, "priority")]
    # straight from Redis: an HGET of a job field, an HMGET unpacked into names
    source = (
        "def f(conn, keys, j):\n    s = conn.hget(keys.job(j), 'state')\n"
        "    reason, message = conn.hmget(keys.job(j), ['cancel_reason', 'cancel_message'])\n"
    )
    assert counted(source) == [(2, "state"), (3, "cancel_reason")]
    # whether a job's dict holds a field is a read of it; a field name looked up in another collection is not
    source = "def f(records, i, d):\n    return 'queue' in records.as_json(i), 'queue' in d, 'summary' in NAMES\n"
    assert counted(source) == [(2, "queue")]
    # an HMGET of a job's fields counts unless this module reads its answer through the record
    source = (
        "def f(pipe, keys, j):\n    pipe.hmget(keys.job(j), NAMES)\n    pipe.hmget(keys.job(j), *OTHER)\n"
        "    return JobRecord.from_values(j, NAMES, pipe.execute()[0])\n"
    )
    assert counted(source, 'NAMES = ("state",)\nOTHER = ("agent", "queue")\n') == [(3, "agent")]
