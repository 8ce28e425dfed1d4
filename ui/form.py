"""The launch form, built from the inputs a job's last run recorded (pure: no Redis, no Flask).

A job records one section for its run config and one per managed config file, each with its
include/exclude prefixes, the type of every key and an optional JSON schema (``inputs.json``, see
docs/architecture.md). :func:`build_form` turns that into sections of fields, as W&B's launch
drawer does: the schema decides a field's widget, label, helper text and bounds; keys the schema
does not describe get a widget from their recorded type; keys under an exclude prefix (or outside
every include prefix) never appear. :func:`read_submission` turns the posted text back into
override trees, keeping only the fields the person filled in, so an empty field is "no override".

Nothing here judges the values: the client's ``enqueue`` does that, for the UI as for the CLI.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from launchbay.sdk.errors import SdkError
from launchbay.sdk.filtering import excluding_prefix, is_allowed, unflatten
from launchbay.sdk.paths import KeyPath, join_path, parse_prefixes
from launchbay.ui.form_bounds import _show, bounds_text, html_bounds, join_sentences

RUN_CONFIG = "run_config"
#: A config file's section id is this prefix and its path.
FILE_SECTION_PREFIX = "file:"
#: Suffix of the hidden input that says "this checkbox was touched, send its state".
CHECKBOX_SET_SUFFIX = "#set"
#: What a select shows for "leave the job's own value".
NO_OVERRIDE = "(job's value)"

# Widgets: how a field is drawn. Value types: how its text is read back.
NUMBER, SELECT, CHECKBOX, TEXT, JSON_TEXT = "number", "select", "checkbox", "text", "json"
_SCHEMA_VALUE_TYPES = {"integer": "int", "number": "float", "boolean": "bool", "string": "str", "object": "dict"}
_TYPE_WIDGETS = {"int": NUMBER, "float": NUMBER, "bool": CHECKBOX, "str": TEXT}


@dataclass(frozen=True)
class Option:
    """One choice of a select: ``value`` is the JSON text posted back, ``label`` what people read."""

    value: str
    label: str


@dataclass(frozen=True)
class Field:
    """One input of the form, for the key ``key_path`` of the section ``section``."""

    name: str
    section: str
    key_path: KeyPath
    label: str
    widget: str
    value_type: str
    help: str = ""
    bounds: str = ""
    html_min: str = ""
    html_max: str = ""
    step: str = ""
    options: Tuple[Option, ...] = ()
    initial: str = ""

    @property
    def key(self) -> str:
        """The dotted key, as ``--set`` takes it."""
        return join_path(self.key_path) if self.key_path else "(whole run config)"

    @property
    def checkbox_marker(self) -> str:
        return self.name + CHECKBOX_SET_SUFFIX

    @property
    def helper(self) -> str:
        """The description and the bounds, as sentences."""
        return join_sentences(self.help, self.bounds)

    @property
    def shows_key(self) -> bool:
        """Whether the dotted key says more than the label (``seed`` adds nothing to "Seed")."""
        return self.key.lower() != self.label.lower()


@dataclass(frozen=True)
class Group:
    """A nested object of the config: a fieldset holding its keys."""

    title: str
    key_path: KeyPath
    help: str = ""
    items: Tuple[Union[Field, Group], ...] = ()

    @property
    def key(self) -> str:
        return join_path(self.key_path)


@dataclass(frozen=True)
class Section:
    """The run config, or one config file: the inputs of one tree of overrides."""

    id: str
    title: str
    file: Optional[str] = None
    items: Tuple[Union[Field, Group], ...] = ()
    note: str = ""


@dataclass
class Submission:
    """What a posted form says: override trees, the text to show again, and unreadable fields."""

    run_config: Dict[str, Any] = field(default_factory=dict)
    files: Dict[str, Dict[str, Any]] = field(default_factory=dict)
    values: Dict[str, str] = field(default_factory=dict)
    errors: Dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class _Rules:
    """A section's include/exclude prefixes."""

    include: Sequence[KeyPath]
    exclude: Sequence[KeyPath]

    def excluded(self, parts: KeyPath) -> bool:
        return excluding_prefix(parts, self.include, self.exclude) is not None

    def allowed(self, parts: KeyPath) -> bool:
        return is_allowed(parts, self.include, self.exclude)


# -- building -----------------------------------------------------------------------------


def build_form(inputs: Optional[Mapping[str, Any]]) -> List[Section]:
    """The form's sections for a job's recorded inputs (None: the job has not run yet).

    Before a job's first run nothing says which keys it takes, so the run config is one JSON
    field; the SDK filters it inside the container.
    """
    if inputs is None:
        return [_unrecorded_section()]
    sections = []
    if inputs.get("run_config") is not None:
        sections.append(build_section(RUN_CONFIG, "Run config", inputs["run_config"]))
    for path, record in (inputs.get("files") or {}).items():
        sections.append(build_section(f"{FILE_SECTION_PREFIX}{path}", f"Config file {path}", record or {}, file=path))
    return sections


def build_section(section_id: str, title: str, record: Mapping[str, Any], *, file: Optional[str] = None) -> Section:
    """One section's fields from its recorded ``include``, ``exclude``, ``types`` and ``schema``."""
    try:
        rules = _Rules(
            parse_prefixes(record.get("include"), "include")[1], parse_prefixes(record.get("exclude"), "exclude")[1]
        )
    except SdkError as exc:
        return Section(section_id, title, file, note=f"Its recorded key prefixes are unreadable ({exc}).")
    schema = record.get("schema") if isinstance(record.get("schema"), dict) else None
    items = _items(section_id, schema, record.get("types"), (), rules)
    note = "" if items else "No key of this section accepts launch input."
    return Section(section_id, title, file, tuple(items), note)


def _unrecorded_section() -> Section:
    blob = Field(
        name=f"{RUN_CONFIG}:",
        section=RUN_CONFIG,
        key_path=(),
        label="Run-config overrides",
        widget=JSON_TEXT,
        value_type="dict",
        help='A JSON object, e.g. {"trainer": {"learning_rate": 0.1}}. This job has not run yet, '
        "so nothing says which keys it takes; the job keeps only those it declares.",
    )
    return Section(RUN_CONFIG, "Run config", items=(blob,))


def _items(section: str, schema: Optional[Mapping], types: Any, path: KeyPath, rules: _Rules) -> List:
    """The fields and fieldsets under ``path``: the schema's keys in its order, then typed keys it lacks."""
    properties = schema.get("properties") if schema and isinstance(schema.get("properties"), dict) else {}
    typed = types if isinstance(types, dict) else {}
    items: List[Union[Field, Group]] = []
    for key in [*properties, *(k for k in typed if k not in properties)]:
        parts = (*path, key)
        if rules.excluded(parts):
            continue
        child_schema, child_type = properties.get(key), typed.get(key)
        if _is_group(child_schema, child_type):
            children = _items(section, child_schema, child_type, parts, rules)
            if children:
                items.append(_group(child_schema, parts, children))
        elif rules.allowed(parts):
            items.append(_leaf(section, parts, child_schema, child_type))
    return items


def _is_group(schema: Optional[Mapping], recorded: Any) -> bool:
    if schema is not None:
        return schema.get("type") == "object" and bool(schema.get("properties"))
    return isinstance(recorded, dict) and bool(recorded)


def _group(schema: Optional[Mapping], parts: KeyPath, children: List) -> Group:
    schema = schema or {}
    return Group(str(schema.get("title") or parts[-1]), parts, str(schema.get("description") or ""), tuple(children))


def _leaf(section: str, parts: KeyPath, schema: Optional[Mapping], recorded: Any) -> Field:
    base = {"name": f"{section}:{join_path(parts)}", "section": section, "key_path": parts}
    if schema is not None:
        return Field(**base, **_schema_attributes(schema, parts))
    kind = recorded if isinstance(recorded, str) else "dict"
    widget = _TYPE_WIDGETS.get(kind, JSON_TEXT)
    help_text = {"list": "A JSON list.", "dict": "A JSON object."}.get(kind, "")
    if widget == JSON_TEXT and not help_text:
        help_text = f"Recorded as {kind}; enter any JSON value."
    step = {"int": "1", "float": "any"}.get(kind, "")
    value_type = kind if kind in ("int", "float", "bool", "str", "list", "dict") else "any"
    return Field(**base, label=parts[-1], widget=widget, value_type=value_type, help=help_text, step=step)


def _schema_attributes(schema: Mapping[str, Any], parts: KeyPath) -> Dict[str, Any]:
    kind = schema.get("type")
    value_type = _SCHEMA_VALUE_TYPES.get(str(kind), "any")
    attributes: Dict[str, Any] = {
        "label": str(schema.get("title") or parts[-1]),
        "value_type": value_type,
        "help": str(schema.get("description") or ""),
        "bounds": bounds_text(schema),
    }
    default = schema.get("default")
    if isinstance(schema.get("enum"), list):
        options = tuple(Option(json.dumps(value), _show(value)) for value in schema["enum"])
        initial = json.dumps(default) if "default" in schema else ""
        return {**attributes, "widget": SELECT, "options": options, "initial": initial}
    if kind in ("integer", "number"):
        low, high = html_bounds(schema)
        step = "1" if kind == "integer" else "any"
        initial = _show(default) if "default" in schema else ""
        return {**attributes, "widget": NUMBER, "html_min": low, "html_max": high, "step": step, "initial": initial}
    if kind == "boolean":
        return {**attributes, "widget": CHECKBOX, "initial": "true" if default is True else ""}
    if kind == "string":
        return {**attributes, "widget": TEXT, "initial": str(default) if "default" in schema else ""}
    initial = json.dumps(default) if "default" in schema else ""
    return {**attributes, "widget": JSON_TEXT, "help": attributes["help"] or "A JSON object.", "initial": initial}


def iter_fields(items: Sequence[Union[Field, Group, Section]]) -> Iterator[Field]:
    """Every field under ``items`` (sections, fieldsets or fields), in form order."""
    for item in items:
        if isinstance(item, Field):
            yield item
        else:
            yield from iter_fields(item.items)


# -- reading a submission -----------------------------------------------------------------


def read_submission(sections: Sequence[Section], form: Mapping[str, str]) -> Submission:
    """The overrides a posted form asks for; fields left empty are not overrides.

    Text is turned into values the way each widget promises (numbers, JSON, the chosen option);
    text that cannot be read at all (``abc`` in a number field, broken JSON) is an error on its
    field. Whether a value is allowed is not decided here.
    """
    result = Submission()
    leaves: Dict[str, Dict[KeyPath, Any]] = {}
    for item in iter_fields(sections):
        text = _posted_text(item, form)
        if text is None:
            continue
        result.values[item.name] = text
        try:
            value = parse_text(item, text)
        except ValueError as exc:
            result.errors[item.name] = str(exc)
            continue
        leaves.setdefault(item.section, {})[item.key_path] = value
    for section in sections:
        tree = _tree(leaves.get(section.id, {}))
        if tree and section.file is not None:
            result.files[section.file] = tree
        elif tree:
            result.run_config = tree
    return result


def _posted_text(item: Field, form: Mapping[str, str]) -> Optional[str]:
    """The field's text, or None when the person left it empty (or never touched the checkbox)."""
    if item.widget == CHECKBOX:
        if form.get(item.checkbox_marker) is None:
            return None
        return "true" if form.get(item.name) is not None else "false"
    text = form.get(item.name)
    if text is None or text.strip() == "":
        return None
    return text


def parse_text(item: Field, text: str) -> Any:
    """One field's text as a value; ValueError with a message for people when it cannot be read."""
    if item.widget == CHECKBOX:
        return text == "true"
    if item.widget == SELECT:
        try:
            return json.loads(text)
        except ValueError:
            return text  # not one of ours; the validation says what is allowed
    if item.widget == NUMBER:
        return _number(text, item.value_type)
    if item.widget == JSON_TEXT:
        return _json_value(item, text)
    return text


def _number(text: str, value_type: str) -> Union[int, float]:
    text = text.strip()
    try:
        value: Union[int, float] = int(text)
    except ValueError:
        try:
            value = float(text)
        except ValueError:
            raise ValueError(f"{text!r} is not a number") from None
        if not math.isfinite(value):
            raise ValueError(f"{text!r} is not a finite number") from None
    # A float key typed as "1" is still a float; an int key typed as "3.5" goes on as 3.5, so
    # that the validation names the mismatch exactly as it does for the CLI.
    return float(value) if value_type == "float" else value


def _json_value(item: Field, text: str) -> Any:
    try:
        value = json.loads(text)
    except RecursionError:  # far deeper than the 100 levels enqueue accepts
        raise ValueError("not accepted: nested too deeply") from None
    except ValueError as exc:
        where = f" (line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) else ""
        message = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        raise ValueError(f"not valid JSON: {message}{where}") from None
    if item.key_path == () and not isinstance(value, dict):
        raise ValueError('enter a JSON object, e.g. {"trainer": {"learning_rate": 0.1}}')
    return value


def _tree(leaves: Mapping[KeyPath, Any]) -> Dict[str, Any]:
    whole = leaves.get(())
    rest = {parts: value for parts, value in leaves.items() if parts}
    tree = unflatten(rest)
    return {**whole, **tree} if isinstance(whole, dict) else tree
