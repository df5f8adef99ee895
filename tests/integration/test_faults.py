"""Fault injection on real parts. Every test asserts on what MLflow and the spool hold."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from runner.cluster.scheduler import Outcome
from runner.measure.metrics import RequestRecord
from runner.plan.trial import LoadPoint, ServingConfig, Status, Trial
from runner.results.recorder import Recorder
from runner.results.store import Store
from runner.sweep.spec import load
from tests.integration.faults import by_status, driver_env, start_driver, trial_runs, wait_for

SLOW = """
name: {name}
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {{max_model_len: 256}}
hardware: cpu
engine_args:
  enforce_eager: true
  max_num_seqs: {seqs}
workload:
  input_len: 16
  output_len: 32
  concurrency: {conc}
  num_prompts: 40
  warmup: 1
timeouts: {{request_s: {request_s}}}
"""


@pytest.fixture
def address(ray_local):
    return ray_local.get_runtime_context().gcs_address


def _sweep(write_sweep, name, seqs="4", conc="1", request_s=60):
    return write_sweep(SLOW.format(name=name, seqs=seqs, conc=conc, request_s=request_s), f"{name}.yaml")


def test_killed_driver_leaves_a_stale_run_that_the_next_run_reclaims(address, mlflow_env, write_sweep, tmp_path):
    sweep = _sweep(write_sweep, "f-kill-driver", conc="[1, 2]")
    env = driver_env(address)
    # the first driver's load stalls (the consumer stops reading), so SIGKILL surely lands mid-trial
    p = start_driver(sweep, driver_env(address, RUNNER_TEST_STALL_AFTER_CHUNKS="2"), tmp_path / "first.log")
    wait_for(lambda: by_status(trial_runs(mlflow_env, "f-kill-driver")).get("RUNNING"), 180, "a RUNNING trial")
    os.kill(p.pid, signal.SIGKILL)
    p.wait(30)
    time.sleep(6)  # Ray reaps a dead driver's actors and groups within about 5 s
    p2 = start_driver(sweep, env, tmp_path / "second.log")
    assert p2.wait(600) == 0, (tmp_path / "second.log").read_text()
    assert "reclaimed 1 trial run(s)" in (tmp_path / "second.log").read_text()
    runs = trial_runs(mlflow_env, "f-kill-driver")
    st = by_status(runs)
    done = Counter(r.data.tags["runner.trial_id"] for r in st["COMPLETED"])
    assert len(done) == 2 and set(done.values()) == {1}           # each trial COMPLETED exactly once
    assert len(st["KILLED"]) == 1 and st["KILLED"][0].info.status == "KILLED"
    assert st["KILLED"][0].data.tags["runner.reason"] == "driver_killed"
    assert "RUNNING" not in st


def test_killed_engine_actor_fails_its_trial_and_the_next_config_still_runs(address, mlflow_env, write_sweep,
                                                                          tmp_path):
    sweep = _sweep(write_sweep, "f-kill-engine", seqs="[4, 8]")
    env = driver_env(address)
    p = start_driver(sweep, env, tmp_path / "first.log", "--max-parallel", "1")
    running = wait_for(lambda: by_status(trial_runs(mlflow_env, "f-kill-engine")).get("RUNNING"), 180, "RUNNING")
    victim = running[0]
    os.kill(int(victim.data.tags["runner.engine_pid"]), signal.SIGKILL)
    assert p.wait(600) == 1, (tmp_path / "first.log").read_text()
    st = by_status(trial_runs(mlflow_env, "f-kill-engine"))
    assert [r.data.tags["runner.trial_id"] for r in st["FAILED"]] == [victim.data.tags["runner.trial_id"]]
    assert st["FAILED"][0].data.tags["runner.reason"] == "engine_died"
    assert len(st["COMPLETED"]) == 1                               # the other serving config ran
    state = json.loads(next(Path(os.environ["RUNNER_SPOOL"]).glob(
        f"f-kill-engine/{victim.data.tags['runner.trial_id']}/attempt-1/state.json")).read_text())
    assert state["status"] == "FAILED" and state["reason"] == "engine_died" and state["uploaded"]
    p2 = start_driver(sweep, env, tmp_path / "second.log")
    assert p2.wait(600) == 0, (tmp_path / "second.log").read_text()
    st = by_status(trial_runs(mlflow_env, "f-kill-engine"))
    assert len(st["COMPLETED"]) == 2
    assert {r.data.tags["runner.attempt"] for r in st["COMPLETED"]} == {"1", "2"}


def test_stalled_stream_gives_request_timeout_and_does_not_hang(address, mlflow_env, write_sweep, tmp_path):
    sweep = _sweep(write_sweep, "f-stall", request_s=3)
    env = driver_env(address, RUNNER_TEST_STALL_AFTER_CHUNKS="3")
    p = start_driver(sweep, env, tmp_path / "run.log")
    assert p.wait(300) == 1, (tmp_path / "run.log").read_text()  # ends by itself: p.wait raises on a hang
    [run] = trial_runs(mlflow_env, "f-stall")
    assert run.data.tags["runner.status"] == "FAILED" and run.data.tags["runner.reason"] == "request_timeout"
    assert "output_throughput" not in run.data.metrics


def test_sigterm_marks_running_trials_killed_and_exits_nonzero(address, mlflow_env, write_sweep, tmp_path):
    # the load stalls after 2 chunks (a consumer that stops reading, for longer than the test), so the
    # trial is surely still RUNNING when SIGTERM lands, however fast or slow the machine
    sweep = _sweep(write_sweep, "f-sigterm", request_s=600)
    p = start_driver(sweep, driver_env(address, RUNNER_TEST_STALL_AFTER_CHUNKS="2"), tmp_path / "run.log")
    wait_for(lambda: by_status(trial_runs(mlflow_env, "f-sigterm")).get("RUNNING"), 180, "a RUNNING trial")
    p.send_signal(signal.SIGTERM)
    assert p.wait(60) != 0
    [run] = trial_runs(mlflow_env, "f-sigterm")
    assert run.data.tags["runner.status"] == "KILLED" and run.info.status == "KILLED"
    from ray.util import placement_group_table
    wait_for(lambda: all(v["state"] == "REMOVED" for v in placement_group_table().values()
                         if v["name"].startswith("runner:f-sigterm:")), 30, "groups removed")


def test_bad_engine_argument_gives_engine_start_error_with_log_tail(address, mlflow_env, write_sweep, tmp_path):
    # quantization has no choices in vLLM's CLI definition (plug-ins add methods), so validate lets
    # float99 through and only the engine refuses it (dtype: float99 is now refused at validate)
    sweep = write_sweep(SLOW.format(name="f-badarg", seqs=4, conc=1, request_s=60)
                        .replace("max_model_len: 256", "max_model_len: 256, quantization: float99"), "badarg.yaml")
    p = start_driver(sweep, driver_env(address), tmp_path / "run.log")
    assert p.wait(300) == 1
    [run] = trial_runs(mlflow_env, "f-badarg")
    assert run.data.tags["runner.reason"].startswith("engine_start_error")
    client = MlflowClient(mlflow_env)
    assert "engine_log_tail.txt" in {a.path for a in client.list_artifacts(run.info.run_id)}
    tail = Path(client.download_artifacts(run.info.run_id, "engine_log_tail.txt", str(tmp_path))).read_text()
    assert "float99" in tail


def _records(lengths: list[int]) -> list[dict]:
    return [RequestRecord(index=i, prompt_tokens=16, intended=0.0, st=float(i), chunk_times=[i + 0.1] * n,
                          chunk_tokens=[1] * n, ok=n > 0, error="" if n else "no output tokens").__dict__
            for i, n in enumerate(lengths)]


@pytest.mark.parametrize(("lengths", "why"), [([0, 0, 0], "no output tokens"), ([32, 31, 32], "ignore_eos")])
def test_zero_token_or_wrong_length_results_are_invalid_in_mlflow_and_spool(mlflow_env, tmp_path, write_sweep,
                                                                           lengths, why):
    spec = load(_sweep(write_sweep, "f-invalid"))
    trial = Trial(serving=ServingConfig(engine="vllm", model="tiny-llama", model_path="x", hardware="cpu"),
                  load=LoadPoint(input_len=16, output_len=32, concurrency=1, num_prompts=3))
    store = Store(spec.experiment_name, spec.name)
    rec = Recorder(spec, store, Path(os.environ["RUNNER_SPOOL"]))
    rec.on_start(trial, {})
    rec.on_end(Outcome(trial, Status.COMPLETED, result={"ok": True, "records": _records(lengths),
                                                         "duration_s": 0.001}))
    [run] = trial_runs(mlflow_env, "f-invalid")
    assert run.data.tags["runner.status"] == "INVALID" and run.data.tags["runner.reason"] == "invalid_result"
    assert why in run.data.tags["runner.detail"]
    assert not any("throughput" in k for k in run.data.metrics)  # never reported as a result
    state = json.loads(next(Path(os.environ["RUNNER_SPOOL"]).glob("f-invalid/*/attempt-1/state.json")).read_text())
    assert state["status"] == "INVALID" and state["uploaded"]
