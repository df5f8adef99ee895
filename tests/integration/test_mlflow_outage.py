"""MLflow server stopped mid-sweep, then started again: every result arrives, none twice."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

import pytest
from mlflow.tracking import MlflowClient

from tests.integration.faults import driver_env, start_driver, trial_runs, wait_for
from tests.integration.mlflow_server import MlflowServer

SWEEP = """
name: f-outage
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 256}
hardware: cpu
engine_args: {enforce_eager: true, max_num_seqs: 4}
workload:
  input_len: 16
  output_len: 32
  concurrency: [1, 2, 3]
  request_rate: 4        # arrivals 0.25 s apart: each trial lasts >= 7 s by its schedule, so the server
  num_prompts: 30        # surely stops while trials 2 and 3 run, however fast the engine
  warmup: 1
"""


@pytest.fixture
def server(tmp_path):
    s = MlflowServer(tmp_path).start()
    yield s
    s.stop()


def test_results_survive_a_stopped_mlflow_server(ray_local, server, write_sweep, tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_SPOOL", str(tmp_path / "spool"))
    sweep = write_sweep(SWEEP)
    env = driver_env(ray_local.get_runtime_context().gcs_address, MLFLOW_TRACKING_URI=server.uri)
    log = tmp_path / "run.log"
    p = start_driver(sweep, env, log, "--max-parallel", "1")
    wait_for(lambda: "✔" in log.read_text(), 300, "the first completed trial")
    server.stop()                                             # MLflow goes away mid-sweep
    assert p.wait(600) in (0, 1), log.read_text()
    text = log.read_text()
    assert "MLflow write failed" in text and "python -m runner sync" in text
    states = list((tmp_path / "spool" / "f-outage").glob("*/attempt-*/state.json"))
    assert len(states) == 3                                   # nothing lost: every trial is in the spool

    server.start()                                            # back, same database
    s = subprocess.run([sys.executable, "-m", "runner", "sync", sweep], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=300)
    assert s.returncode == 0, s.stdout + s.stderr
    runs = trial_runs(server.uri, "f-outage")
    assert len(runs) == 3                                     # no duplicates
    assert Counter(r.data.tags["runner.status"] for r in runs) == {"COMPLETED": 3}
    assert all(r.info.status == "FINISHED" and "output_throughput" in r.data.metrics for r in runs)
    client = MlflowClient(server.uri)
    for r in runs:
        assert {"result.json", "requests.parquet"} <= {a.path for a in client.list_artifacts(r.info.run_id)}
    # a further run does nothing new and adds no run
    p2 = start_driver(sweep, env, tmp_path / "again.log")
    assert p2.wait(300) == 0
    assert "3 done, 0 to run" in (tmp_path / "again.log").read_text()
    assert len(trial_runs(server.uri, "f-outage")) == 3
