"""A Ray-based distributed sweep runner for LLM inference benchmarks."""

__version__ = "0.1.0"

from runner.errors import EngineError, PlacementError, RunnerError, StoreError, SweepSpecError
from runner.grid import expand, group
from runner.spec import SweepSpec, load
from runner.trial import LoadPoint, ServingConfig, Status, Trial

__all__ = ["EngineError", "LoadPoint", "PlacementError", "RunnerError", "ServingConfig", "Status",
           "StoreError", "SweepSpec", "SweepSpecError", "Trial", "__version__", "expand", "group", "load"]
