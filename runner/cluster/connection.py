"""Connecting the driver to Ray: ``RAY_ADDRESS`` when set, else a private local cluster.

Engine actors must import this package on whatever node they land. Inside a submitted
Ray job (``ray job submit --working-dir .``) the working dir already carries it; a bare
driver joining a cluster ships it as a ``py_modules`` entry (a few hundred KB); a private
local cluster gets it on ``PYTHONPATH``. A local cluster has no dashboard and a small
object store.
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
    pkg = Path(__file__).resolve().parents[1]  # the runner package
    if address:
        in_job = "RAY_JOB_CONFIG_JSON_ENV_VAR" in os.environ  # set by Ray for `ray job submit` entrypoints
        env = None if in_job else {"py_modules": [str(pkg)]}
        ray.init(address=address, log_to_driver=verbose, runtime_env=env)
        return
    root = str(pkg.parent)
    path = os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH", "")) if p)
    ray.init(include_dashboard=False, log_to_driver=verbose, object_store_memory=512 * 2**20,
             runtime_env={"env_vars": {"PYTHONPATH": path}})
