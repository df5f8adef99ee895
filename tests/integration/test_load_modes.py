"""Load modes on the real engine: request rate (Poisson, gamma + cap), datasets, profiles, SLOs,
and the client-bound self-check, all checked in MLflow."""

import io
import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from runner import session

SWEEP = """
name: it-modes
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 512}
hardware: cpu
engine_args: {enforce_eager: true, max_num_seqs: 16}
workload:
  input_len: 48
  output_len: 16
  request_rate: [4, 2000]
  burstiness: 0.5
  num_prompts: "max(12, ceil(rate))"
  warmup: 1
  profiles: [tiny-64x16-c4]
  dataset: {kind: prefix, prefix_len: 32, groups: 2}
  slo: {ttft_ms: 5000}
"""


def test_rate_mode_datasets_profiles_and_client_bound(ray_local, mlflow_env, write_sweep, tmp_path):
    out = io.StringIO()
    assert session.run(write_sweep(SWEEP), out=out) == 0, out.getvalue()
    client = MlflowClient(mlflow_env)
    exp = client.get_experiment_by_name("it-modes")
    runs = client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'")
    by = {(r.data.params["request_rate"], r.data.params["profile"]): r for r in runs}
    assert set(by) == {("4.0", "None"), ("2000.0", "None"), ("inf", "tiny-64x16-c4")}
    slow, fast, prof = by[("4.0", "None")], by[("2000.0", "None")], by[("inf", "tiny-64x16-c4")]
    m = slow.data.metrics
    assert m["requested_rate"] == 4 and 1.0 < m["achieved_rate"] < 16   # 12 bursty arrivals: a noisy estimate
    assert m["request_goodput"] > 0 and m["mean_input_len"] == 48 and m["completed"] == 12
    assert slow.data.tags["runner.client_bound"] == "false"
    assert fast.data.metrics["completed"] == 2000
    # 2,000 requests/s cannot be sent by one Python process that also runs the engine's frontend
    assert fast.data.tags["runner.client_bound"] == "true" and fast.data.metrics["p90_schedule_lag_ms"] > 20
    assert prof.data.params["input_len"] == "64" and prof.data.metrics["completed"] == 16
    hashes = {r.data.tags["runner.dataset_hash"] for r in runs}
    assert len(hashes) == 3 and all(len(h) == 16 for h in hashes)
    assert slow.data.params["dataset"] == "groups=2,kind=prefix,prefix_len=32"
    local = client.download_artifacts(slow.info.run_id, "result.json", str(tmp_path))
    result = json.loads(Path(local).read_text())
    assert result["runner"]["dataset_hash"] == slow.data.tags["runner.dataset_hash"]
    assert slow.data.metrics["engine.prefix_cache_hits"] >= 0


CAPPED = """
name: it-cap
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 512}
hardware: cpu
engine_args: {enforce_eager: true, max_num_seqs: 16}
workload:
  input_len: 32
  output_len: 16
  concurrency: 2
  request_rate: 200
  num_prompts: 24
  warmup: 1
  dataset: {range_ratio: 0.5, range_convention: sglang}
"""


def test_a_concurrency_cap_holds_in_rate_mode_and_is_not_client_lag(ray_local, mlflow_env, write_sweep):
    out = io.StringIO()
    assert session.run(write_sweep(CAPPED, "capped.yaml"), out=out) == 0, out.getvalue()
    client = MlflowClient(mlflow_env)
    [run] = client.search_runs([client.get_experiment_by_name("it-cap").experiment_id],
                               "tags.`runner.role` = 'trial'")
    m = run.data.metrics
    assert m["max_in_flight"] <= 2 and m["achieved_rate"] < 100    # the cap, not the rate, set the pace
    assert run.data.tags["runner.client_bound"] == "false"          # waiting for the cap is not lag
    assert 16 <= m["mean_input_len"] <= 32 and m["min_output_len"] >= 8 and m["max_output_len"] <= 16  # [L*r, L]
