"""Where numbers are kept: the local spool written first (``spool``), all MLflow I/O behind one
store (``store``), uploads of what the spool holds and MLflow lacks (``sync``), the saved
comparison view (``views``), the driver's progress lines (``progress``), the recorder that
turns a scheduler outcome into a spooled and stored trial run (``recorder``) and the lease a
driver holds on its sweep while it runs (``lease``)."""

from runner.results import lease, progress, spool, store, sync, views
from runner.results.lease import Lease, LeaseHeld, LeaseRecord
from runner.results.progress import Progress
from runner.results.recorder import Recorder, price_for
from runner.results.store import STATUS, TRIAL, Store

__all__ = ["STATUS", "TRIAL", "Lease", "LeaseHeld", "LeaseRecord", "Progress", "Recorder", "Store", "lease",
           "price_for", "progress", "spool", "store", "sync", "views"]
