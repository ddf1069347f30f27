"""Reading a spec: YAML file -> plain data -> ``RawSpec`` -> ``Spec``, every problem one
``SpecError`` naming the file (keys given twice, non-UTF-8 text and unknown fields included)."""
from __future__ import annotations

import types
import typing
from pathlib import Path
from typing import Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from sweep.spec.blocks import RawSpec, TargetEntry, TaskOptionsBlock
from sweep.spec.errors import SpecError, did_you_mean, first_error
from sweep.spec.model import Spec
from sweep.spec.semantics import check_semantics


def load_spec(path: str | Path) -> Spec:
    """Read and validate a spec file; every problem is a one-line ``SpecError``."""
    path = Path(path)
    source = str(path)
    if path.is_dir():
        raise SpecError("", f"{path} is a directory, not a spec file")
    if not path.is_file():
        raise SpecError("", f"spec file not found: {path}")
    raw = path.read_bytes()
    if b"\0" in raw:
        raise SpecError("", "not a text file (it holds NUL bytes: binary, or UTF-16?); "
                            "save the spec as UTF-8 YAML", source)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise SpecError("", f"line {line}: not UTF-8 text (byte {raw[exc.start]:#04x}); "
                            "save the spec as UTF-8", source) from None
    try:
        _check_duplicate_keys(yaml.compose(text, Loader=yaml.SafeLoader))
        data = yaml.safe_load(text)
    except SpecError as exc:
        raise SpecError(exc.field, exc.problem, source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}: " if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise SpecError("", f"{where}not valid YAML: {problem}", source) from None
    return parse_spec(data, source=source)


def _check_duplicate_keys(node, path: str = "") -> None:
    """A key given twice in one mapping is an error naming it and both lines (PyYAML would
    keep the last one silently)."""
    if isinstance(node, yaml.MappingNode):
        seen: dict[str, int] = {}
        for key_node, value in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else None
            here = f"{path}.{key}" if path else str(key)
            if key is not None and key != "<<":
                line = key_node.start_mark.line + 1
                if key in seen:
                    raise SpecError(here, f"key {key!r} is given twice (lines {seen[key]} and {line}); keep one")
                seen[key] = line
            _check_duplicate_keys(value, here)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _check_duplicate_keys(item, f"{path}[{i}]")


def parse_spec(data: Any, source: str | None = None) -> Spec:
    try:
        if not isinstance(data, dict):
            raise SpecError("", "the spec must be a YAML mapping (name: ..., targets: ...)")
        _check_unknown_keys(data, RawSpec, "")
        try:
            raw = RawSpec.model_validate(data)
        except ValidationError as exc:
            raise first_error(exc) from None
        return check_semantics(raw, source)
    except SpecError as exc:
        if exc.source is None and source is not None:
            raise SpecError(exc.field, exc.problem, source) from None
        raise


def _check_unknown_keys(data: Any, model: type[BaseModel], path: str) -> None:
    """Unknown keys get a 'did you mean' before pydantic's generic message."""
    if not isinstance(data, dict):
        return
    fields = model.model_fields
    for key, value in data.items():
        here = f"{path}.{key}" if path else str(key)
        if key not in fields:
            raise SpecError(here, "unknown field" + did_you_mean(str(key), sorted(fields)))
        annotation = fields[key].annotation
        optional = typing.get_origin(annotation) in (Union, types.UnionType)
        members = [annotation, *(typing.get_args(annotation) if optional else ())]  # Optional[Block]
        block = next((m for m in members if isinstance(m, type) and issubclass(m, BaseModel)), None)
        if block is not None:
            _check_unknown_keys(value, block, here)
    tasks = data.get("tasks") if model is RawSpec else None
    if isinstance(tasks, dict):
        for name, opts in tasks.items():
            _check_unknown_keys(opts, TaskOptionsBlock, f"tasks.{name}")
    targets = data.get("targets") if model is RawSpec else None
    if isinstance(targets, list):
        for i, entry in enumerate(targets):
            if isinstance(entry, dict):
                _check_unknown_keys(entry, TargetEntry, f"targets[{i}]")
