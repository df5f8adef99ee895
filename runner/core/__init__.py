"""The bottom layer every package may use: the error types and the redaction of secrets.

Nothing here imports another ``runner`` package.
"""

__version__ = "0.1.0"

from runner.core import redact
from runner.core.errors import EngineError, PlacementError, RunnerError, StoreError, SweepSpecError, UsageError

__all__ = ["EngineError", "PlacementError", "RunnerError", "StoreError", "SweepSpecError", "UsageError", "__version__",
           "redact"]
