"""The sweep's saved comparison view in the MLflow UI.

MLflow's experiment page restores a *shared view* from the experiment tag
``mlflow.sharedViewState.<key>`` when opened at ``#/experiments/<id>/runs?viewStateShareKey=<key>``
(the UI's "Share" button writes the same tag; plain JSON is accepted). The state is the page's
search facets (``searchFilter``, ``orderByKey``, ``orderByAsc``) and its UI state
(``selectedColumns`` as ``params.`x``` / ``metrics.`x``` / ``tags.`x```, ``columnOrder``,
``columnWidths``, ``runsHiddenMode``); tests/integration/test_mlflow_ui.py renders it.

Invariants: the view shows only this sweep's trial runs (not the parent), ordered by output
throughput, with its name, a column for every parameter that varies across the sweep, the
headline metrics and the trial status (and, when any trial is of the simulated engine, the
``runner.simulation`` tag as a column); the state is a pure function of the trials, so
re-running a sweep rewrites the same tag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from runner.plan import Trial

PREFIX = "mlflow.sharedViewState."
METRICS = ("output_throughput", "total_token_throughput", "output_tput_per_gpu", "median_ttft_ms", "median_tpot_ms",
           "p99_itl_ms")
TAGS = ("runner.status",)
SIM_TAGS = ("runner.simulation",)
NAME = "attributes.`Run Name`"


def key(sweep: str) -> str:
    """The share key for a sweep: URL-safe and stable."""
    return "runner-" + re.sub(r"[^A-Za-z0-9_-]+", "-", sweep)[:80]


def varying(trials: Sequence[Trial]) -> list[str]:
    """Parameter names whose value differs between trials, in first-seen order."""
    seen: dict[str, set[str]] = {}
    for t in trials:
        for k, v in t.params().items():
            seen.setdefault(k, set()).add(repr(v))
    return [k for k, vs in seen.items() if len(vs) > 1 and k != "model_path"]


def state(sweep: str, trials: Sequence[Trial]) -> dict[str, Any]:
    """The shared-view JSON for one sweep's comparison."""
    params = [f"params.`{p}`" for p in varying(trials)]
    tags = (*TAGS, *SIM_TAGS) if any(t.serving.simulation for t in trials) else TAGS
    cols = [NAME, *params, *(f"metrics.`{m}`" for m in METRICS), *(f"tags.`{t}`" for t in tags)]
    widths = {NAME: 250, **{c: 95 for c in params}, **{c: 110 for c in cols[1 + len(params):]}}
    return {
        "searchFilter": f"tags.`runner.sweep` = '{sweep}' and tags.`runner.role` = 'trial'",
        "orderByKey": "metrics.`output_throughput`",
        "orderByAsc": False,
        "selectedColumns": cols,
        "columnOrder": ["runDateAndNestInfo", *cols],
        "columnWidths": widths,
        "runsHiddenMode": "SHOW_ALL",
    }


def link(base: str, experiment_id: str, share_key: str) -> str:
    """The UI address of the view; ``base`` is the UI's root URL (no trailing slash)."""
    return f"{base}/#/experiments/{experiment_id}/runs?viewStateShareKey={share_key}"
