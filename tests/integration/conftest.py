"""Integration fixtures: a private local Ray cluster, the tiny model, a SQLite MLflow.

Each session gets its own ``RAY_TMPDIR`` so it never attaches to another cluster on the host,
and is shut down with ``ray.shutdown()`` (never ``ray stop``).
"""

import os
import tempfile
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


@pytest.fixture(scope="session")
def tiny_model() -> str:
    from runner.tinymodel import build

    return str(build(ROOT / "models" / "tiny-llama"))


@pytest.fixture(scope="session")
def ray_local(tiny_model):
    import ray

    from runner.cluster import connect

    tmp = tempfile.mkdtemp(prefix="ray-it-", dir="/tmp")  # short: AF_UNIX paths ≤ 107 bytes
    os.environ["RAY_TMPDIR"] = tmp
    os.environ.pop("RAY_ADDRESS", None)
    connect()
    yield ray
    ray.shutdown()


@pytest.fixture
def mlflow_env(tmp_path, monkeypatch):
    """A fresh SQLite MLflow and spool for one test; returns the tracking URI."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    MlflowClient(uri).search_experiments()  # create the schema now: tests poll while drivers write
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RUNNER_SPOOL", str(tmp_path / "spool"))
    return uri


@pytest.fixture
def write_sweep(tmp_path, tiny_model):
    def write(text: str, name: str = "sweep.yaml") -> str:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text).replace("$MODEL", tiny_model))
        return str(p)
    return write
