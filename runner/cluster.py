"""Connecting the driver to Ray: ``RAY_ADDRESS`` when set, else a private local cluster.

A local cluster gets no dashboard and a small object store, and its workers get this
package on ``PYTHONPATH`` so engine actors can import it without an install.
"""

from __future__ import annotations

import os
from pathlib import Path


def connect(verbose: bool = False) -> None:
    import ray

    if ray.is_initialized():
        return
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    address = os.environ.get("RAY_ADDRESS")
    if address:
        ray.init(address=address, log_to_driver=verbose)
        return
    root = str(Path(__file__).resolve().parent.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(include_dashboard=False, log_to_driver=verbose, object_store_memory=512 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
