"""Content-hash identifiers.

Invariants: an id is the first 16 hex digits of SHA-256 over the canonical JSON of the
payload plus ``SCHEMA_VERSION``. Canonical JSON sorts keys at every level, uses no spaces,
writes an integral float as an integer (``64.0`` → ``64``) and other floats in Python's
shortest round-trip form, and refuses NaN and infinities. So key order, YAML number style
and machine never change an id, while a change of measurement definition (a new
``SCHEMA_VERSION``) changes every id.
"""

from __future__ import annotations

import hashlib
import json
import math
from typing import Any

#: Bump when the meaning of a measurement changes; old results then stop counting as done.
SCHEMA_VERSION = 1


def normalize(obj: Any) -> Any:
    """Recursively normalise numbers as described in the module docstring."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, (str, int)):
        return obj
    if isinstance(obj, float):
        if not math.isfinite(obj):
            raise ValueError(f"cannot hash a non-finite number: {obj}")
        return int(obj) if obj.is_integer() else obj
    if isinstance(obj, dict):
        return {str(k): normalize(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [normalize(v) for v in obj]
    raise TypeError(f"cannot hash a {type(obj).__name__}: {obj!r}")


def canonical_json(obj: Any) -> str:
    return json.dumps(normalize(obj), sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False)


def content_id(obj: Any) -> str:
    payload = canonical_json({"schema_version": SCHEMA_VERSION, "payload": obj})
    return hashlib.sha256(payload.encode()).hexdigest()[:16]
