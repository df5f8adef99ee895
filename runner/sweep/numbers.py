"""Number types for the sweep schema: finite, bounded, and never a boolean in disguise.

Pydantic's lax mode reads ``true`` as 1 and accepts ``.nan``/``.inf`` for floats; YAML 1.1 reads
``yes``/``on`` as ``true``. So a sweep file saying ``tp: on`` would silently mean TP 1, and
``temperature: .nan`` would reach the engine. Every number in a sweep file goes through one of
these types instead.

Invariants: ``Int(lo, hi)`` and ``Float(...)`` refuse booleans and non-finite values; each
upper bound is one no real cluster or benchmark reaches (``BOUNDS``), so a typo such as an
extra zero row of digits fails at ``validate`` instead of at launch.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

#: Upper bounds no real deployment reaches (the unit is in each name).
BOUNDS = {
    "parallel": 1024,            # TP or PP degree (GPUs); the largest NVLink domains are 72-576
    "replicas": 4096,            # DP replicas of one serving configuration
    "tokens": 10_000_000,        # one prompt or output, in tokens
    "concurrency": 1_000_000,    # requests in flight
    "requests": 10_000_000,      # requests of one load point (num_prompts, warm-up)
    "rate": 1_000_000.0,         # requests/s
    "seconds": 30 * 86_400.0,    # any timeout, in s (30 days)
    "ms": 86_400_000.0,          # any latency bound, in ms (one day)
    "price": 10_000.0,           # $/GPU-hour
}


def no_bool(value: Any) -> Any:
    """Refuse YAML booleans (``true``, ``yes``, ``on``) where a number is meant."""
    if isinstance(value, bool):
        raise ValueError(f"a number, not the boolean {str(value).lower()} (YAML reads yes/no/on/off/true/false "
                         "as booleans)")
    return value


def finite(value: Any) -> Any:
    """Refuse NaN and infinities (``.nan``, ``.inf``) where a finite number is meant."""
    value = no_bool(value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"a finite number, not {value}")
    return value


def Int(lo: int, hi: int) -> Any:
    """An integer in [lo, hi]; booleans refused."""
    return Annotated[int, BeforeValidator(no_bool), Field(ge=lo, le=hi)]


def Float(*, gt: float | None = None, ge: float | None = None, lt: float | None = None,
          le: float | None = None) -> Any:
    """A finite float within the given bounds; booleans, NaN and infinities refused."""
    return Annotated[float, BeforeValidator(finite), Field(gt=gt, ge=ge, lt=lt, le=le)]


def closed_loop(value: Any) -> Any:
    """A request rate: YAML's ``.inf`` means the same as ``inf`` (the closed loop); NaN is refused."""
    value = no_bool(value)
    if isinstance(value, float) and math.isinf(value) and value > 0:
        return "inf"
    if isinstance(value, float) and math.isnan(value):
        raise ValueError("a rate in requests/s, or inf for the closed loop; not nan")
    return value


def non_finite(value: Any, path: str = "") -> str | None:
    """The key path of the first NaN or infinity inside an engine-argument value, or None."""
    if isinstance(value, float) and not math.isfinite(value):
        return path
    if isinstance(value, dict):
        items: Any = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return None
    for k, v in items:
        found = non_finite(v, f"{path}[{k}]" if isinstance(k, int) else f"{path}.{k}")
        if found is not None:
            return found
    return None
