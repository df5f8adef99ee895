"""The cost estimate: the priors' arithmetic, measured figures preferred, and the GPU time a sweep
took read back from real MLflow runs."""

import json

import pytest
from mlflow.tracking import MlflowClient

from runner.plan import cost, fit
from runner.plan.trial import LoadPoint, ServingConfig, Trial
from runner.report import spend
from runner.sweep import catalog
from tests.unit.plan.test_fit import shape


def trial(hw="H100", tp=4, dp=1, **load) -> Trial:
    s = ServingConfig(engine="vllm", model="q", model_path="q", hardware=hw, tp=tp, dp=dp,
                      engine_args={"max_model_len": 16384, "kv_cache_dtype": "fp8"})
    ld = {"input_len": 8000, "output_len": 8000, "concurrency": 4, "num_prompts": 8, "warmup": 0, **load}
    return Trial(serving=s, load=LoadPoint(**ld))


def test_the_prior_reads_every_weight_once_a_decode_step_and_counts_waves():
    t = trial()
    f = fit.predict(t.serving, catalog.hardware()["H100"], shape("qwen3-coder-480b-a35b-awq"))
    e = cost.trial_seconds(t, f, catalog.hardware()["H100"], {}, {})
    tpot = f.weights_gb * 1e9 / (3.35e12 * cost.DECODE_EFFICIENCY)
    ttft = 8000 / (cost.PREFILL_TOKENS_PER_S * 4)
    assert e.source == "prior" and e.seconds == pytest.approx(2 * (ttft + 7999 * tpot))  # 8 prompts, c=4
    # c=64 asks for more than the KV cache holds (fit.at_load): the waves are counted at its capacity
    big = trial(concurrency=64, num_prompts=128)
    cap = fit.at_load(f, big.load)["max_concurrency"]
    assert 4 < cap < 64
    assert cost.trial_seconds(big, f, catalog.hardware()["H100"], {}, {}).seconds == pytest.approx(
        -(-128 // cap) * (ttft + 7999 * tpot))
    rate = trial(concurrency=None, request_rate=0.5, num_prompts=10)
    assert cost.latency_s(rate.load, 1.0, 0.01) == pytest.approx(10 / 0.5 + 1.0 + 7999 * 0.01)
    # an open loop with a concurrency cap takes what the cap allows when that is longer
    capped = trial(concurrency=4, request_rate=100.0, num_prompts=400, output_len=2)
    assert cost.latency_s(capped.load, 10.0, 10.0) == pytest.approx(100 * 20.0 + 20.0)


def test_a_wont_fit_configuration_costs_nothing_unless_it_is_launched_anyway():
    t = trial(tp=1)  # 480 B parameters on one H100
    fits = {t.serving.serving_config_id: fit.predict(t.serving, catalog.hardware()["H100"],
                                                     shape("qwen3-coder-480b-a35b-awq"))}
    assert fits[t.serving.serving_config_id].verdict == "WONT_FIT"
    [c] = cost.estimate([t], fits, catalog.hardware(), {"H100": 2.0})[1].values()
    assert c.gpu_hours == 0.0 and c.sources == ["wont_fit"]
    [c] = cost.estimate([t], fits, catalog.hardware(), {"H100": 2.0}, enforce=False)[1].values()
    assert c.gpu_hours > 0


def test_measured_figures_win_over_the_prior_and_cpu_without_them_is_unknown():
    t = trial()
    f = fit.predict(t.serving, catalog.hardware()["H100"], shape("qwen3-coder-480b-a35b-awq"))
    hw = catalog.hardware()["H100"]
    m = cost.trial_seconds(t, f, hw, {t.trial_id: {"duration": 120.0, "completed": 8}},
                           {t.serving.serving_config_id: (0.5, 0.02)})
    assert m == cost.Estimate(seconds=120.0, source="measured")
    c = cost.trial_seconds(t, f, hw, {}, {t.serving.serving_config_id: (0.5, 0.02)})
    assert c.source == "config" and c.seconds == pytest.approx(2 * (0.5 + 7999 * 0.02))
    cpu = trial(hw="cpu", tp=1)
    assert cost.trial_seconds(cpu, None, catalog.hardware()["cpu"], {}, {}).source == "unknown"


def test_a_configuration_costs_its_gpus_times_start_plus_trials():
    ts = [trial(concurrency=c, num_prompts=2 * c) for c in (2, 4)]
    fits = {ts[0].serving.serving_config_id: fit.predict(ts[0].serving, catalog.hardware()["H100"],
                                                         shape("qwen3-coder-480b-a35b-awq"))}
    per_trial, per_config = cost.estimate(ts, fits, catalog.hardware(), {"H100": 2.0})
    [c] = per_config.values()
    secs = sum(per_trial[t.trial_id].seconds for t in ts)
    assert c.start_s == cost.ENGINE_START_PRIOR_S and c.trials_s == pytest.approx(secs)
    assert c.gpu_hours == pytest.approx(4 * (300 + secs) / 3600) and c.dollars == pytest.approx(2 * c.gpu_hours)
    # measured runs of the configuration: their start and median latencies replace the priors
    runs = [{"trial_id": ts[0].trial_id, "serving_config_id": ts[0].serving.serving_config_id, "status": "COMPLETED",
             "metrics": {"duration": 100.0, "completed": 4, "median_ttft_ms": 400.0, "median_tpot_ms": 20.0},
             "engine_start_s": "240.5"}]
    per_trial, per_config = cost.estimate(ts, fits, catalog.hardware(), {"H100": None}, runs)
    [c] = per_config.values()
    assert c.start_s == 240.5 and c.dollars is None and c.sources == ["config", "measured"]
    assert per_trial[ts[1].trial_id].seconds == pytest.approx(2 * (0.4 + 7999 * 0.02))


def test_the_gpu_time_taken_is_read_from_real_runs(tmp_path):
    client = MlflowClient(f"sqlite:///{tmp_path / 'm.db'}")
    exp = client.create_experiment("x")
    for gpus, secs, start in [(4, 600, "120"), (4, 300, "120"), (1, 60, None)]:
        run = client.create_run(exp, start_time=1_000_000, tags={"runner.serving_config_id": "a" if gpus == 4 else "b",
                                                                 "runner.driver": "d"})
        client.log_param(run.info.run_id, "gpus", gpus)
        client.log_param(run.info.run_id, "hardware", "H100")
        if start:
            client.log_param(run.info.run_id, "engine_start_s", start)
        client.set_terminated(run.info.run_id, "FINISHED", end_time=1_000_000 + secs * 1000)
    runs = client.search_runs([exp])
    assert spend.took_gpu_hours(runs) == pytest.approx((4 * 600 + 4 * 300 + 60 + 4 * 120) / 3600)
    est = {"runner.estimate": json.dumps({"gpu_hours": 1.5, "configs": 2, "known": 1, "sources": ["prior"]})}
    text = spend.line(est, runs, {"H100": 2.0})
    assert text.startswith("cost: estimated 1.500 GPU-h before the first run (prior, 1 configuration(s) without one)")
    assert "took 1.150 GPU-h ($2.03 of trial time)" in text  # 4,140 GPU-s; 3,660 of them in trials at $2/h
    assert spend.line({}, runs, {}).endswith("no estimate recorded before the first run")
