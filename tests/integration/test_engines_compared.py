"""vLLM and SGLang in one sweep (``engine: [vllm, sglang]``), then one report compares them; and
a study-5-style request-rate sweep on SGLang.

Both engines run for real on the tiny model: vLLM in the driver's venv, SGLang in its CPU lane
(``lanes: {sglang: sglang-cpu}``, built by scripts/build-sglang-lane.sh when missing). The
records of both must be identical in form, so the report's tables and frontier put them side
by side.
"""

from __future__ import annotations

import csv
import io

import pytest
from mlflow.tracking import MlflowClient

from runner import session
from runner.report import write as report

BOTH = """
name: engines-compared
engine: [vllm, sglang]
lanes: {sglang: sglang-cpu}
models:
  - id: tiny-llama
    path: $MODEL
hardware: cpu
engine_args: {}
workload:
  input_len: 32
  output_len: 16
  concurrency: [1, 4]
  num_prompts: "3 * concurrency"
  warmup: 1
"""

# Study 5's method (SEEDS.md): SGLang, open loop at fixed request rates, prompts = k × rate,
# exact lengths; scaled to the tiny model and two cores.
RATES = """
name: sglang-rates
engine: sglang
lanes: {sglang: sglang-cpu}
models:
  - id: tiny-llama
    path: $MODEL
hardware: cpu
workload:
  input_len: 64
  output_len: 16
  request_rate: [2, 4]
  num_prompts: "4 * rate"
  warmup: 1
"""


@pytest.fixture
def mlflow_uri(tmp_path, monkeypatch):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("RUNNER_SPOOL", str(tmp_path / "spool"))
    return uri


def _trials(uri: str, experiment: str) -> list:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return [r for r in client.search_runs([exp.experiment_id], max_results=100)
            if r.data.tags["runner.role"] == "trial"]


def test_one_sweep_on_both_engines_and_a_report_that_compares_them(ray_local, mlflow_uri, write_sweep, tmp_path):
    path = write_sweep(BOTH, "both.yaml")
    out = io.StringIO()
    assert session.run(path, out=out) == 0, out.getvalue()
    runs = _trials(mlflow_uri, "engines-compared")
    assert len(runs) == 4 and all(r.data.tags["runner.status"] == "COMPLETED" for r in runs)
    by_engine = {e: [r for r in runs if r.data.params["engine"] == e] for e in ("vllm", "sglang")}
    assert all(len(v) == 2 for v in by_engine.values())
    import importlib.util

    assert importlib.util.find_spec("sglang") is None     # the driver's venv has no SGLang: the lane ran it
    for r in by_engine["sglang"]:
        assert r.data.params["lane"] == "sglang-cpu"
        assert r.data.params["version.engine_version"].startswith("0.5.23")
    for r in by_engine["vllm"]:
        assert r.data.params["lane"] == "default" and r.data.params["version.engine_version"].startswith("0.32")
    # identical in form: the same metric names (engine telemetry aside) and the same params
    core = [{k for k in r.data.metrics if not k.startswith("engine.")} for r in runs]
    assert all(c == core[0] for c in core), [sorted(c ^ core[0]) for c in core]
    # and the same params, the fit planner's aside: it predicts vLLM's CPU KV cache
    # (VLLM_CPU_KVCACHE_SPACE), not SGLang's, which it reports as unknown
    def form(r):
        return {k for k in r.data.params if not k.startswith("fit.")}

    assert all(form(r) == form(runs[0]) for r in runs), [sorted(form(r) ^ form(runs[0])) for r in runs]
    for r in by_engine["sglang"]:
        assert r.data.params["fit.verdict"] == "UNKNOWN" and int(r.data.params["engine.kv_capacity_tokens"]) > 0
    for r in by_engine["vllm"]:
        assert r.data.params["fit.verdict"] == "FITS" and int(r.data.params["engine.kv_capacity_tokens"]) > 0
    for r in runs:
        m = r.data.metrics
        assert m["completed"] == 3 * int(r.data.params["concurrency"]) and m["failed"] == 0
        assert m["mean_input_len"] == 32 and m["mean_output_len"] == 16 and m["output_throughput"] > 0

    # iso-interactivity levels inside each engine's measured range (tok/s/user = 1000 / median TPOT)
    span = {e: sorted(r.data.metrics["interactivity"] for r in rs) for e, rs in by_engine.items()}
    mids = {e: (lo + hi) / 2 for e, (lo, hi) in span.items()}
    # --ratio must name curves of this data: refused (exit 2 via UsageError) before anything is written
    from runner.core import UsageError

    with pytest.raises(UsageError) as bad:
        report.main(path, out=io.StringIO(), dest=tmp_path / "bad-report", ratio=("vllm", "sglang"))
    msg = str(bad.value)
    assert bad.value.exit_code == 2 and "got 'vllm', 'sglang': no such curve" in msg, msg
    assert "allowed: 'sglang sglang-cpu', 'vllm default'" in msg, msg
    assert not (tmp_path / "bad-report").exists()
    rep = io.StringIO()
    assert report.main(path, out=rep, dest=tmp_path / "report", levels=[mids["vllm"], mids["sglang"]]) == 0, \
        rep.getvalue()
    text = rep.getvalue()
    thr = text.split("1. ")[1].split("\n\n")[0]
    assert "vllm" in thr and "sglang [sglang-cpu]" in thr          # one throughput row per engine
    with (tmp_path / "report" / "iso_interactivity.csv").open() as f:
        iso = list(csv.DictReader(f))
    assert len(iso) == 2                                            # one curve per engine, side by side
    ratio = next(k for k in iso[0] if k.startswith("ratio "))
    for row, own, other in ((iso[0], "vllm default", "sglang sglang-cpu"),
                            (iso[1], "sglang sglang-cpu", "vllm default")):
        assert float(row[own]) > 0                                  # inside its own range: a number
        lv, (lo, hi) = float(row["tok/s/user"]), span[other.split()[0]]
        if lo <= lv <= hi:                                          # inside both: a number and a ratio
            assert float(row[other]) > 0 and float(row[ratio]) > 0
        else:
            assert row[other] == "unreachable" and row[ratio] == ""

    # the plots show what they claim: read back each PNG's titles, axis labels and legends
    from runner.report.plots import describe

    d = tmp_path / "report"
    (pareto,) = describe(d / "pareto_tiny-llama_32x16.png")["axes"]
    assert "tok/s/user" in pareto["xlabel"] and "tok/s/GPU" in pareto["ylabel"] and "tiny-llama" in pareto["title"]
    assert {"vllm default frontier", "sglang sglang-cpu frontier"} <= set(pareto["legend"])
    lat = describe(d / "latency.png")
    assert len(lat["axes"]) == 4 and all("tok/s" in a["xlabel"] and "ms" in a["ylabel"] for a in lat["axes"])
    assert sorted(n.split()[0] for n in lat["legend"]) == ["sglang", "vllm"]   # a line per serving config
    bars = describe(d / "throughput.png")
    assert all(a["legend"] == ["cpu · sglang [sglang-cpu]", "cpu · vllm"] and "tok/s" in a["ylabel"]
               for a in bars["axes"])


def test_a_request_rate_sweep_on_sglang(ray_local, mlflow_uri, write_sweep):
    path = write_sweep(RATES, "rates.yaml")
    out = io.StringIO()
    assert session.run(path, out=out) == 0, out.getvalue()
    runs = _trials(mlflow_uri, "sglang-rates")
    assert sorted(float(r.data.params["request_rate"]) for r in runs) == [2.0, 4.0]
    for r in runs:
        m, rate = r.data.metrics, float(r.data.params["request_rate"])
        assert r.data.tags["runner.status"] == "COMPLETED" and r.data.params["engine"] == "sglang"
        assert int(r.data.params["num_prompts"]) == 4 * rate and m["completed"] == 4 * rate
        assert m["requested_rate"] == rate and m["achieved_rate"] > 0
        assert m["mean_input_len"] == 64 and m["mean_output_len"] == 16
        assert "p90_schedule_lag_ms" in m or "mean_schedule_lag_ms" in m
