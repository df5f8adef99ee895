"""Turns scheduler outcomes into stored results: validity, metrics, spool, then MLflow.

Invariants: the spool is written before MLflow is touched, and its ``state.json`` says
whether the attempt reached MLflow, so an unreachable MLflow loses nothing (``sync``
uploads it later into the same run when one was created). Aggregate metrics are logged
only for COMPLETED load points; an INVALID one keeps its raw records but no throughput.

A trial of the simulated engine (``ServingConfig.simulation``, from the engine name alone) is
marked SIMULATION wherever it shows: its run name and progress lines (``ServingConfig.label``),
the tag ``runner.simulation=true`` and a description (``mlflow.note.content``) on its child run,
the same tag on the sweep's parent run, and ``simulation`` in ``result.json``'s provenance.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

from runner.cluster import Outcome
from runner.core import __version__, redact
from runner.measure import DEFINITION, RequestRecord, aggregate, lag_stats, validity
from runner.plan import SCHEMA_VERSION, SIMULATION, Status, Trial
from runner.plan import fit as fit_mod
from runner.results import spool
from runner.results.progress import Progress
from runner.results.store import Store
from runner.results.sync import try_upload
from runner.sweep import SweepSpec, catalog

#: Tag on a simulated trial's child run and on its sweep's parent run.
SIM_TAG = "runner.simulation"
SIM_NOTE = (f"**{SIMULATION}**: engine `simulated` holds its resources and loads no model; its tokens are "
            "timed sleeps, so none of these numbers is an inference measurement.")


def price_for(spec: SweepSpec, hardware: str) -> float | None:
    """$/GPU-hour: the sweep's ``prices`` over the catalogue's. 0 is a price (free hardware, so
    cost 0); None, no price known (no cost metric)."""
    p = spec.prices.get(hardware, catalog.hardware()[hardware].get("price_per_gpu_hour"))
    return None if p is None else float(p)


class Recorder:
    def __init__(self, spec: SweepSpec, store: Store | None, root: Path, out=sys.stdout,
                 progress: Progress | None = None, fits: dict[str, fit_mod.Fit] | None = None):
        self.spec, self.store, self.root, self.out = spec, store, root, out
        self.progress = progress
        self.fits = fits or {}  # the fit planner's prediction per serving configuration (fit.* params)
        self.live: dict[str, tuple[str | None, int]] = {}
        self.outcomes: dict[str, tuple[Status, str, dict[str, float]]] = {}
        self._noted: set[str] = set()  # serving configurations whose engine version note was shown
        self._sim_parent = False       # the parent run carries runner.simulation

    # -- scheduler callbacks ----------------------------------------------------------------
    def on_start(self, trial: Trial, engine: dict[str, Any]) -> None:
        attempt = self._attempts(trial.trial_id) + 1
        run_id = self._safe(lambda: self.store.start_trial(
            trial.trial_id, self._name(trial), self._tags(trial, engine, attempt), self._params(trial, engine)))
        self.live[trial.trial_id] = (run_id, attempt)
        if trial.serving.simulation and not self._sim_parent and self.store is not None:
            self._sim_parent = True
            self._safe(lambda: self.store.log_parent(tags={SIM_TAG: "true"}))
        if self.progress:
            self.progress.start(trial.trial_id, f"{trial.serving.label()} | {trial.load.label()}")
        self._say(f"▶ {trial.trial_id} {trial.serving.label()} | {trial.load.label()} "
                  f"in={trial.load.input_len} out={trial.load.output_len} (attempt {attempt})")
        note = engine.get("version_note")
        if note and trial.serving.serving_config_id not in self._noted:  # once per serving configuration
            self._noted.add(trial.serving.serving_config_id)
            self._say(f"  note: {note}")

    def on_end(self, o: Outcome) -> None:
        t = o.trial
        run_id, attempt = self.live.pop(t.trial_id, (None, self._attempts(t.trial_id) + 1))
        status, reason, detail = o.status, o.reason, o.error
        records = [RequestRecord(**d) for d in (o.result or {}).get("records", [])]
        metrics: dict[str, float] = {}
        if status is Status.COMPLETED:
            if any(r.error == "request_timeout" for r in records):
                status, reason = Status.FAILED, "request_timeout"
                detail = f"a stream produced no chunk for {self.spec.timeouts.request_s:g} s"
            elif why := validity.check(records, t.load, self.spec.workload.max_failure_rate):
                status, reason, detail = Status.INVALID, "invalid_result", why
        if status is Status.COMPLETED:
            metrics = self._metrics(t, records, o.result or {})
        d = spool.attempt_dir(self.root, self.spec.name, t.trial_id, attempt)
        self._write_spool(d / "artifacts", t, o, status, reason, detail, records, metrics, attempt)
        engine = o.engine or {}
        spool.write_json(d / "upload.json", {
            "run_id": run_id, "trial_id": t.trial_id, "attempt": attempt, "status": status.value,
            "name": self._name(t), "params": self._params(t, engine), "tags": self._tags(t, engine, attempt),
            "end_tags": self._end_tags(reason, detail, metrics, o.result or {}),
            "metrics": metrics})
        spool.write_json(d / "state.json", {"status": status.value, "reason": reason, "run_id": run_id,
                                            "uploaded": False, "trial_id": t.trial_id, "attempt": attempt})
        if self.store is not None and (why := try_upload(self.store, d)) is not None:
            self._say(f"! MLflow write failed ({why[:200]}); kept in the spool, "
                      f"upload later with `python -m runner sync`")
        self.outcomes[t.trial_id] = (status, reason, metrics)
        if self.progress:
            self.progress.end(t.trial_id, status is Status.COMPLETED)
        tail = (f"{metrics.get('output_throughput', 0):.0f} out tok/s, median TTFT "
                f"{metrics.get('median_ttft_ms', float('nan')):.1f} ms"
                + (" [client_bound: the load generator lagged]" if metrics.get("client_bound") else "")
                if metrics else f"{reason}: {detail[:200]}")
        tail = f"{SIMULATION} {tail}" if t.serving.simulation else tail
        self._say(f"{'✔' if status is Status.COMPLETED else '✘'} {t.trial_id} {status.value} | {tail}")

    # -- pieces -------------------------------------------------------------------------------
    def _metrics(self, t: Trial, records: list[RequestRecord], result: dict[str, Any]) -> dict[str, float]:
        w = self.spec.workload
        slo = {k.removesuffix("_ms"): v for k, v in w.slo.model_dump().items() if v is not None}
        m = aggregate(records, result.get("duration_s", 0.0), percentiles=w.percentiles, slo_ms=slo or None,
                      gpus=t.serving.gpus, price_per_gpu_hour=price_for(self.spec, t.serving.hardware))
        m.update(lag_stats(records, w.percentiles))
        replicas = sorted({r.replica for r in records})
        if len(replicas) > 1:  # DP: the aggregate above, and each replica's share
            dur = result.get("duration_s", 0.0)
            for i in replicas:
                part = aggregate([r for r in records if r.replica == i], dur, percentiles=[50])
                for k in ("completed", "output_throughput", "median_ttft_ms", "median_tpot_ms"):
                    if k in part:
                        m[f"replica{i}.{k}"] = part[k]
        lags = result.get("loop_lag_ms") or []
        if lags:
            m["max_loop_lag_ms"] = max(lags)
        m["client_cpu_frac"] = float(result.get("client_cpu_frac", 0.0))
        if "client_niceness" in result:  # the client process's nice value: higher loses the CPU to the server
            m["client_niceness"] = float(result["client_niceness"])
        if "connection_retries" in result:  # HTTP clients: requests re-sent after a stale keep-alive connection
            m["connection_retries"] = float(result["connection_retries"])
        if t.load.request_rate is not None:
            m["requested_rate"] = t.load.request_rate
            m["achieved_rate"] = float(result.get("achieved_rate", 0.0))
        lag = m.get("p90_schedule_lag_ms", m.get("mean_schedule_lag_ms", 0.0))
        m["client_bound"] = float(lag > w.client_bound_lag_ms)
        return m

    def _write_spool(self, d: Path, t: Trial, o: Outcome, status: Status, reason: str, detail: str,
                     records: list[RequestRecord], metrics: dict[str, float], attempt: int) -> None:
        res = o.result or {}
        ok = [r for r in records if r.ok]
        result = {**metrics,
                  "date": time.strftime("%Y%m%d-%H%M%S", time.gmtime(o.ended)), "backend": t.serving.engine,
                  "model_id": t.serving.model, "num_prompts": t.load.num_prompts,
                  "max_concurrency": t.load.concurrency, "burstiness": t.load.burstiness,
                  "request_rate": "inf" if t.load.request_rate is None else t.load.request_rate,  # as --save-result
                  "input_lens": [r.prompt_tokens for r in records], "output_lens": [r.output_tokens for r in records],
                  "ttfts": [r.ttft if r.chunk_times else 0.0 for r in records], "itls": [r.itl for r in records],
                  "errors": [r.error for r in records],
                  "runner": {"trial_id": t.trial_id, "serving_config_id": t.serving.serving_config_id,
                             "sweep": self.spec.name, "status": status.value, "reason": reason, "detail": detail,
                             "attempt": attempt, "simulation": t.serving.simulation,
                             "schema_version": SCHEMA_VERSION, "metrics_definition": DEFINITION,
                             "params": t.params(), "versions": (o.engine or {}).get("versions", {}),
                             "runner_version": __version__, "completed_requests": len(ok),
                             "warmup_requests": res.get("warmup_count", 0), "engine_stats": res.get("stats", {}),
                             "dataset_hash": res.get("dataset_hash", ""),
                             "requested_output_lens": [r.max_tokens for r in records]}}
        spool.write_json(d / "result.json", result)
        if records:
            spool.write_requests(d / "requests.parquet", records)
        spool.write_json(d / "serving_config.json", t.serving.model_dump())
        eng = o.engine or {}
        keys = ("versions", "system", "node_id", "hostname", "pid", "cuda_visible_devices", "gpu_ids", "start_s",
                "replicas", "bundle_nodes", "timing", "launchers",  # launchers: an engine spanning nodes
                "api", "clients", "server_urls",  # api openai: the client actors and the servers they drove
                "env_names", "child_pids", "version_note", "compile_cache")  # env: names only, never values
        spool.write_json(d / "system.json", {"driver": {"python": sys.version.split()[0], "runner": __version__},
                                             "engine": {k: eng.get(k) for k in keys}})
        if res.get("samples"):
            spool.write_json(d / "engine_samples.json", res["samples"])
        if o.log_tail or o.error:
            spool.write_text(d / "engine_log_tail.txt", f"{o.error}\n\n{o.log_tail}".strip() + "\n")

    def _end_tags(self, reason: str, detail: str, metrics: dict[str, float], result: dict[str, Any]) -> dict:
        tags = {"runner.reason": reason, "runner.detail": detail[:4000]} if reason else {}
        if "client_bound" in metrics:
            tags["runner.client_bound"] = "true" if metrics["client_bound"] else "false"
        if result.get("dataset_hash"):
            tags["runner.dataset_hash"] = result["dataset_hash"]
        return tags

    def _params(self, t: Trial, engine: dict[str, Any]) -> dict[str, Any]:
        p = dict(t.params())
        p.update({"metrics.definition": DEFINITION, "runner.schema_version": SCHEMA_VERSION,
                  "runner.version": __version__, "gpus": t.serving.gpus,
                  "price_per_gpu_hour": price_for(self.spec, t.serving.hardware)})
        for k, v in (engine.get("versions") or {}).items():
            p[f"version.{k}"] = v
        if "start_s" in engine:
            p["engine_start_s"] = round(engine["start_s"], 3)
        if engine.get("bundle_nodes"):
            p["placement.nodes"] = len({n for group in engine["bundle_nodes"] for n in group})
            p["placement.bundles"] = sum(len(g) for g in engine["bundle_nodes"])
        p["placement.gpus_per_node"] = catalog.hardware()[t.serving.hardware].get("gpus_per_node", 0)
        if t.serving.serving_config_id in self.fits:
            p.update(fit_mod.as_params(self.fits[t.serving.serving_config_id], t.load, t.serving.dp))
        if engine.get("kv_capacity_tokens"):  # the engine's own, per GPU, beside fit.kv_capacity_tokens
            p["engine.kv_capacity_tokens"] = engine["kv_capacity_tokens"]
        return p

    def _tags(self, t: Trial, engine: dict[str, Any], attempt: int) -> dict[str, str]:
        return {"runner.serving_config_id": t.serving.serving_config_id, "runner.attempt": str(attempt),
                "runner.engine_version": str((engine.get("versions") or {}).get("engine_version", "")),
                "runner.node": ",".join(sorted({r.get("node_id", "")[:12] for r in engine.get("replicas", [])})),
                "runner.engine_pid": str(engine.get("pid", "")),
                **({SIM_TAG: "true", "mlflow.note.content": SIM_NOTE} if t.serving.simulation else {})}

    def _name(self, t: Trial) -> str:
        return f"{t.serving.label()} {t.load.label()} {t.load.input_len}/{t.load.output_len}"[:250]

    def _attempts(self, trial_id: str) -> int:
        """Attempts so far: the larger of the spool's count and MLflow's (either may be missing)."""
        local = spool.attempts(self.root, self.spec.name, trial_id)
        remote = self._safe(lambda: self.store.attempts(trial_id)) if self.store is not None else None
        return max(local, remote if isinstance(remote, int) else 0)

    def _safe(self, fn):
        """Run an MLflow call; on failure warn and return None (the spool keeps the data)."""
        if self.store is None:
            return None
        try:
            return fn()
        except Exception as e:
            self._say(f"! MLflow write failed ({type(e).__name__}: {str(e)[:200]}); kept in the spool, "
                      f"upload later with `python -m runner sync`")
            return None

    def _say(self, line: str) -> None:
        if self.progress:
            self.progress.say(redact.text(line))
        else:
            print(redact.text(line), file=self.out, flush=True)
