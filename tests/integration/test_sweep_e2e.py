"""A 2-config × 2-load sweep, end to end on real parts: local Ray, vLLM on the CPU, SQLite MLflow."""

import io
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import psutil
import pyarrow.parquet as pq
import pytest
from mlflow.tracking import MlflowClient

from runner import session
from tests.integration.conftest import ROOT

SWEEP = """
name: it-e2e
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 512}
hardware: cpu
engine_args:
  enforce_eager: true
  max_num_seqs: [4, 16]
workload:
  input_len: 32
  output_len: 16
  concurrency: [1, 4]
  num_prompts: "3 * concurrency"
  warmup: 1
  seed: 3
env: {NCCL_DEBUG: WARN}   # reaches the engine processes; not part of the trial ids
"""

METRIC_KEYS = ["output_throughput", "total_token_throughput", "request_throughput", "mean_ttft_ms",
               "median_ttft_ms", "p99_ttft_ms", "std_ttft_ms", "p90_ttft_ms", "median_tpot_ms", "median_itl_ms",
               "median_e2el_ms", "tput_per_gpu", "output_tput_per_gpu", "interactivity", "completed", "failed",
               "mean_input_len", "mean_output_len", "max_output_tokens_per_s", "max_concurrent_requests"]


def test_sweep_end_to_end_then_resume_runs_nothing(ray_local, mlflow_env, write_sweep, tmp_path):
    path = write_sweep(SWEEP)
    out = io.StringIO()
    assert session.run(path, out=out) == 0, out.getvalue()
    text = out.getvalue()
    assert "4 trials; 0 done, 4 to run" in text and "COMPLETED: 4" in text

    client = MlflowClient(mlflow_env)
    exp = client.get_experiment_by_name("it-e2e")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    parents = [r for r in runs if r.data.tags.get("runner.role") == "parent"]
    children = [r for r in runs if r.data.tags.get("runner.role") == "trial"]
    assert len(parents) == 1 and parents[0].data.tags["runner.sweep"] == "it-e2e"
    assert len(children) == 4
    pids = {}
    for r in children:
        tags, params, m = r.data.tags, r.data.params, r.data.metrics
        assert tags["mlflow.parentRunId"] == parents[0].info.run_id
        assert tags["runner.status"] == "COMPLETED" and r.info.status == "FINISHED"
        assert tags["runner.sweep"] == "it-e2e" and len(tags["runner.trial_id"]) == 16
        for k in METRIC_KEYS:
            assert k in m, k
        conc = int(params["concurrency"])
        assert m["completed"] == 3 * conc and m["failed"] == 0
        assert m["mean_input_len"] == 32 and m["mean_output_len"] == 16  # realised lengths
        assert m["output_throughput"] > 0 and m["median_ttft_ms"] > 0
        for p in ("engine", "model", "model_path", "hardware", "tp", "pp", "dp", "ep", "engine_args.max_num_seqs",
                  "engine_args.enforce_eager", "engine_args.max_model_len", "input_len", "output_len",
                  "num_prompts", "warmup", "ignore_eos", "seed", "metrics.definition", "version.engine_version",
                  "version.torch", "engine_start_s"):
            assert p in params, p
        assert params["metrics.definition"] == "vllm-bench-serve"
        # the fit planner's KV capacity (1 GiB of VLLM_CPU_KVCACHE_SPACE / 2 layers × 2 KV heads × 64 × 2 bytes)
        # against the engine's own (its KV blocks × block size): within 5 %
        predicted, engine = int(params["fit.kv_capacity_tokens"]), int(params["engine.kv_capacity_tokens"])
        assert predicted == 2**30 // (2 * 2 * 2 * 64 * 2) and abs(engine / predicted - 1) < 0.05, (predicted, engine)
        assert params["fit.verdict"] == "FITS" and params["fit.kv_bound"] == "False"

        arts = {a.path for a in client.list_artifacts(r.info.run_id)}
        assert {"result.json", "requests.parquet", "serving_config.json", "system.json"} <= arts
        local = client.download_artifacts(r.info.run_id, "", str(tmp_path / r.info.run_id))
        result = json.loads(Path(local, "result.json").read_text())
        for k in METRIC_KEYS:                                  # same key names as the MLflow metrics
            assert result[k] == pytest.approx(m[k], rel=1e-9), k
        assert result["runner"]["trial_id"] == tags["runner.trial_id"]
        assert result["output_lens"] == [16] * (3 * conc)
        table = pq.read_table(f"{local}/requests.parquet").to_pydict()
        assert len(table["index"]) == 3 * conc and all(n == 16 for n in table["output_tokens"])
        # one timestamp per streamed chunk; under CPU contention vLLM's DELTA stream may coalesce
        # tokens into one chunk, so the chunks' token counts (not their number) must sum to 16
        for ct, ck in zip(table["chunk_times_s"], table["chunk_tokens"], strict=True):
            assert len(ct) == len(ck) and 1 <= len(ct) <= 16 and sum(ck) == 16 and min(ck) >= 1
            assert ct == sorted(ct)
        system = json.loads(Path(local, "system.json").read_text())
        assert system["engine"]["versions"]["engine_version"].startswith("0.32")
        assert system["engine"]["versions"]["torch"].startswith("2.13")
        assert "NCCL_DEBUG" in system["engine"]["env_names"]  # the sweep's env, set in the engine actor
        assert "/runner-pid-" in system["engine"]["compile_cache"]  # a CPU replica's own cache
        assert "compile_cache" not in system["engine"]["versions"]   # a path, not a version: no MLflow param
        assert system["engine"]["child_pids"]  # vLLM's engine core: the actor's child
        # the teardown killed the whole tree (Ray kills the actor's own process only) before run returned
        assert not [p for p in [system["engine"]["pid"], *system["engine"]["child_pids"]] if _runs(p)], system
        pids.setdefault(tags["runner.serving_config_id"], set()).add(system["engine"]["pid"])

    # each serving configuration was launched once: its two trials share one engine process
    assert len(pids) == 2 and all(len(p) == 1 for p in pids.values())
    assert len(set().union(*pids.values())) == 2

    # cleanup: no placement group of this sweep is left
    from ray.util import placement_group_table
    live = [v for v in placement_group_table().values()
            if v["name"].startswith("runner:it-e2e:") and v["state"] != "REMOVED"]
    assert live == []

    # resume: nothing new runs
    out2 = io.StringIO()
    assert session.run(path, out=out2) == 0
    assert "4 trials; 4 done, 0 to run" in out2.getvalue()
    assert len(client.search_runs([exp.experiment_id], max_results=100)) == 5


def test_cli_run_exits_1_and_status_lists_the_reason(mlflow_env, write_sweep, tmp_path, tiny_model):
    """A process-level run: a bad engine argument value fails at start; exit code 1; status says why."""
    bad = SWEEP.replace("name: it-e2e", "name: it-bad").replace("max_num_seqs: [4, 16]", "max_num_seqs: 4") \
        .replace("concurrency: [1, 4]", "concurrency: 1").replace("{max_model_len: 512}", "{max_model_len: -5}")
    path = write_sweep(bad, "bad.yaml")
    # a short RAY_TMPDIR: Ray's socket paths must fit the 107-byte AF_UNIX limit
    env = {**os.environ, "RAY_TMPDIR": tempfile.mkdtemp(prefix="ray-", dir="/tmp"), "PYTHONPATH": str(ROOT)}
    env.pop("RAY_ADDRESS", None)
    p = subprocess.run([sys.executable, "-m", "runner", "run", path], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=600)
    assert p.returncode == 1, p.stdout + p.stderr
    assert "FAILED: 1" in p.stdout and "resume with `python -m runner run" in p.stdout
    s = subprocess.run([sys.executable, "-m", "runner", "status", path], capture_output=True, text=True,
                       env=env, cwd=tmp_path, timeout=120)
    assert s.returncode == 0 and "FAILED" in s.stdout and "engine_start_error" in s.stdout, s.stdout


def _runs(pid: int) -> bool:
    """Whether ``pid`` still runs (a zombie does not; nor a pid that vanished while looked at)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False
