"""A job spec's ``inputs:`` declaration: which run-config keys and config files a launch may change.

The SDK records the same facts when a job runs (its ``inputs.json``), but a job that uses the real
``wandb`` never writes one, and a new job has not run yet. The declaration has the recorded
shape, less the types::

    inputs:
      run_config: {include: [trainer], exclude: [trainer.private], schema: {...}}
      files:
        config.yaml: {include: [epochs], schema: {...}}

Recorded inputs win when both exist (they describe the code that really ran); see
:func:`effective_inputs`.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Any, Dict, List, Mapping, Optional, Tuple

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError
from launchbay.sdk.errors import SdkError
from launchbay.sdk.paths import parse_prefixes
from pydantic import BaseModel, ConfigDict, Field, field_validator

#: ``spec.inputs_source`` in a job record: where the inputs enqueue checked against came from.
SOURCE_RECORDED = "recorded"
SOURCE_DECLARED = "declared"


class InputSection(BaseModel):
    """One section: the run config, or one config file."""

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True, serialize_by_alias=True)

    include: List[str] = Field(default_factory=list)
    exclude: List[str] = Field(default_factory=list)
    # "schema" shadows a pydantic attribute, hence the alias.
    input_schema: Optional[Dict[str, Any]] = Field(default=None, alias="schema")

    @field_validator("include", "exclude")
    @classmethod
    def _prefixes(cls, value: List[str], info: Any) -> List[str]:
        try:
            parse_prefixes(value, info.field_name)
        except SdkError as exc:
            raise ValueError(str(exc).removeprefix(f"{info.field_name}: ")) from exc
        return value

    @field_validator("input_schema")
    @classmethod
    def _schema(cls, value: Optional[Dict[str, Any]]) -> Optional[Dict[str, Any]]:
        if value is None:
            return None
        # W&B's meta-schema is wider than the SDK's checker (format: secret, label, placeholder,
        # uniqueItems...); the declaration takes any valid JSON schema of an object.
        try:
            Draft202012Validator.check_schema(_without_field_required(value))
        except SchemaError as exc:
            raise ValueError(f"schema is not a valid JSON schema: {exc.message}") from exc
        if value.get("type") != "object":
            raise ValueError("schema: the top level must have type 'object'")
        return value

    def record(self) -> Dict[str, Any]:
        """This section in the shape the SDK records (no types: nothing has run)."""
        return {
            "include": list(self.include),
            "exclude": list(self.exclude),
            "types": None,
            "schema": self.input_schema,
        }


class InputsDeclaration(BaseModel):
    """``inputs:`` of a job spec. A section left out is not a launch input."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    run_config: Optional[InputSection] = None
    files: Dict[str, InputSection] = Field(default_factory=dict)

    @field_validator("files")
    @classmethod
    def _relative(cls, value: Dict[str, InputSection]) -> Dict[str, InputSection]:
        for path in value:
            if path.startswith("/") or ".." in PurePosixPath(path).parts or not path.strip():
                raise ValueError(f"config file path {path!r} must be relative to the job, without '..'")
        return value

    def record(self) -> Dict[str, Any]:
        """The declaration in the shape of a recorded ``inputs.json``."""
        return {
            "run_config": self.run_config.record() if self.run_config else None,
            "files": {path: section.record() for path, section in self.files.items()},
        }


def _without_field_required(node: Any) -> Any:
    """The schema without W&B's per-field ``required: true`` (not JSON schema, but W&B accepts it)."""
    if isinstance(node, dict):
        return {k: _without_field_required(v) for k, v in node.items() if not (k == "required" and isinstance(v, bool))}
    if isinstance(node, list):
        return [_without_field_required(item) for item in node]
    return node


def effective_inputs(
    recorded: Optional[Mapping[str, Any]], declared: Optional[InputsDeclaration]
) -> Tuple[Optional[Dict[str, Any]], Optional[str]]:
    """``(inputs, source)``: what the job's last run recorded if anything, else the spec's declaration."""
    if recorded is not None:
        return dict(recorded), SOURCE_RECORDED
    if declared is not None:
        return declared.record(), SOURCE_DECLARED
    return None, None
