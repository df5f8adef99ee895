"""The exceptions a user can see.

    RunnerError                 any error the CLI turns into a message and an exit code
    ├── SweepSpecError          bad sweep file: exit 2, names file, key path, value, allowed values
    ├── UsageError              a bad command-line argument: exit 2, names it and the allowed values
    ├── PlacementError          a serving config cannot be placed on the cluster
    ├── EngineError             an engine failed to start or died; carries a failure reason
    └── StoreError              MLflow could not be reached or refused a write

Every message names what is wrong, the value, what is allowed and, where it helps, the next
command to run. The CLI never shows a traceback for a ``RunnerError``.
"""

from __future__ import annotations


class RunnerError(Exception):
    """Base of all errors shown to users as a message, not a traceback."""

    exit_code = 1


class SweepSpecError(RunnerError):
    """A sweep file is invalid. ``str()`` is the full, user-facing message."""

    exit_code = 2

    def __init__(self, file: str, key: str, value: object, allowed: str, hint: str | None = None):
        self.file, self.key, self.value, self.allowed = file, key, value, allowed
        shown = repr(value) if not isinstance(value, str) or len(value) < 200 else repr(value[:200] + "…")
        msg = f"{file}: {key or '<top level>'}: got {shown}; allowed: {allowed}"
        nxt = hint or f"fix it, then run `python -m runner validate {file}`"
        super().__init__(f"{msg}\n  next: {nxt}")


class UsageError(RunnerError):
    """A command-line argument is wrong: exit 2, names the argument, the value and the allowed values."""

    exit_code = 2


class PlacementError(RunnerError):
    """A serving configuration can never be placed, or placing it timed out."""


class EngineError(RunnerError):
    """An engine failed. ``reason`` is one of ``runner.plan.trial.FAILURE_REASONS``."""

    def __init__(self, reason: str, message: str, log_tail: str = ""):
        self.reason, self.log_tail = reason, log_tail
        super().__init__(f"{reason}: {message}")


class StoreError(RunnerError):
    """The MLflow store could not be reached or refused a write."""
