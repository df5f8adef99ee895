"""``python -m runner report SWEEP``: the studies' tables, CSVs and plots from a sweep's trials.

``main`` loads the spec, expands the grid (so cells that never ran show as PENDING), reads the
runs from MLflow into rows (``runner.report.rows``), prints the tables (``runner.report.tables``), and writes
CSVs, ``report.txt`` and PNGs (``runner.report.plots``) to ``reports/<sweep>/`` and to the sweep's
parent run (artifact folder ``report/``). It works on a partial sweep and never changes a
trial run.

A sweep that never ran (no trial run of it in MLflow) gets one line saying so and exit 1, and
nothing is written: no MLflow experiment, parent run or artifact, no report folder. Simulated
trials are marked ``SIMULATION`` in the head line, each row and each plot (``rows.SIM_MARK``).
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from runner.core import redact
from runner.report import frontier, spend
from runner.report.rows import build_rows, simulated
from runner.report.tables import Table, frontier_table, tables


# -- I/O --------------------------------------------------------------------------------------
def write_report(rows: Sequence[dict], ts: Sequence[Table], text: str, d: Path) -> list[str]:
    """CSVs, report.txt and PNGs into ``d``; returns warnings (plots that could not be drawn)."""
    d.mkdir(parents=True, exist_ok=True)
    for t in [*ts, frontier_table(rows)]:
        t.write_csv(d / f"{t.name}.csv")
    (d / "report.txt").write_text(text + "\n")
    try:
        from runner.report import plots
    except ImportError as e:
        return [f"plots skipped: {e} (install the `report` extra: pip install .[report])"]
    try:
        plots.write_all(rows, next(t for t in ts if t.name == "throughput"), d)
    except Exception as e:  # a plot must not cost the tables
        return [f"plots failed: {type(e).__name__}: {e}"]
    return []


def existing_store(experiment: str, sweep: str):
    """The sweep's ``Store`` when its MLflow experiment exists, else None with nothing written."""
    from runner.results import Store

    return Store.existing(experiment, sweep)


def _check_ratio(ratio: tuple[str, str] | None, rows: list[dict]) -> None:
    """``--ratio A B`` must name two curves of this sweep's data (before anything is written)."""
    if not ratio:
        return
    from runner.core import UsageError

    names = sorted({n for cs in frontier.curves(rows).values() for n in cs})
    bad = [n for n in ratio if n not in names]
    if bad:
        raise UsageError(f"report --ratio: got {', '.join(repr(b) for b in bad)}: no such curve; allowed: "
                         + (", ".join(repr(n) for n in names) or "none yet (no COMPLETED trial to plot)"))


def main(path: str, out=sys.stdout, *, levels: Sequence[float] | None = None,
         ratio: tuple[str, str] | None = None, dest: str | Path | None = None,
         interpolation: str = frontier.DEFAULT_SPACE) -> int:
    """Build the report of sweep file ``path``; 0 when written everywhere, 1 when a part failed
    or the sweep never ran (then nothing is written anywhere).

    ``levels``: iso-interactivity levels in tok/s/user (default: ``frontier.default_levels``);
    ``ratio``: (numerator, denominator) curve names for the ratio column; ``dest``: local folder
    (default ``reports/<sweep>/``); ``interpolation``: the iso-interactivity space
    (``frontier.SPACES``), named in the table's title.
    """
    from runner.core import StoreError
    from runner.plan import grid
    from runner.results import spool
    from runner.sweep import catalog
    from runner.sweep import spec as spec_mod

    spec = spec_mod.load(path)
    trials = grid.expand(spec)
    hw = catalog.hardware()
    prices = {h: spec.prices.get(h, hw.get(h, {}).get("price_per_gpu_hour")) for h in spec.hardware}
    store = existing_store(spec.experiment_name, spec.name)
    try:
        latest = store.latest_by_trial() if store is not None else {}
    except Exception as e:
        why = redact.text(f"{type(e).__name__}: {e}")[:300]
        raise StoreError(f"MLflow at {store.shown_uri} could not be read ({why})") from None
    ids = {t.trial_id for t in trials}
    stale = [k for k, r in latest.items() if k not in ids and r.data.tags.get("runner.sweep") == spec.name]
    if store is None or not (stale or ids & latest.keys()):
        spooled = len(spool.pending_uploads(spool.default_root(), spec.name))
        print(f"sweep {spec.name} has not run yet: no trial of it in MLflow experiment {spec.experiment_name!r}"
              + (f"; {spooled} result(s) wait in the spool: `python -m runner sync {path}`" if spooled else
                 f"; run it with `python -m runner run {path}`") + "; no report written", file=out)
        return 1
    rows = build_rows(trials, latest, prices)
    _check_ratio(ratio, rows)
    counts = Counter(r["status"] for r in rows)
    head = (f"report of sweep {spec.name}: {len(rows)} trials; "
            + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())))
    sim = [r for r in rows if simulated(r)]
    if sim:
        head += (f"\nSIMULATION: {len(sim)} trial(s) of the simulated engine (holds resources, loads no model); "
                 "their numbers are not inference measurements (rows and plots marked SIMULATION)")
    if stale:
        head += f"\nnote: {len(stale)} trial(s) of this sweep in MLflow are no longer in {path}; not reported"
    try:
        head += "\n" + spend.line(store.parent_tags(), store.trial_runs(), prices)
    except Exception as e:  # the cost line never stops a report
        head += f"\ncost: not read from MLflow ({type(e).__name__})"
    ts = tables(rows, levels or frontier.default_levels(rows) or frontier.DEFAULT_LEVELS, ratio, interpolation)
    text = "\n\n".join([head, *(t.render() for t in ts)])
    print(text, file=out)
    local = Path(dest) if dest else Path.cwd() / "reports" / spec.name
    rc = 0
    with tempfile.TemporaryDirectory(prefix="llmsweep-report-") as tmp:
        d = Path(tmp) / "report"
        warnings = write_report(rows, ts, text, d)
        local.mkdir(parents=True, exist_ok=True)
        for old in local.iterdir():
            if old.is_file() and old.suffix in (".csv", ".png", ".txt"):
                old.unlink()
        for f in sorted(d.iterdir()):
            shutil.copy2(f, local / f.name)
        try:
            store.log_parent(artifacts=Path(tmp))
            where = f"MLflow: artifacts 'report/' of run {store.parent()} (experiment {spec.experiment_name!r})"
        except Exception as e:
            where, rc = f"! MLflow upload failed ({type(e).__name__}: {str(e)[:200]}); the local copy is complete", 1
        names = sorted(f.name for f in d.iterdir())
    for w in warnings:
        print(f"! {w}", file=out)
        rc = 1
    print(f"\nwrote {len(names)} files to {local}/: {', '.join(names)}\n{where}", file=out)
    return rc
