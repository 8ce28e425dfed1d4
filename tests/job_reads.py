"""Reads of a job's stored fields that go around ``JobRecord``, found in a module's syntax tree.

The structure test (tests/test_structure.py) counts them outside queue_config/job.py. A read is a
job field's name, taken from a dict or from Redis directly:

- ``d.get(K)``, ``d[K]``, ``d.pop(K)``, ``d.setdefault(K)``, and ``K in d`` on a job's dict, where
  ``K`` names a stored job field: written as a literal (text or bytes), as a module constant that
  holds it (``CANCEL_REQUESTED``), as a loop variable over a tuple of field names, or as
  ``f"{...}_at"`` (a state's time);
- ``conn.hget(keys.job(...), K)``, and an HMGET of a job key whose field list the module does not
  hand to ``JobRecord.from_values`` (or ``job.waiting``) to read the answer.

The field names come from ``JobRecord`` itself (its typed attributes, ``<state>_at`` for each
state), so a field added there is counted here without a change. Most names are the job's alone:
a read of one counts on any dict, whatever the variable is called. The names other stored
structures use too (:data:`SHARED_NAMES`: an agent's ``state``, a sweep's ``id``, a ledger entry's
``max_runtime_s``) count when the dict is a job's. That is traced through assignments, loops and
``self.X`` in each function and class, from a plain view of a job hash (:data:`PLAIN_VIEWS`,
``JobRecord.fields``, an HGETALL of a job key), a dict the same function reads a job-only field
from, a function of ours that returns one, or a parameter some call hands one to.

What it does not see: a key that arrives as a parameter, and the fields of a job being built
(a launch's, a sweep's template) until something reads a job-only name of them.

A read that has to stay carries ``# dict read: why`` on its line; it is still counted.

Pure: parses source text, imports nothing of launchbay's.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple

#: Each module is parsed once however many passes read it.
parse = functools.lru_cache(maxsize=None)(ast.parse)
#: A read that stays says why on its line with this comment.
NOTE = "# dict read:"
#: Job field names that other stored structures (agent hashes, sweeps, queue configs, ledger
#: entries, job definitions, inputs declarations, forms) use as well: counted on a traced job dict only.
SHARED_NAMES = frozenset(
    {
        "id", "name", "queue", "state", "reason", "message", "priority", "spec", "request", "constraints",
        "agent", "host", "gpus", "container", "max_runtime_s", "run_config", "submitter",
    }
)  # fmt: skip
#: Calls that give a job hash as a plain dict: the module function ``job.from_hash`` (not
#: ``JobRecord.from_hash``), the ``--json`` view (``JobRecord.as_json``, ``Records.as_json``) and
#: ``secrets.mask_record`` of it.
PLAIN_VIEWS = frozenset({"from_hash", "as_json", "mask_record"})
#: The record module's readers of an HMGET answer: an HMGET of a job key whose field list goes to one
#: of them is read through the record.
VALUE_READERS = frozenset({"from_values", "waiting"})
#: Calls that make a ``JobRecord`` (what code should read), even when handed a plain dict.
RECORD_MAKERS = frozenset({"JobRecord", "from_fields"})
#: A function of ours by one of these names is not taken for a maker of job dicts: ``x.get(k)`` is a
#: dict's, whatever ``x`` is (``Records`` reads a plain view as ``Records.as_json``, not ``get``).
DICT_METHODS = frozenset({"get", "pop", "setdefault", "copy", "items", "values", "keys", "update"})
#: Calls that give back a copy of the collection they are handed.
COPIES = frozenset({"dict", "list", "tuple", "sorted", "reversed"})
#: ``JobRecord.fields``: the record's fields as a plain dict.
PLAIN_VIEW_ATTRIBUTE = "fields"
#: A state's time field, ``f"{state}_at"``.
STATE_TIME = "<state>_at"
#: ``JobRecord`` attributes that are not a stored field's name.
DERIVED_ATTRIBUTES = frozenset({"times", "outcome", "fields", "problems", "wrong_shape", "submitter_field"})
FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)
DEFINITIONS = (*FUNCTIONS, ast.ClassDef)


def job_fields(record_source: str) -> Set[str]:
    """Every stored field name: ``JobRecord``'s typed attributes and ``<state>_at`` for each ``State``."""
    tree = parse(record_source)
    fields: Set[str] = {STATE_TIME}
    for node in ast.walk(tree):
        if isinstance(node, ast.ClassDef) and node.name == "JobRecord":
            fields |= {
                item.target.id
                for item in node.body
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name)
            } - DERIVED_ATTRIBUTES
        elif isinstance(node, ast.ClassDef) and node.name == "State":
            fields |= {
                f"{item.value.value}_at"
                for item in node.body
                if isinstance(item, ast.Assign) and isinstance(item.value, ast.Constant)
            }
    return fields


def constants(sources: Iterable[str]) -> Dict[str, Tuple[str, ...]]:
    """Module-level names bound to a text or a tuple of texts (``A = "x"``, ``B = ("x", A)``, ``C = B + A``)."""
    found: Dict[str, Tuple[str, ...]] = {}
    assigns = [
        node
        for source in sources
        for node in parse(source).body
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None
    ]
    for _ in range(3):  # names defined from names, up to three deep
        for node in assigns:
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            values = texts(node.value, found)
            for target in targets:
                if isinstance(target, ast.Name) and target.id.isupper() and values:
                    found[target.id] = values
    return found


def texts(node: Optional[ast.AST], known: Dict[str, Tuple[str, ...]]) -> Tuple[str, ...]:
    """The texts an expression stands for: a literal, a known constant, a tuple of them, a sum of tuples."""
    if isinstance(node, ast.Constant) and isinstance(node.value, (str, bytes)):
        value = node.value
        return (value.decode(errors="replace") if isinstance(value, bytes) else value,)
    if isinstance(node, ast.Name):
        return known.get(node.id, ())
    if isinstance(node, ast.Attribute):
        return known.get(node.attr, ())
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return tuple(text for element in node.elts for text in texts(element, known))
    if isinstance(node, ast.Starred):
        return texts(node.value, known)
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return texts(node.left, known) + texts(node.right, known)
    if isinstance(node, ast.JoinedStr) and node.values:
        last = node.values[-1]
        if isinstance(last, ast.Constant) and isinstance(last.value, str) and last.value.endswith("_at"):
            return (STATE_TIME,)
    return ()


def is_job_key(node: ast.AST) -> bool:
    """``keys.job(...)``: the key of a job hash."""
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "job"


@dataclass
class Facts:
    """What the modules together say of job dicts: the functions that return one (by name), and the
    parameters that are handed one (function name -> parameter names; names defined once only)."""

    producers: Set[str] = field(default_factory=set)
    parameters: Dict[str, Set[str]] = field(default_factory=dict)
    definitions: Dict[str, List[str]] = field(default_factory=dict)


def definitions(sources: Iterable[str]) -> Dict[str, List[str]]:
    """Function name -> its parameter names, for the names defined exactly once across ``sources``."""
    seen: Dict[str, List[List[str]]] = {}
    for source in sources:
        for node in ast.walk(parse(source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                arguments = [*node.args.posonlyargs, *node.args.args, *node.args.kwonlyargs]
                seen.setdefault(node.name, []).append([argument.arg for argument in arguments])
    return {name: found[0] for name, found in seen.items() if len(found) == 1}


def find_all(sources: Dict[str, str], fields: Set[str], known: Dict[str, Tuple[str, ...]]) -> Dict[str, List[Read]]:
    """The reads of each module (by the name ``sources`` gives it), once :class:`Facts` over every module
    settled (a few rounds: a function that returns another's job dict, or hands on one it was handed)."""
    facts = Facts(definitions=definitions(sources.values()))
    modules = {name: JobReads(source, fields, known, facts) for name, source in sources.items()}
    for _ in range(3):
        for module in modules.values():
            facts.producers |= module.returns_plain_view() - DICT_METHODS
            for name, parameters in module.passes_plain_views().items():
                facts.parameters.setdefault(name, set()).update(parameters)
    return {name: module.find() for name, module in modules.items()}


def bound_by(target: ast.AST, value: ast.AST, *, loop: bool = False) -> List[Tuple[ast.AST, Set[str]]]:
    """(value, names) pairs an assignment (or a loop, ``loop``) binds: a tuple target takes a tuple's
    elements one by one, and a loop over ``d.items()`` binds the value to the last name; any other
    tuple target binds nothing we can follow."""
    if isinstance(target, ast.Name):
        return [(value, {target.id})]
    if not isinstance(target, (ast.Tuple, ast.List)) or not target.elts:
        return []
    if not loop and isinstance(value, (ast.Tuple, ast.List)) and len(value.elts) == len(target.elts):
        return [pair for t, v in zip(target.elts, value.elts) for pair in bound_by(t, v)]
    if loop and called_name(value) == "items" and isinstance(value, ast.Call):
        assert isinstance(value.func, ast.Attribute)
        return bound_by(target.elts[-1], value.func.value, loop=True)
    return []


def alternatives(node: ast.AST) -> List[ast.AST]:
    """The expressions ``node`` may be: both branches of ``a if c else b``, what ``*x`` unpacks, else itself."""
    if isinstance(node, ast.IfExp):
        return alternatives(node.body) + alternatives(node.orelse)
    if isinstance(node, ast.Starred):
        return alternatives(node.value)
    return [node]


def called_name(node: ast.AST) -> Optional[str]:
    if not isinstance(node, ast.Call):
        return None
    if isinstance(node.func, ast.Name):
        return node.func.id
    if isinstance(node.func, ast.Attribute):
        return node.func.attr
    return None


@dataclass
class Read:
    line: int
    field: str
    noted: bool


class JobReads:
    """The job-field reads of one module (see the module docstring); :meth:`find` lists them."""

    def __init__(
        self, source: str, fields: Set[str], known: Dict[str, Tuple[str, ...]], facts: Optional[Facts] = None
    ) -> None:
        self.lines = source.splitlines()
        self.tree = parse(source)
        self.fields = fields
        self.only = fields - SHARED_NAMES
        self.known = dict(known)
        self.facts = facts or Facts()
        self.producers = self.facts.producers
        self._walks: Dict[int, List[ast.AST]] = {}
        self._reads: Dict[int, List[Tuple[ast.AST, Tuple[str, ...]]]] = {}
        self._cache: Dict[Tuple[str, int], Any] = {}
        self._top = ast.Module(body=[n for n in self.tree.body if not isinstance(n, DEFINITIONS)], type_ignores=[])

    def nodes(self, scope: ast.AST) -> List[ast.AST]:
        """``ast.walk(scope)``, walked once."""
        if id(scope) not in self._walks:
            self._walks[id(scope)] = list(ast.walk(scope))
        return self._walks[id(scope)]

    # -- what is a job dict ------------------------------------------------------------------------

    def is_plain_view(self, node: ast.AST, names: Set[str], attributes: Set[str]) -> bool:
        """Whether ``node`` holds a job hash as a plain dict, or a collection of them (the names and
        ``self.X`` given hold one)."""
        if isinstance(node, ast.Name):
            return node.id in names
        if isinstance(node, ast.Attribute):
            if node.attr == PLAIN_VIEW_ATTRIBUTE:
                return True
            return isinstance(node.value, ast.Name) and node.value.id == "self" and node.attr in attributes
        inner: List[ast.AST] = []
        if isinstance(node, ast.BoolOp):
            inner = node.values
        elif isinstance(node, ast.IfExp):
            inner = [node.body, node.orelse]
        elif isinstance(node, ast.Dict):
            inner = [value for key, value in zip(node.keys, node.values) if key is None]
        elif isinstance(node, (ast.List, ast.Set)):
            inner = node.elts
        elif isinstance(node, (ast.ListComp, ast.GeneratorExp, ast.SetComp)):
            inner = [node.elt]
        elif isinstance(node, (ast.Lambda, ast.Starred, ast.Await)):
            inner = [node.body if isinstance(node, ast.Lambda) else node.value]
        elif isinstance(node, ast.Subscript) and not texts(node.slice, self.known):
            inner = [node.value]  # one of a list or a dict of job dicts
        elif isinstance(node, ast.Call):
            return self._call_gives_plain_view(node, names, attributes)
        return any(self.is_plain_view(part, names, attributes) for part in inner)

    def _call_gives_plain_view(self, node: ast.Call, names: Set[str], attributes: Set[str]) -> bool:
        name = called_name(node)
        receiver = node.func.value if isinstance(node.func, ast.Attribute) else None
        if name in RECORD_MAKERS or (
            name == "from_hash" and receiver is not None and ast.unparse(receiver) == "JobRecord"
        ):
            return False
        if name in PLAIN_VIEWS or name in self.producers:
            return True
        if name == "hgetall":
            return bool(node.args) and is_job_key(node.args[0])
        if name in ("values", "items", "copy") and receiver is not None:
            return self.is_plain_view(receiver, names, attributes)
        if name in COPIES:
            return any(self.is_plain_view(argument, names, attributes) for argument in node.args)
        # ``self._redis(lambda: records.as_json(job_id))``: a call that runs a reader gives back what it read
        return any(isinstance(arg, ast.Lambda) and self.is_plain_view(arg, names, attributes) for arg in node.args)

    def returns_plain_view(self) -> Set[str]:
        """Functions and methods of this module that return a job hash as a plain dict (or a list of them)."""
        found: Set[str] = set()
        for scope, attributes, names in self._scopes():
            if not isinstance(scope, FUNCTIONS):
                continue
            for node in self.nodes(scope):
                returned = node.value if isinstance(node, ast.Return) else None
                if returned is not None and self.is_plain_view(returned, names, attributes):
                    found.add(scope.name)
        return found

    def passes_plain_views(self) -> Dict[str, Set[str]]:
        """Function name -> its parameters that a call in this module hands a job dict."""
        found: Dict[str, Set[str]] = {}
        for scope, attributes, names in self._scopes():
            for call in [node for node in self.nodes(scope) if isinstance(node, ast.Call)]:
                name = called_name(call)
                parameters = self.facts.definitions.get(name or "")
                if not parameters:
                    continue
                offset = 1 if parameters[0] in ("self", "cls") else 0
                for position, argument in enumerate(call.args):
                    if position + offset < len(parameters) and self.is_plain_view(argument, names, attributes):
                        found.setdefault(str(name), set()).add(parameters[position + offset])
                for keyword in call.keywords:
                    if keyword.arg in parameters and self.is_plain_view(keyword.value, names, attributes):
                        found.setdefault(str(name), set()).add(keyword.arg)
        return found

    def _scopes(self) -> List[Tuple[ast.AST, Set[str], Set[str]]]:
        """(scope, ``self.X`` holding job dicts, names holding job dicts) for the module's top level,
        each function, and each method (with its class's attributes)."""
        scopes: List[Tuple[ast.AST, Set[str]]] = [(self._top, set())]
        for cls in [node for node in self.nodes(self.tree) if isinstance(node, ast.ClassDef)]:
            attributes = self._self_attributes(cls)
            scopes += [(f, attributes) for f in self.nodes(cls) if isinstance(f, FUNCTIONS)]
        scopes += [(f, set()) for f in self._functions()]
        return [(scope, attributes, self._job_names(scope, attributes)) for scope, attributes in scopes]

    def _functions(self) -> List[ast.FunctionDef]:
        return [node for node in self.nodes(self.tree) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))]

    def _job_names(self, scope: ast.AST, attributes: Set[str]) -> Set[str]:
        """Names in ``scope`` that hold a job dict: assigned one, looped over a list of them, or read for a job-only field."""
        names: Set[str] = {
            obj.id for obj, key in self._dict_reads(scope) if isinstance(obj, ast.Name) and self._only(key)
        }
        if isinstance(scope, FUNCTIONS):
            names |= self.facts.parameters.get(scope.name, set())
        for _ in range(3):
            for value, bound in self._bindings(scope):
                if not bound <= names and self.is_plain_view(value, names, attributes):
                    names |= bound
        return names

    def _bindings(self, scope: ast.AST) -> List[Tuple[ast.AST, Set[str]]]:
        """(value, the names it binds) of each assignment and loop in ``scope`` (a loop binds each element)."""
        key = ("bindings", id(scope))
        if key not in self._cache:
            found: List[Tuple[ast.AST, Set[str]]] = []
            for node in self.nodes(scope):
                if isinstance(node, (ast.Assign, ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
                    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
                    found += [pair for target in targets for pair in bound_by(target, node.value)]
                elif isinstance(node, (ast.For, ast.comprehension)):
                    found += bound_by(node.target, node.iter, loop=True)
            self._cache[key] = found
        return self._cache[key]

    def _self_attributes(self, cls: ast.ClassDef) -> Set[str]:
        """``self.X`` a class assigns a job dict to."""
        attributes: Set[str] = set()
        for function in [n for n in self.nodes(cls) if isinstance(n, FUNCTIONS)]:
            names = self._job_names(function, attributes)
            for node in self.nodes(function):
                if isinstance(node, ast.Assign) and self.is_plain_view(node.value, names, attributes):
                    attributes |= {
                        t.attr
                        for t in node.targets
                        if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self"
                    }
        return attributes

    # -- the reads -------------------------------------------------------------------------------------

    def _only(self, key: Tuple[str, ...]) -> bool:
        return any(name in self.only for name in key)

    def _loop_names(self, scope: ast.AST) -> Dict[str, Tuple[str, ...]]:
        """Loop variables over a tuple of texts (``for name in PENDING_FIELDS``)."""
        found: Dict[str, Tuple[str, ...]] = {}
        for node in self.nodes(scope):
            if isinstance(node, (ast.For, ast.comprehension)) and isinstance(node.target, ast.Name):
                values = texts(node.iter, self.known)
                if values:
                    found[node.target.id] = values
        return found

    def _dict_reads(self, scope: ast.AST) -> List[Tuple[ast.AST, Tuple[str, ...]]]:
        """(the dict, the names its key may be) for each ``.get/.pop/.setdefault(K)`` and ``d[K]`` in scope."""
        if id(scope) not in self._reads:
            self._reads[id(scope)] = self._find_dict_reads(scope)
        return self._reads[id(scope)]

    def _find_dict_reads(self, scope: ast.AST) -> List[Tuple[ast.AST, Tuple[str, ...]]]:
        known = {**self.known, **self._loop_names(scope)}
        found = []
        for node in self.nodes(scope):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("get", "pop", "setdefault")
                and node.args
            ):
                found.append((node.func.value, texts(node.args[0], known)))
            elif isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                found.append((node.value, texts(node.slice, known)))
        return [(obj, key) for obj, key in found if any(name in self.fields for name in key)]

    def _memberships(self, scope: ast.AST) -> List[Tuple[ast.AST, Tuple[str, ...]]]:
        """(the container, the names the key may be) for each ``K in d`` / ``K not in d`` in scope: a read
        of whether a job stores a field, when ``d`` is a job dict."""
        known = {**self.known, **self._loop_names(scope)}
        found = []
        for node in self.nodes(scope):
            if isinstance(node, ast.Compare) and len(node.ops) == 1 and isinstance(node.ops[0], (ast.In, ast.NotIn)):
                key = texts(node.left, known)
                if any(name in self.fields for name in key):
                    found.append((node.comparators[0], key))
        return found

    def _redis_reads(self, scope: ast.AST) -> List[Tuple[int, str]]:
        """``hget(keys.job(...), K)``, and an HMGET of a job key whose field list this module does not
        hand to the record module's readers (:data:`VALUE_READERS`)."""
        found = []
        for node in self.nodes(scope):
            if called_name(node) == "hget" and len(node.args) == 2 and is_job_key(node.args[0]):
                found += [(node.lineno, name) for name in texts(node.args[1], self.known) if name in self.fields]
            elif called_name(node) == "hmget" and node.args and is_job_key(node.args[0]):
                lists = [part for arg in node.args[1:] for part in alternatives(arg)]
                if not all(ast.unparse(names) in self._read_lists() for names in lists):
                    names = [t for arg in node.args[1:] for t in texts(arg, self.known) if t in self.fields]
                    found += [(node.lineno, name) for name in names[:1]]
        return found

    def _read_lists(self) -> Set[str]:
        """The field lists (as written) this module hands to ``JobRecord.from_values`` or ``job.waiting``."""
        if ("lists", 0) not in self._cache:
            self._cache[("lists", 0)] = {
                ast.unparse(part)
                for node in self.nodes(self.tree)
                if called_name(node) in VALUE_READERS
                for argument in node.args  # type: ignore[attr-defined]
                for part in self.nodes(argument)
            }
        return self._cache[("lists", 0)]

    def find(self) -> List[Read]:
        """Every read, by line (one per field name and line)."""
        seen: Set[Tuple[int, str]] = set()
        for scope, attributes, names in self._scopes():
            for obj, key in self._dict_reads(scope):
                field_name = next((name for name in key if name in self.fields), "")
                if self._only(key) or self.is_plain_view(obj, names, attributes):
                    seen.add((obj.lineno, field_name))
            for container, key in self._memberships(scope):
                if self.is_plain_view(container, names, attributes):
                    seen.add((container.lineno, next(name for name in key if name in self.fields)))
            seen |= set(self._redis_reads(scope))
        return [Read(line, field_name, NOTE in self.lines[line - 1]) for line, field_name in sorted(seen)]
