"""Load modes on the real engine: request rate (Poisson, gamma + cap), datasets, profiles, SLOs,
and the client-bound self-check, all checked in MLflow."""

import io
import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest
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
    assert fast.data.metrics["completed"] == 2000
    # 2,000 requests/s cannot be sent by one Python process that also runs the engine's frontend
    assert fast.data.tags["runner.client_bound"] == "true" and fast.data.metrics["p90_schedule_lag_ms"] > 20
    # The flag is the rule applied to each run's own lags, and it tells the two apart in the same run:
    # at 4/s the client keeps its schedule an order of magnitude better than at 2,000/s, busy machine or not.
    for r in (slow, fast):
        assert r.data.tags["runner.client_bound"] == str(r.data.metrics["p90_schedule_lag_ms"] > 20).lower()
    assert slow.data.metrics["p90_schedule_lag_ms"] * 10 < fast.data.metrics["p90_schedule_lag_ms"]
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
  request_rate: 1000
  num_prompts: 24
  warmup: 1
  dataset: {range_ratio: 0.5, range_convention: sglang}
"""


def test_a_concurrency_cap_holds_in_rate_mode_and_is_not_client_lag(ray_local, mlflow_env, write_sweep, tmp_path):
    """24 measured arrivals due within ~25 ms (1,000/s), at most 2 in flight: the cap, not the rate, sets the
    pace. Every bound comes from this run's own requests, so a slower or busier machine moves the
    figures but not the verdict."""
    out = io.StringIO()
    assert session.run(write_sweep(CAPPED, "capped.yaml"), out=out) == 0, out.getvalue()
    client = MlflowClient(mlflow_env)
    [run] = client.search_runs([client.get_experiment_by_name("it-cap").experiment_id],
                               "tags.`runner.role` = 'trial'")
    m, cap, rate = run.data.metrics, 2, 1000.0
    assert m["max_in_flight"] == cap                                 # the cap was reached and never passed
    reqs = pq.read_table(client.download_artifacts(run.info.run_id, "requests.parquet", str(tmp_path))).to_pydict()
    sends = sorted(reqs["st_s"])
    e2el = sorted(t[-1] - st for st, t in zip(reqs["st_s"], reqs["chunk_times_s"]))
    n = len(sends)
    assert n == 24 and m["achieved_rate"] == pytest.approx((n - 1) / (sends[-1] - sends[0]), rel=1e-9)
    # Little's law: uncapped, the requested rate would keep rate × latency > 2 requests in flight
    assert rate * e2el[0] > cap, e2el[0]
    # With at most `cap` in flight, the n - cap requests done before the last send fit in the send span
    # `cap` at a time, so the achieved rate can never exceed cap·(n-1)/Σ(the n - cap shortest latencies).
    assert m["achieved_rate"] <= cap * (n - 1) / sum(e2el[:n - cap]) < rate, (m["achieved_rate"], e2el)
    assert run.data.tags["runner.client_bound"] == "false"          # waiting for the cap is not lag
    assert 16 <= m["mean_input_len"] <= 32 and m["min_output_len"] >= 8 and m["max_output_len"] <= 16  # [L*r, L]
