"""A real `mlflow server --app-name basic-auth` on loopback: credentials work, their absence is a
clean StoreError, and no secret reaches MLflow, the spool or the driver's output.

MLflow 3.17 basic auth: the `basic-auth` app reads the ini file named by MLFLOW_AUTH_CONFIG_PATH
(admin user and password, users' SQLite db), needs MLFLOW_FLASK_SERVER_SECRET_KEY for its CSRF
protection and Flask-WTF (`mlflow[auth]`). Clients send MLFLOW_TRACKING_USERNAME/PASSWORD.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from runner.core.errors import StoreError
from runner.results.store import Store
from tests.integration.faults import driver_env, start_driver
from tests.integration.mlflow_server import MlflowServer

USER = "sweep-admin"
PASSWORD = "pw-9c1e57d2-never-logged"
HF_SECRET = "hf_f4k3T0k3nThatMustNeverLeak"
ARG_SECRET = "hf_argS3cretInTheSweepFile"      # an engine argument that carries a secret

SWEEP = """
name: auth-sweep
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 256}
hardware: cpu
engine_args: {enforce_eager: true, max_num_seqs: 4, hf_token: ARG_SECRET}
workload:
  input_len: 16
  output_len: 8
  concurrency: 1
  num_prompts: 4
  warmup: 1
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    s = MlflowServer.with_basic_auth(tmp_path_factory.mktemp("mlflow-auth"), USER, PASSWORD).start()
    yield s
    s.stop()


@pytest.fixture
def no_creds(monkeypatch):
    for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_TOKEN"):
        monkeypatch.delenv(k, raising=False)


def test_the_server_really_requires_credentials(server, no_creds):
    from mlflow.exceptions import MlflowException

    with pytest.raises(MlflowException, match="401"):
        MlflowClient(server.uri).search_experiments()


def test_store_works_with_credentials_in_the_environment(server, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    s = Store("auth-store", "auth-store", uri=server.uri)
    rid = s.start_trial("t1", "t1", {"runner.attempt": "1"}, {"concurrency": 1})
    s.end_trial(rid, "COMPLETED", metrics={"output_throughput": 1.0})
    assert s.done_ids() == {"t1"}
    run = s.client.get_run(rid)
    assert PASSWORD not in json.dumps({**run.data.params, **run.data.tags})


@pytest.mark.parametrize("password", [None, "wrong-password"])
def test_missing_or_wrong_credentials_are_a_store_error(server, no_creds, monkeypatch, password):
    if password:
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", password)
    with pytest.raises(StoreError) as e:
        Store("auth-store", "auth-store", uri=server.uri)
    msg = str(e.value)
    assert server.uri in msg and "401" in msg
    assert PASSWORD not in msg and (password or PASSWORD) not in msg


def test_cli_without_credentials_prints_a_message_not_a_traceback(server, no_creds, write_sweep, tmp_path):
    sweep = write_sweep(SWEEP)
    env = {k: v for k, v in driver_env("").items() if not k.startswith("MLFLOW_TRACKING_")}
    env.update(MLFLOW_TRACKING_URI=server.uri, RUNNER_SPOOL=str(tmp_path / "spool"))
    env.pop("RAY_ADDRESS")
    p = subprocess.run([sys.executable, "-m", "runner", "status", sweep], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    assert p.stderr.startswith(f"error: MLflow at {server.uri} could not be used"), p.stderr
    env.update(MLFLOW_TRACKING_USERNAME=USER, MLFLOW_TRACKING_PASSWORD=PASSWORD)
    p = subprocess.run([sys.executable, "-m", "runner", "status", sweep], env=env, cwd=tmp_path,
                       capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and "sweep auth-sweep: 1 trials" in p.stdout, p.stdout + p.stderr


def test_a_password_in_the_uri_is_redacted_from_errors(server, no_creds):
    leaky = server.uri.replace("http://", f"http://{USER}:wrong-{PASSWORD}@")
    with pytest.raises(StoreError) as e:
        Store("auth-store", "auth-store", uri=leaky)
    assert PASSWORD not in str(e.value)


def test_a_sweep_with_credentials_leaks_no_secret(ray_local, server, no_creds, write_sweep, tmp_path):
    """The whole path: driver, engine actor, recorder, spool, MLflow. The MLflow password and an
    HF token are in the driver's environment and an engine argument carries a token; none may
    appear in any param, tag, artifact, spool file or output line."""
    sweep = write_sweep(SWEEP.replace("ARG_SECRET", ARG_SECRET))
    env = driver_env(ray_local.get_runtime_context().gcs_address, MLFLOW_TRACKING_URI=server.uri,
                     MLFLOW_TRACKING_USERNAME=USER, MLFLOW_TRACKING_PASSWORD=PASSWORD, HF_TOKEN=HF_SECRET,
                     RUNNER_SPOOL=str(tmp_path / "spool"))
    log = tmp_path / "run.log"
    p = start_driver(sweep, env, log)
    try:
        rc = p.wait(600)
    finally:
        if p.poll() is None:
            p.kill()
    text = log.read_text()
    assert rc == 0, text
    assert "COMPLETED: 1" in text

    client = MlflowClient(server.uri)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_USERNAME", USER)
        mp.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
        exp = client.get_experiment_by_name("auth-sweep")
        runs = client.search_runs([exp.experiment_id], max_results=100)
        assert {r.data.tags["runner.role"] for r in runs} == {"parent", "trial"}
        blobs = [text]
        for r in runs:
            blobs.append(json.dumps({"p": r.data.params, "t": r.data.tags, "m": list(r.data.metrics)}))
            dest = tmp_path / "dl" / r.info.run_id
            dest.mkdir(parents=True)
            for a in client.list_artifacts(r.info.run_id):
                local = client.download_artifacts(r.info.run_id, a.path, str(dest))
                blobs.append(Path(local).read_bytes().decode("utf-8", "replace"))
    for f in (tmp_path / "spool").rglob("*"):
        if f.is_file():
            blobs.append(f.read_bytes().decode("utf-8", "replace"))
    assert len(blobs) > 5
    assert any("engine_args.hf_token" in b for b in blobs)       # the argument is recorded, masked
    for secret in (PASSWORD, HF_SECRET, ARG_SECRET):
        hits = [b[max(0, b.index(secret) - 200):b.index(secret) + 50] for b in blobs if secret in b]
        assert not hits, f"secret leaked into {len(hits)} place(s): {hits}"

