"""What ``plan`` and ``validate`` show before any launch, and ``run`` records before its first:
each serving configuration's fit (``runner.plan.fit``), its estimated cost (``runner.plan.cost``,
from what MLflow has measured when the sweep's experiment exists), and the plan table."""

from __future__ import annotations

import json
import os
from typing import Any

from runner.plan import Trial, cost, grid
from runner.plan import fit as fit_mod
from runner.results import STATUS, Store, price_for
from runner.sweep import catalog
from runner.sweep import spec as spec_mod

#: The parent run's tag holding the sweep's estimate from before its first run (``first_estimate``).
ESTIMATE_TAG = "runner.estimate"


def fits(spec: spec_mod.SweepSpec, trials: list[Trial]) -> dict[str, fit_mod.Fit]:
    """The fit planner's verdict per serving configuration, with the env the engine actors get."""
    return fit_mod.for_trials(trials, dict(os.environ), spec.env)


def estimates(spec: spec_mod.SweepSpec, trials: list[Trial], verdicts: dict[str, fit_mod.Fit],
              store: Store | None = None) -> tuple[dict[str, cost.Estimate], dict[str, cost.ConfigCost]]:
    """``cost.estimate`` of ``trials``, from what the sweep's MLflow experiment has measured when
    it exists (``store``, else looked up without creating anything) and the priors otherwise."""
    runs = []
    try:
        store = store or Store.existing(spec.experiment_name, spec.name)
        for tid, r in (store.latest_by_trial() if store is not None else {}).items():
            runs.append({"trial_id": tid, "serving_config_id": r.data.tags.get("runner.serving_config_id"),
                         "status": r.data.tags.get(STATUS), "metrics": dict(r.data.metrics),
                         "engine_start_s": r.data.params.get("engine_start_s")})
    except Exception:  # MLflow unreachable: the priors alone
        runs = []
    prices = {h: price_for(spec, h) for h in {t.serving.hardware for t in trials}}
    return cost.estimate(trials, verdicts, catalog.hardware(), prices, runs, enforce=spec.fit.enforce)


def total_line(per_config: dict[str, cost.ConfigCost]) -> str:
    known = [c for c in per_config.values() if c.gpu_hours is not None]
    dollars = [c.dollars for c in known if c.dollars is not None]
    unknown = len(per_config) - len(known)
    return (f"estimated cost: {sum(c.gpu_hours or 0 for c in known):,.2f} GPU-h"
            + (f", ${sum(dollars):,.2f}" if dollars else "")
            + (f" ({len(known) - len(dollars)} configuration(s) without a price)" if len(dollars) < len(known) else "")
            + (f"; {unknown} configuration(s) unknown" if unknown else "")
            + " (runner.plan.cost: measured where MLflow has the trial or its configuration, else priors)")


def plan_rows(trials: list[Trial], verdicts: dict[str, fit_mod.Fit] | None = None,
              per_trial: dict[str, cost.Estimate] | None = None) -> list[dict[str, Any]]:
    rows = []
    for t in trials:
        row = {"trial_id": t.trial_id, "serving_config_id": t.serving.serving_config_id, "params": t.params()}
        if verdicts is not None:
            f = verdicts[t.serving.serving_config_id]
            row["fit"] = {**f.model_dump(), **fit_mod.at_load(f, t.load, t.serving.dp)}
        if per_trial is not None:
            row["estimate"] = per_trial[t.trial_id].model_dump()
        rows.append(row)
    return rows


def format_plan(name: str, trials: list[Trial], verdicts: dict[str, fit_mod.Fit] | None = None,
                per_config: dict[str, cost.ConfigCost] | None = None) -> str:
    groups = grid.group(trials)
    lines = [f"sweep {name}: {len(trials)} trials in {len(groups)} serving configurations "
             f"({len(groups)} engine launches)", ""]
    for i, (sid, ts) in enumerate(groups.items(), 1):
        s = ts[0].serving
        lines.append(f"[{i}] {sid}  {s.label()}  ({s.gpus} device{'s' if s.gpus > 1 else ''})")
        f = verdicts.get(sid) if verdicts else None
        if f is not None:
            lines.append(f"    {f.summary()}")
        if per_config and sid in per_config:
            lines.append(f"    {per_config[sid].summary()}")
        lines.append(f"    {'trial_id':<18}{'load':>28}{'input_len':>11}{'output_len':>12}{'num_prompts':>13}"
                     + (f"{'fit/replica':>13}" if f is not None and f.verdict != "UNKNOWN" else ""))
        for t in ts:
            ld = t.load
            at = fit_mod.at_load(f, ld, s.dp) if f is not None else {}
            note = (f"{at['max_concurrency']:>13}" + ("  kv_bound: will queue or preempt" if at["kv_bound"] else "")
                    if at else "")
            lines.append(f"    {t.trial_id:<18}{ld.label():>28}{ld.input_len:>11}{ld.output_len:>12}"
                         f"{ld.num_prompts:>13}{note}")
    if per_config:
        lines += ["", total_line(per_config)]
    return "\n".join(lines)


def fit_lines(verdicts: dict[str, fit_mod.Fit], enforce: bool) -> list[str]:
    """One line per WONT_FIT serving configuration, and what ``run`` will do with it."""
    bad = {sid: f for sid, f in verdicts.items() if f.verdict == "WONT_FIT"}
    if not bad:
        return []
    then = "run launches them anyway (fit: {enforce: false})" if not enforce else \
        "run will not launch them (their trials end WONT_FIT); set fit: {enforce: false} to launch anyway"
    return [f"{len(bad)} serving configuration(s) WONT_FIT; {then}:"] + [f"  {sid}: {f.reason}"
                                                                      for sid, f in bad.items()]


def first_estimate(store: Store, spec: spec_mod.SweepSpec, trials: list[Trial], verdicts: dict[str, fit_mod.Fit],
                   out) -> None:
    """Record the whole sweep's estimate on the parent run once, before its first run (tag
    ``runner.estimate``), for the report to set beside what the sweep took."""
    try:
        if ESTIMATE_TAG in store.parent_tags():
            return
        _, per_config = estimates(spec, trials, verdicts, store)
        known = [c for c in per_config.values() if c.gpu_hours is not None]
        store.log_parent(tags={ESTIMATE_TAG: json.dumps({
            "gpu_hours": sum(c.gpu_hours or 0 for c in known), "configs": len(per_config), "known": len(known),
            "dollars": sum(c.dollars for c in known if c.dollars is not None),
            "sources": sorted({x for c in known for x in c.sources})})})
        print(total_line(per_config), file=out)
    except Exception as e:  # an estimate never stops a run
        print(f"! no cost estimate ({type(e).__name__}: {str(e)[:200]})", file=out)
