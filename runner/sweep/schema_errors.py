"""Pydantic's validation errors as sweep-file messages: file, key path, value, allowed values.

Invariant: the key path is the user's (``workload.concurrency[1]``), never pydantic's union
branch names (``constrained-float``, ``literal['inf']``); an unknown key lists the keys allowed
at that level.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ValidationError

from runner.core import SweepSpecError


def convert(file: str, err: ValidationError, root: type[BaseModel]) -> SweepSpecError:
    """The first error of ``err`` as a message naming ``file``, the key path, the value and what is allowed."""
    e = err.errors()[0]
    loc = [p for p in e["loc"] if not _is_union_tag(p)]
    key = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in loc).replace(".[", "[")
    if e["type"] == "extra_forbidden":
        return SweepSpecError(file, key, loc[-1], "keys " + ", ".join(_fields_at(root, loc[:-1])))
    if e["type"] == "missing":
        return SweepSpecError(file, key, None, f"a value is required ({_describe(root, loc)})")
    msg = e["msg"].replace("Input should be ", "").replace("Value error, ", "")
    return SweepSpecError(file, key, e.get("input"), msg)


def _is_union_tag(part: object) -> bool:
    """Pydantic names union branches in error locations ('constrained-float', "literal['inf']", 'int')."""
    return isinstance(part, str) and (not part.isidentifier() or part in {"int", "float", "str", "bool", "none"})


def _model_at(root: type[BaseModel], loc: list) -> type[BaseModel] | None:
    model: Any = root
    for part in loc:
        if isinstance(part, int):
            continue
        field = model.model_fields.get(part) if isinstance(model, type) else None
        if field is None:
            return None
        ann = field.annotation
        inner = getattr(ann, "__args__", None)
        model = inner[0] if inner and isinstance(inner[0], type) and issubclass(inner[0], BaseModel) else ann
        if not (isinstance(model, type) and issubclass(model, BaseModel)):
            return None
    return model


def _fields_at(root: type[BaseModel], loc: list) -> list[str]:
    model = _model_at(root, loc)
    return list(model.model_fields) if model else ["(none: this is a free-form mapping)"]


def _describe(root: type[BaseModel], loc: list) -> str:
    model = _model_at(root, loc[:-1])
    field = model.model_fields.get(str(loc[-1])) if model else None
    return (field.description if field and field.description else str(loc[-1]))
