"""The sweep-level verbs behind the CLI: plan, run (with resume), status.

Resume policy, per trial status of its runs in the sweep's experiment:
COMPLETED → skip; FAILED, INVALID, KILLED, UNSCHEDULABLE → run again while attempts <
``max_attempts``; ``--rerun ID`` and ``--rerun-status S`` force a rerun regardless. A trial whose
configuration the fit planner predicts WONT_FIT is not launched (``fit.enforce``); it is recorded
WONT_FIT once, and planned again on every run.
A driver holds the sweep's lease (``runner.results.lease``) from before it touches anything until it
exits; while another driver's lease is live, ``run`` refuses (exit 2). Runs left RUNNING by a driver
whose lease is not live are reclaimed as KILLED first, and only such drivers' placement groups removed.
"""

from __future__ import annotations

import signal
import sys
from collections import Counter
from pathlib import Path
from typing import Any

from runner import preflight
from runner.core import StoreError, redact
from runner.plan import Status, Trial, grid
from runner.plan import fit as fit_mod
from runner.results import STATUS, TRIAL, Lease, LeaseRecord, Progress, Recorder, Store, spool
from runner.results import sync as sync_mod
from runner.sweep import spec as spec_mod


def select(trials: list[Trial], store: Store | None, root: Path, spec: spec_mod.SweepSpec, rerun_ids: set[str],
           rerun_status: set[str]) -> tuple[list[Trial], int, list[str]]:
    """(trials to run, how many are done, ids skipped for exhausted attempts).

    MLflow is the record; the spool fills in what has not reached it yet.
    """
    latest = store.latest_by_trial() if store is not None else {}
    attempts = Counter(r.data.tags.get(TRIAL) for r in store.trial_runs()  # a WONT_FIT record is no attempt
                       if r.data.tags.get(STATUS) != Status.WONT_FIT.value) if store is not None else Counter()
    local_done = spool.completed(root, spec.name)
    todo, done, exhausted = [], 0, []
    for t in trials:
        st = latest[t.trial_id].data.tags.get(STATUS) if t.trial_id in latest else None
        if st != "COMPLETED" and t.trial_id in local_done:
            st = "COMPLETED"
        forced = t.trial_id in rerun_ids or (st or "").lower() in rerun_status
        n = max(attempts[t.trial_id], spool.attempts(root, spec.name, t.trial_id))
        if st == "COMPLETED" and not forced:
            done += 1
        elif forced or n < spec.max_attempts:
            todo.append(t)
        else:
            exhausted.append(t.trial_id)
    return todo, done, exhausted


def run(path: str, *, max_parallel: int | None = None, rerun_ids: set[str] | None = None,
        rerun_status: set[str] | None = None, verbose: bool = False, out=sys.stdout) -> int:
    spec = spec_mod.load(path)
    trials = grid.expand(spec)
    root = spool.default_root()
    try:
        store: Store | None = Store(spec.experiment_name, spec.name)
    except StoreError as e:
        print(f"! {e}\n! going on without MLflow (so without a lease on the sweep): results stay in {root}/; "
              f"upload them later with `python -m runner sync {path}`", file=out, flush=True)
        store = None
    me, lease = LeaseRecord.here(), None
    if store is not None:
        store.parent({"sweep_file": path, "trials": len(trials), "serving_configs": len(grid.group(trials))})
        lease = Lease.acquire(store, me)  # LeaseHeld (exit 2) while another driver runs the sweep
    try:
        return _run(path, spec, trials, root, store, lease, me.driver, max_parallel=max_parallel,
                    rerun_ids=rerun_ids, rerun_status=rerun_status, verbose=verbose, out=out)
    finally:
        if lease is not None:
            lease.release()


def _run(path: str, spec: spec_mod.SweepSpec, trials: list[Trial], root: Path, store: Store | None,
         lease: Lease | None, driver: str, *, max_parallel: int | None, rerun_ids: set[str] | None,
         rerun_status: set[str] | None, verbose: bool, out) -> int:
    """``run`` once the lease is held (``lease``; ``None`` without MLflow); ``driver``: this driver's id."""
    from runner.cluster import Scheduler, capacity, connect, placement

    if store is not None:
        uploaded, pending = sync_mod.sync(store, root, spec.name)  # before reclaiming: synced runs are not stale
        if uploaded or pending:
            print(f"synced {uploaded} spooled result(s) to MLflow; {pending} still pending", file=out)
            for line in sync_mod.pending_lines(root, spec.name):
                print("  " + line, file=out)
        reclaimed = store.reclaim_stale()
        if reclaimed:
            print(f"reclaimed {len(reclaimed)} trial run(s) left RUNNING by a driver whose lease expired as "
                  "KILLED", file=out)
        _open_parent(store, spec, trials, path, out)
    todo, done, exhausted = select(trials, store, root, spec, rerun_ids or set(),
                                   {s.lower() for s in rerun_status or set()})
    print(f"sweep {spec.name}: {len(trials)} trials; {done} done, {len(todo)} to run"
          + (f", {len(exhausted)} out of attempts (max_attempts={spec.max_attempts})" if exhausted else ""),
          file=out, flush=True)
    verdicts = preflight.fits(spec, trials)
    if store is not None:
        preflight.first_estimate(store, spec, trials, verdicts, out)
    rec = Recorder(spec, store, root, out=out, fits=verdicts)
    if spec.fit.enforce:
        todo = _skip_wont_fit(todo, verdicts, store, rec, out)
    progress = Progress(len(todo), out)
    rec.progress = progress
    if todo:
        connect(verbose)
        if lease is not None:
            import ray

            lease.set_ray_job(ray.get_runtime_context().get_job_id())
        removed = placement.remove_orphans(  # without MLflow no lease is known: every other driver counts as live
            spec.name, live=lambda d: d == driver or store is None or store.driver_live(d))
        if removed:
            print(f"removed {removed} orphaned placement group(s) of this sweep (their driver's lease expired)",
                  file=out)
        types = capacity.node_types(path, spec.cluster)
        if types.types:
            print(f"cluster: {types.describe()}", file=out)
        sched = Scheduler(spec.name, list(grid.group(todo).values()), spec.timeouts,
                          on_start=rec.on_start, on_end=rec.on_end, max_parallel=max_parallel,
                          label_key=spec.placement.label_key, starvation_s=spec.placement.starvation_s,
                          env=spec.env, node_types=types, driver=driver)
        previous = signal.getsignal(signal.SIGTERM)
        signal.signal(signal.SIGTERM, lambda *_: setattr(sched, "stopping", True))
        if lease is not None:
            lease.on_lost = lambda held: _lost(sched, held, out)
        try:
            if lease is not None and lease.lost is not None:
                _lost(sched, lease.lost, out)
            sched.run()
        except KeyboardInterrupt:
            print(f"stopped: running trials marked KILLED; resume with `python -m runner run {path}`",
                  file=out, flush=True)
            if lease is None or lease.lost is None:  # else the parent's status is the new holder's
                _close_parent(store, "KILLED")
            return 130
        finally:
            signal.signal(signal.SIGTERM, previous)
            progress.close()
        stopped = sched.stopping
    else:
        stopped = False
    if store is not None:
        try:
            rc = summarize(path, spec, trials, store, out)
            _close_parent(store, "KILLED" if stopped else "FINISHED" if rc == 0 else "FAILED")
            return rc
        except Exception as e:
            what = f"{type(e).__name__}: {redact.text(str(e))[:300]}"
            print(f"! MLflow unreachable for the summary ({what})" if store.unreachable(e)
                  else f"! the summary could not be read from MLflow ({what})", file=out)
    print(f"results not all in MLflow: they are in {root}/{spec.name}/; "
          f"upload them with `python -m runner sync {path}`", file=out)
    return 0 if all(s is Status.COMPLETED for s, _, _ in rec.outcomes.values()) else 1


def _skip_wont_fit(todo: list[Trial], verdicts: dict[str, fit_mod.Fit], store: Store | None, rec: Recorder,
                   out) -> list[Trial]:
    """The trials to launch: those of WONT_FIT configurations end WONT_FIT without a launch (once:
    a trial whose latest run already says so is not recorded again)."""
    from runner.cluster import Outcome

    wont = [t for t in todo if verdicts[t.serving.serving_config_id].verdict == "WONT_FIT"]
    if not wont:
        return todo
    latest = store.latest_by_trial() if store is not None else {}
    for line in preflight.fit_lines({t.serving.serving_config_id: verdicts[t.serving.serving_config_id]
                                     for t in wont}, True):
        print(line, file=out)
    for t in wont:
        r = latest.get(t.trial_id)
        if r is None or r.data.tags.get(STATUS) != Status.WONT_FIT.value:
            rec.on_end(Outcome(t, Status.WONT_FIT, reason="wont_fit",
                               error=verdicts[t.serving.serving_config_id].reason))
    return [t for t in todo if t not in wont]


def _lost(sched: Any, held: LeaseRecord, out) -> None:
    """The lease was taken over (this driver stalled past its expiry): stop, as on SIGTERM."""
    print(f"! lost the lease on the sweep to {held.describe()}; stopping", file=out, flush=True)
    sched.stopping = True


def _open_parent(store: Store, spec: spec_mod.SweepSpec, trials: list[Trial], path: str, out) -> None:
    """Mark the parent run RUNNING and (re)write the sweep's saved comparison view, linked from
    the parent's description and its ``runner.compare_view`` tag."""
    from runner.results import views

    try:
        url = store.save_view(views.key(spec.name), views.state(spec.name, trials))
        note = (f"Sweep **{spec.name}** ({len(trials)} trials) from `{path}`.\n\n"
                f"[Compare its trials]({url}) (saved view: trial runs, varying parameters, headline "
                f"metrics, sorted by output tok/s).\n\nResume: `python -m runner run {path}`; "
                f"report: `python -m runner report {path}`.")
        store.log_parent(tags={"runner.compare_view": url, "mlflow.note.content": note})
        store.set_parent_status("RUNNING")
        print(f"compare the trials in MLflow: {url}", file=out, flush=True)
    except Exception as e:
        print(f"! could not save the MLflow comparison view ({type(e).__name__}: {str(e)[:200]})", file=out)


def _close_parent(store: Store | None, status: str) -> None:
    if store is None:
        return
    try:
        store.set_parent_status(status)
    except Exception:  # the trials are what matter; a stale parent status is cosmetic
        pass


def sync(path: str, out=sys.stdout) -> int:
    spec = spec_mod.load(path)
    root = spool.default_root()
    if not spool.pending_uploads(root, spec.name):
        print(f"sweep {spec.name}: nothing in the spool waits for MLflow", file=out)
        return 0
    store = Store(spec.experiment_name, spec.name)
    store.parent()
    uploaded, pending = sync_mod.sync(store, root, spec.name)
    print(f"sweep {spec.name}: uploaded {uploaded} spooled result(s); {pending} still pending", file=out)
    for line in sync_mod.pending_lines(root, spec.name):
        print("  " + line, file=out)
    return 0 if not pending else 1


def summarize(path: str, spec: spec_mod.SweepSpec, trials: list[Trial], store: Store, out=sys.stdout) -> int:
    latest = store.latest_by_trial()
    rows, counts = [], Counter()
    for t in trials:
        r = latest.get(t.trial_id)
        st = r.data.tags.get(STATUS, "PENDING") if r else "PENDING"
        counts[st] += 1
        m = r.data.metrics if r else {}
        s = t.serving
        eng = ("SIMULATION " if s.simulation else "") + s.engine + (
            "" if s.lane == "default" else f" [{s.lane}]") + ("" if s.api == "engine" else f" via {s.api}")
        rows.append([t.trial_id, s.model, s.hardware, eng, f"tp{s.tp}/pp{s.pp}/dp{s.dp}{'/ep' if s.ep else ''}",
                     " ".join(f"{k}={redact.value(k, v)}" for k, v in sorted(s.engine_args.items())) or "-",
                     t.load.label(), f"{t.load.input_len}/{t.load.output_len}",
                     st + (" (client_bound)" if r and r.data.tags.get("runner.client_bound") == "true" else ""),
                     _f(m.get("output_throughput")), _f(m.get("total_token_throughput")),
                     _f(m.get("median_ttft_ms"), 1), _f(m.get("median_tpot_ms"), 2), _f(m.get("p99_itl_ms"), 2)])
    head = ["trial", "model", "hw", "engine", "shape", "engine args", "load", "in/out", "status", "out tok/s",
            "total tok/s", "TTFT p50 ms", "TPOT p50 ms", "ITL p99 ms"]
    print("\n" + table(head, rows), file=out)
    print("\n" + ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())), file=out)
    print(f"MLflow: experiment {spec.experiment_name!r} at {store.shown_uri}", file=out)
    if store.uri.startswith("sqlite:///"):
        print(f"open the UI: make mlflow-ui   (or: python -m mlflow ui --backend-store-uri {store.shown_uri})",
              file=out)
    bad = {k: v for k, v in counts.items() if k != "COMPLETED"}
    if bad:
        print(f"not completed: {bad}; resume with `python -m runner run {path}`"
              + ("; WONT_FIT trials stay so until their shape or engine_args change, or fit: {enforce: false}"
                 if "WONT_FIT" in bad else ""), file=out)
        return 1
    return 0


def status(path: str, out=sys.stdout) -> int:
    spec = spec_mod.load(path)
    trials = grid.expand(spec)
    store = Store.existing(spec.experiment_name, spec.name)
    latest = store.latest_by_trial() if store is not None else {}
    counts: Counter = Counter()
    failed = []
    for t in trials:
        r = latest.get(t.trial_id)
        st = r.data.tags.get(STATUS, "PENDING") if r else "PENDING"
        counts[st] += 1
        if r and st not in ("COMPLETED", "RUNNING"):
            failed.append((t, st, r.data.tags.get("runner.reason", ""), r.data.tags.get("runner.detail", "")))
    print(f"sweep {spec.name}: {len(trials)} trials", file=out)
    for st in [s.value for s in Status]:
        if counts.get(st):
            print(f"  {st:<14}{counts[st]}", file=out)
    for t, st, reason, detail in failed:
        print(f"  {t.trial_id} {st} {reason}: {detail[:300]} [{t.serving.label()} {t.load.label()}]", file=out)
    root = spool.default_root()
    pending = spool.pending_uploads(root, spec.name)
    if pending:
        print(f"  {len(pending)} result(s) in the spool not yet in MLflow: `python -m runner sync {path}`", file=out)
        for line in sync_mod.pending_lines(root, spec.name):
            print("    " + line, file=out)
    return 0


def table(head: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(x)) for x in col) for col in zip(head, *rows)]
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    return "\n".join([fmt.format(*head), fmt.format(*("-" * w for w in widths))] + [fmt.format(*r) for r in rows])


def _f(v: float | None, digits: int = 0) -> str:
    return "-" if v is None else f"{v:,.{digits}f}"


