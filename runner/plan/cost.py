"""What a sweep will cost before it runs: seconds, GPU-hours and dollars per serving configuration.

A configuration costs ``gpus × (engine start + Σ its trials' seconds) / 3600`` GPU-hours, times
its price per GPU-hour (the sweep's ``prices``, else the catalogue's; none known: no dollars).

A trial's seconds, best source first (``Estimate.source``):

1. ``measured``: the same trial's latest COMPLETED run: its ``duration`` metric (measured
   requests) plus its warm-up, at the same rate;
2. ``config``: the same serving configuration's COMPLETED runs: their median TTFT and TPOT in
   the latency model below;
3. ``prior``: a decode step reads every weight of a GPU once, so ``TPOT = weights per GPU /
   (bandwidth × DECODE_EFFICIENCY)`` (``fit.Fit.weights_gb``, the catalogue's ``bandwidth_tbps``),
   and ``TTFT = input_len / (PREFILL_TOKENS_PER_S × tp)``: stated priors, not measurements;
4. ``unknown``: no bandwidth (CPU hardware) and nothing measured.

Latency model: a request takes ``TTFT + (output_len − 1) × TPOT``; a closed loop at
concurrency ``c`` runs ``ceil(n / c)`` waves of one request each (``c`` capped at what the
predicted KV caches hold at once: a KV-bound load queues), an open loop at rate ``r``
takes ``n / r`` (or the waves its cap allows, when longer) plus one request; warm-up requests
run as closed-loop waves first. Engine start: the configuration's measured ``engine_start_s``
when known, else ``ENGINE_START_PRIOR_S`` on GPUs.
"""

from __future__ import annotations

import math
import statistics
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from runner.plan import fit as fit_mod
from runner.plan.fit import Fit
from runner.plan.trial import LoadPoint, Trial

#: Share of the memory bandwidth a decode step achieves (a stated prior).
DECODE_EFFICIENCY = 0.5
#: Prefill tokens per second per GPU (a stated prior).
PREFILL_TOKENS_PER_S = 5000.0
#: Seconds an engine takes to load and start on GPUs (a stated prior: weights from local disk).
ENGINE_START_PRIOR_S = 300.0

Source = Literal["measured", "config", "prior", "unknown", "wont_fit"]


class Estimate(BaseModel):
    model_config = ConfigDict(frozen=True)

    seconds: float | None
    source: Source


class ConfigCost(BaseModel):
    """One serving configuration's estimate; ``None`` where unknown."""

    model_config = ConfigDict(frozen=True)

    start_s: float | None
    trials_s: float | None
    gpu_hours: float | None
    dollars: float | None
    sources: list[str]

    def summary(self) -> str:
        if self.gpu_hours is None:
            return "estimate unknown (no bandwidth in the catalogue and nothing measured)"
        cost = f", ${self.dollars:,.2f}" if self.dollars is not None else ", no price"
        return f"estimate: {self.gpu_hours:,.2f} GPU-h{cost} ({'/'.join(self.sources)})"


def latency_s(load: LoadPoint, ttft_s: float, tpot_s: float, cap: int | None = None) -> float:
    """Seconds the load point's measured requests and its warm-up take at these latencies;
    ``cap``: requests the KV caches hold at once (``fit.at_load`` × replicas), which a closed
    loop's concurrency beyond it waits for."""
    one = ttft_s + max(load.output_len - 1, 0) * tpot_s
    c = min(load.concurrency or 1, cap) if cap else (load.concurrency or 1)
    warm = math.ceil(load.warmup / c) * one if load.warmup else 0.0
    waves = math.ceil(load.num_prompts / c) * one  # what the cap (or KV cache) alone allows
    if load.request_rate is not None and math.isfinite(load.request_rate):
        capped = load.concurrency is not None or cap is not None
        return warm + max(load.num_prompts / load.request_rate, waves if capped else 0.0) + one
    return warm + waves


def trial_seconds(t: Trial, f: Fit | None, hardware: dict[str, Any], measured: dict[str, dict[str, float]],
                  config_rates: dict[str, tuple[float, float]]) -> Estimate:
    """``measured``: trial id → its COMPLETED run's metrics; ``config_rates``: serving config id →
    (median TTFT, median TPOT) in seconds of its COMPLETED runs."""
    m = measured.get(t.trial_id)
    if m and m.get("duration") and m.get("completed"):
        per = m["duration"] / m["completed"]
        return Estimate(seconds=m["duration"] + per * t.load.warmup, source="measured")
    at = fit_mod.at_load(f, t.load, t.serving.dp) if f is not None else {}
    cap = at["max_concurrency"] * t.serving.dp if at.get("max_concurrency") else None
    rates = config_rates.get(t.serving.serving_config_id)
    if rates:
        return Estimate(seconds=latency_s(t.load, *rates, cap), source="config")
    bw = hardware.get("bandwidth_tbps")
    if f is None or f.verdict == "UNKNOWN" or not f.weights_gb or not bw:
        return Estimate(seconds=None, source="unknown")
    tpot = f.weights_gb * 1e9 / (float(bw) * 1e12 * DECODE_EFFICIENCY)
    ttft = t.load.input_len / (PREFILL_TOKENS_PER_S * t.serving.tp)
    return Estimate(seconds=latency_s(t.load, ttft, tpot, cap), source="prior")


def estimate(trials: list[Trial], fits: dict[str, Fit], hardware: dict[str, dict[str, Any]],
             prices: dict[str, float | None], runs: list[dict[str, Any]] | None = None, *,
             enforce: bool = True) -> tuple[dict[str, Estimate], dict[str, ConfigCost]]:
    """(per trial, per serving configuration) estimates. ``runs``: the store's latest run per trial
    as ``{"trial_id", "serving_config_id", "status", "metrics", "engine_start_s"}`` dicts;
    ``enforce``: WONT_FIT configurations are not launched, so they cost nothing."""
    runs = runs or []
    done = [r for r in runs if r.get("status") == "COMPLETED"]
    measured = {r["trial_id"]: r["metrics"] for r in done}
    rates: dict[str, tuple[float, float]] = {}
    starts: dict[str, float] = {}
    for sid in {r["serving_config_id"] for r in done}:
        mine = [r for r in done if r["serving_config_id"] == sid]
        ttft = [r["metrics"]["median_ttft_ms"] for r in mine if "median_ttft_ms" in r["metrics"]]
        tpot = [r["metrics"]["median_tpot_ms"] for r in mine if "median_tpot_ms" in r["metrics"]]
        if ttft and tpot:
            rates[sid] = (statistics.median(ttft) / 1e3, statistics.median(tpot) / 1e3)
    for r in runs:
        if r.get("engine_start_s") is not None:
            starts.setdefault(r["serving_config_id"], float(r["engine_start_s"]))
    per_trial: dict[str, Estimate] = {}
    per_config: dict[str, ConfigCost] = {}
    by_config: dict[str, list[Trial]] = {}
    for t in trials:
        by_config.setdefault(t.serving.serving_config_id, []).append(t)
    for sid, ts in by_config.items():
        s = ts[0].serving
        hw = hardware.get(s.hardware, {})
        if enforce and sid in fits and fits[sid].verdict == "WONT_FIT":
            per_trial.update({t.trial_id: Estimate(seconds=0.0, source="wont_fit") for t in ts})
            per_config[sid] = ConfigCost(start_s=0.0, trials_s=0.0, gpu_hours=0.0, dollars=0.0, sources=["wont_fit"])
            continue
        ests = [trial_seconds(t, fits.get(sid), hw, measured, rates) for t in ts]
        per_trial.update({t.trial_id: e for t, e in zip(ts, ests, strict=True)})
        start = starts.get(sid, ENGINE_START_PRIOR_S if hw.get("kind") == "gpu" else None)
        known = all(e.seconds is not None for e in ests) and start is not None
        total = sum(e.seconds or 0.0 for e in ests) if known else None
        hours = s.gpus * (start + total) / 3600 if known and total is not None and start is not None else None
        price = prices.get(s.hardware)
        per_config[sid] = ConfigCost(start_s=start, trials_s=total, gpu_hours=hours,
                                     dollars=hours * price if hours is not None and price is not None else None,
                                     sources=sorted({e.source for e in ests}))
    return per_trial, per_config

