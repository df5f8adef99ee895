"""What a sweep took in GPU time, beside what ``plan`` estimated before its first run.

Took: every trial run of the sweep (every attempt, failed ones too: their GPUs were held) counts
``gpus × (end − start)`` of the run, and each launch (serving configuration × driver) once more
``gpus × engine_start_s``; placement waits and teardown are not counted, nor runs a later driver
reclaimed (``driver_killed``: their end is the reclaim, not when the GPUs were let go), and a
configuration relaunched by the same driver counts its start once. The estimate is the
parent run's ``runner.estimate`` tag (``runner.preflight.first_estimate``, from the priors and
whatever MLflow had measured before the first run).
"""

from __future__ import annotations

import json
from typing import Any


def took_gpu_hours(runs: list[Any]) -> float:
    """GPU-hours of trial runs (MLflow ``Run`` objects; those without an end time are skipped)."""
    total, launches = 0.0, {}
    for r in runs:
        gpus = float(r.data.params.get("gpus") or 0)
        # a reclaimed run (driver_killed) ends when it was reclaimed, maybe hours later: not counted
        if r.info.end_time and r.info.start_time and r.data.tags.get("runner.reason") != "driver_killed":
            total += gpus * (r.info.end_time - r.info.start_time) / 1000.0
        start = r.data.params.get("engine_start_s")
        if start is not None:
            key = (r.data.tags.get("runner.serving_config_id"), r.data.tags.get("runner.driver"))
            launches[key] = gpus * float(start)
    return (total + sum(launches.values())) / 3600.0


def line(parent_tags: dict[str, str], runs: list[Any], prices: dict[str, float | None]) -> str:
    """One line for the report's head: estimated against taken, or what is known of either."""
    took = took_gpu_hours(runs)
    dollars = sum(float(r.data.params.get("gpus") or 0) * _hours(r) * (prices.get(r.data.params.get("hardware"))
                                                                       or 0.0) for r in runs)
    shown = f"took {took:,.3f} GPU-h" + (f" (${dollars:,.2f} of trial time)" if dollars else "")
    try:
        est = json.loads(parent_tags.get("runner.estimate", ""))
    except ValueError:
        return f"cost: {shown}; no estimate recorded before the first run"
    part = "" if est.get("known") == est.get("configs") else \
        f", {est.get('configs', 0) - est.get('known', 0)} configuration(s) without one"
    return (f"cost: estimated {est.get('gpu_hours', 0):,.3f} GPU-h before the first run "
            f"({'/'.join(est.get('sources', [])) or 'none'}{part}); {shown}")


def _hours(r: Any) -> float:
    if r.data.tags.get("runner.reason") == "driver_killed":
        return 0.0
    return (r.info.end_time - r.info.start_time) / 3.6e6 if r.info.end_time and r.info.start_time else 0.0
