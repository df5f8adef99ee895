"""A Ray-based distributed sweep runner for LLM inference benchmarks.

Packages follow the data path, and none imports one above it:
``core`` → ``sweep`` → ``plan`` → ``engines`` → ``measure`` → ``cluster`` → ``results`` →
``report``; ``cli`` and ``session`` drive them (``tests/unit/test_layers.py`` checks it).
"""

from runner.core import EngineError, PlacementError, RunnerError, StoreError, SweepSpecError, __version__
from runner.plan import LoadPoint, ServingConfig, Status, Trial, expand, group
from runner.sweep import SweepSpec, load

__all__ = ["EngineError", "LoadPoint", "PlacementError", "RunnerError", "ServingConfig", "Status",
           "StoreError", "SweepSpec", "SweepSpecError", "Trial", "__version__", "expand", "group", "load"]
