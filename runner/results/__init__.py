"""Where numbers are kept: the local spool written first (``spool``), all MLflow I/O behind one
store (``store``), uploads of what the spool holds and MLflow lacks (``sync``), the saved
comparison view (``views``), the driver's progress lines (``progress``) and the recorder that
turns a scheduler outcome into a spooled and stored trial run (``recorder``)."""

from runner.results import progress, spool, store, sync, views
from runner.results.progress import Progress
from runner.results.recorder import Recorder
from runner.results.store import STATUS, TRIAL, Store

__all__ = ["STATUS", "TRIAL", "Progress", "Recorder", "Store", "progress", "spool", "store", "sync", "views"]
