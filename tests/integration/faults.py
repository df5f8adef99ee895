"""Helpers for fault-injection tests: a sweep driver as a real subprocess, and MLflow reads."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from mlflow.tracking import MlflowClient

from tests.integration.conftest import ROOT


def driver_env(ray_address: str, **extra: str) -> dict[str, str]:
    env = {**os.environ, "RAY_ADDRESS": ray_address, "PYTHONPATH": str(ROOT), **extra}
    return env


def start_driver(sweep: str, env: dict[str, str], log: Path, *args: str) -> subprocess.Popen:
    """`python -m runner run SWEEP` in its own process; stdout+stderr to ``log``."""
    return subprocess.Popen([sys.executable, "-m", "runner", "run", sweep, *args], env=env,
                            stdout=log.open("w"), stderr=subprocess.STDOUT, cwd=log.parent)


def wait_for(predicate, timeout: float, what: str, every: float = 0.5):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def trial_runs(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    if exp is None:
        return []
    return client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'", max_results=1000)


def by_status(runs) -> dict[str, list]:
    out: dict[str, list] = {}
    for r in runs:
        out.setdefault(r.data.tags.get("runner.status"), []).append(r)
    return out
