"""``exclude`` rules that can never match are errors, not silent no-ops.

A rule is a mapping of axis name → value (or list of values, any of which matches); it removes
every trial whose axes hold all of them. A typo in an axis or engine-argument name, or a value
that is not on that axis (``tp: 3`` where the axis is ``[1, 2]``), would remove nothing and leave
the user believing the grid is smaller than it is. ``check`` refuses both.

Invariants: values compare by kind as well as value (``true`` never matches TP 1, ``1`` never
matches ``ep: true``); ints and floats of equal value match (``request_rate: 4`` is 4.0/s); a
rate written ``.inf`` means ``inf``, the closed loop. Axis values include those of the profiles
the sweep uses.
"""

from __future__ import annotations

import difflib
import math
from typing import TYPE_CHECKING, Any

from runner.core import SweepSpecError
from runner.sweep import catalog

if TYPE_CHECKING:
    from runner.sweep.spec import SweepSpec


def same(a: Any, b: Any) -> bool:
    """Equality that keeps booleans apart from numbers (Python has ``True == 1``)."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    return a == b


def axis_values(spec: SweepSpec) -> dict[str, list[Any]]:
    """Every value each axis takes in this sweep (before exclusion)."""
    w = spec.workload
    profiles = [catalog.profiles()[p] for p in w.profiles]
    rates: list[Any] = list(w.request_rate) + [p.get("request_rate", "inf") for p in profiles]
    lanes = {"default", *spec.lanes.values(), *(m.lane for m in spec.models if m.lane)}
    out: dict[str, list[Any]] = {
        "engine": list(spec.engine), "api": list(spec.api), "model": [m.id for m in spec.models],
        "hardware": list(spec.hardware), "tp": list(spec.shape.tp), "pp": list(spec.shape.pp),
        "dp": list(spec.shape.dp), "ep": list(spec.shape.ep),
        "input_len": list(w.input_len or []) + [p["input_len"] for p in profiles],
        "output_len": list(w.output_len or []) + [p["output_len"] for p in profiles],
        "concurrency": list(w.concurrency or []) + [p["concurrency"] for p in profiles if "concurrency" in p],
        "request_rate": ["inf" if r in ("inf", math.inf) else float(r) for r in rates],
        "profile": list(w.profiles), "lane": sorted(lanes)}
    for args in [spec.engine_args, *(m.engine_args for m in spec.models)]:
        for name, value in args.items():
            out.setdefault(f"engine_args.{name}", []).extend(value if isinstance(value, list) else [value])
    return out


def check(file: str, spec: SweepSpec, axes: tuple[str, ...]) -> None:
    """Raise ``SweepSpecError`` for a rule that is empty, names no axis of this sweep, or wants a
    value its axis never takes."""
    values = axis_values(spec)
    for i, rule in enumerate(spec.exclude):
        if not rule:
            raise SweepSpecError(file, f"exclude[{i}]", rule, "a non-empty mapping of axis: value(s)")
        for key, want in rule.items():
            where = f"exclude[{i}].{key}"
            if key not in axes and not key.startswith("engine_args."):
                raise SweepSpecError(file, where, key, ", ".join(axes) + ", engine_args.<name>")
            if key not in values:
                names = sorted(k for k in values if k.startswith("engine_args."))
                close = difflib.get_close_matches(key, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise SweepSpecError(file, where, key, f"{hint}an engine argument this sweep sets: "
                                                       f"{', '.join(names) or '(none)'}")
            for v in want if isinstance(want, list) else [want]:
                v = "inf" if key == "request_rate" and v in ("inf", math.inf) else v
                if not any(same(v, a) for a in values[key]):
                    shown = ", ".join(repr(a) for a in _unique(values[key]))
                    raise SweepSpecError(file, where, v, f"a value on the {key} axis: {shown} (this rule "
                                                         "would never match)")


def _unique(items: list[Any]) -> list[Any]:
    out: list[Any] = []
    for x in items:
        if not any(same(x, y) and type(x) is type(y) for y in out):
            out.append(x)
    return out
