"""All MLflow I/O, behind one class.

Layout: one experiment per sweep (``spec.experiment_name``); one parent run per sweep
(tag ``runner.role=parent``); one child run per trial *attempt* (``runner.role=trial``,
``mlflow.parentRunId``). Invariants:
- a trial counts as done only when a run of it carries ``runner.status=COMPLETED``: MLflow's
  own run status cannot be trusted for resume (a killed driver leaves RUNNING forever);
- every trial run a driver starts carries its id (``runner.driver``); the sweep's parent run
  carries the lease (``runner.lease``, ``runner.results.lease``) of the one driver running it;
- ``reclaim_stale`` turns a ``runner.status=RUNNING`` trial run into KILLED only when the lease
  on its parent run is not live or not its driver's: never a live driver's trials;
- nothing here reads ``os.environ`` into a param, tag or artifact, and every param and tag
  passes ``runner.core.redact`` (secret names masked, URL passwords masked, secret values scrubbed).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from runner.core import StoreError, redact
from runner.results.lease import LeaseRecord

ROLE, STATUS, TRIAL, SWEEP = "runner.role", "runner.status", "runner.trial_id", "runner.sweep"
DRIVER, LEASE, LEASE_DRIVER = "runner.driver", "runner.lease", "runner.lease.driver"
_MLFLOW_STATUS = {"COMPLETED": "FINISHED", "KILLED": "KILLED"}


def default_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


class Store:
    @classmethod
    def existing(cls, experiment: str, sweep: str, uri: str | None = None) -> Store | None:
        """The store of an experiment that exists already, else None with nothing written (no
        experiment created, and no SQLite file: a report or status of a sweep that never ran)."""
        uri = uri or default_uri()
        if uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).exists():
            return None
        found = cls(experiment, sweep, uri, create=False)
        return found if found.experiment_id is not None else None

    def __init__(self, experiment: str, sweep: str, uri: str | None = None, *, create: bool = True):
        os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
        # MLflow's own "View run ... at <tracking URI>" lines would print the URI verbatim
        os.environ.setdefault("MLFLOW_SUPPRESS_PRINTING_URL_TO_STDOUT", "true")
        # Bounded retries: an unreachable server costs seconds per call, not minutes; the
        # spool keeps the data and `sync` retries later.
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "2")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR", "1")
        os.environ.setdefault("MLFLOW_HTTP_REQUEST_TIMEOUT", "30")
        from mlflow.tracking import MlflowClient

        self.uri, self.sweep, self.experiment = uri or default_uri(), sweep, experiment
        self.driver: str | None = None  # set by ``Lease.acquire``: the id every trial run started here carries
        try:
            self.client = MlflowClient(tracking_uri=self.uri)
            exp = self.client.get_experiment_by_name(experiment)
            if exp is None and not create:
                self.experiment_id: str | None = None
            else:
                self.experiment_id = exp.experiment_id if exp else self.client.create_experiment(experiment)
        except Exception as e:
            raise StoreError(redact.text(f"MLflow at {self.uri} could not be used ({type(e).__name__}: {e}); "
                                         "check MLFLOW_TRACKING_URI, or unset it to use ./mlflow.db")) from None
        self._parent: str | None = None

    @property
    def shown_uri(self) -> str:
        """The tracking URI for messages: a password or token in it masked."""
        return redact.url(self.uri)

    # -- reads ----------------------------------------------------------------------------
    def search(self, filter_string: str) -> list[Any]:
        runs, token = [], None
        while True:
            page = self.client.search_runs([self.experiment_id], filter_string, max_results=1000,
                                           page_token=token)
            runs.extend(page)
            token = page.token
            if not token:
                return runs

    def trial_runs(self) -> list[Any]:
        return self.search(f"tags.`{ROLE}` = 'trial'")

    def done_ids(self) -> set[str]:
        return {r.data.tags[TRIAL] for r in self.search(f"tags.`{ROLE}` = 'trial' and tags.`{STATUS}` = 'COMPLETED'")}

    def latest_by_trial(self) -> dict[str, Any]:
        """trial_id → its most important run: a COMPLETED one if any, else the newest."""
        out: dict[str, Any] = {}
        for r in sorted(self.trial_runs(), key=lambda r: r.info.start_time or 0):
            tid = r.data.tags.get(TRIAL)
            if tid and (tid not in out or out[tid].data.tags.get(STATUS) != "COMPLETED"):
                out[tid] = r
        return out

    def attempts(self, trial_id: str) -> int:
        return len(self.search(f"tags.`{ROLE}` = 'trial' and tags.`{TRIAL}` = '{trial_id}'"))

    # -- writes ---------------------------------------------------------------------------
    def parent(self, params: dict[str, Any] | None = None, *, again: bool = False) -> str:
        """The sweep's parent run id; created once, reused by every later `run`; ``again``: looked
        up anew, not from this store's memory."""
        if self._parent and not again:
            return self._parent
        found = self.search(f"tags.`{ROLE}` = 'parent' and tags.`{SWEEP}` = '{self.sweep}'")
        if found:  # the oldest: two drivers that created one each at once then agree on it
            self._parent = min(found, key=lambda r: (r.info.start_time or 0, r.info.run_id)).info.run_id
        else:
            run = self.client.create_run(self.experiment_id, run_name=f"sweep {self.sweep}",
                                         tags={ROLE: "parent", SWEEP: self.sweep})
            self._parent = run.info.run_id
            if params:
                self._log(self._parent, params=params)
        return self._parent

    def start_trial(self, trial_id: str, name: str, tags: dict[str, str], params: dict[str, Any]) -> str:
        run = self.client.create_run(self.experiment_id, run_name=name, tags={
            ROLE: "trial", SWEEP: self.sweep, TRIAL: trial_id, STATUS: "RUNNING",
            "mlflow.parentRunId": self.parent(), **({DRIVER: self.driver} if self.driver else {}), **tags})
        self._log(run.info.run_id, params=params)
        return run.info.run_id

    def end_trial(self, run_id: str, status: str, *, tags: dict[str, str] | None = None,
                  metrics: dict[str, float] | None = None, steps: list[dict[str, float]] | None = None,
                  artifacts: Path | None = None) -> None:
        """Idempotent: a metric key the run already holds is not logged again, so an upload
        repeated after a crash (between this call and the spool's state.json) does not double
        any metric's history."""
        have = set(self.client.get_run(run_id).data.metrics) if (metrics or steps) else set()
        metrics = {k: v for k, v in (metrics or {}).items() if k not in have}
        steps = [{k: v for k, v in s.items() if f"engine.{k}" not in have} for s in steps or []]
        self._log(run_id, metrics=metrics, steps=steps, tags={**(tags or {}), STATUS: status})
        if artifacts is not None:
            self.client.log_artifacts(run_id, str(artifacts))
        self.client.set_terminated(run_id, _MLFLOW_STATUS.get(status, "FAILED"))

    def reclaim_stale(self) -> list[str]:
        """Mark trial runs left RUNNING by a driver whose lease is not live as KILLED; return their
        trial ids. A run's driver is its ``runner.driver`` tag (none: a driver before leases), its
        lease the one on its own parent run, so sweeps sharing an experiment never reclaim each other's."""
        leases: dict[str, LeaseRecord | None] = {}
        stale = []
        for r in self.search(f"tags.`{ROLE}` = 'trial' and tags.`{STATUS}` = 'RUNNING'"):
            parent = r.data.tags.get("mlflow.parentRunId", "")
            if parent not in leases:
                leases[parent] = self.read_lease(parent) if parent else None
            held = leases[parent]
            if not (held is not None and held.driver == r.data.tags.get(DRIVER) and held.live()):
                stale.append(r)
        for r in stale:
            self.client.set_tag(r.info.run_id, STATUS, "KILLED")
            self.client.set_tag(r.info.run_id, "runner.reason", "driver_killed")
            self.client.set_terminated(r.info.run_id, "KILLED")
        return [r.data.tags.get(TRIAL, "") for r in stale]

    # -- the lease (``runner.results.lease``) ----------------------------------------------
    def read_lease(self, run_id: str | None = None) -> LeaseRecord | None:
        """The lease on the sweep's parent run (or on ``run_id``); ``None`` if there is none."""
        return LeaseRecord.loads(self.client.get_run(run_id or self.parent()).data.tags.get(LEASE))

    def write_lease(self, record: LeaseRecord) -> None:
        """One batch: the record and its holder's id (searchable, for ``driver_live``)."""
        from mlflow.entities import RunTag

        self.client.log_batch(self.parent(), tags=[RunTag(LEASE, record.dumps()), RunTag(LEASE_DRIVER, record.driver)])

    def driver_live(self, driver: str) -> bool:
        """Whether ``driver`` holds a live lease on a parent run of this sweep's name, in any
        experiment of this tracking server (placement-group names carry the sweep, not the experiment)."""
        from mlflow.entities import ViewType

        ids, token = [], None
        while True:
            page = self.client.search_experiments(view_type=ViewType.ACTIVE_ONLY, page_token=token)
            ids += [e.experiment_id for e in page]
            if not (token := page.token):
                break
        runs = self.client.search_runs(ids, f"tags.`{ROLE}` = 'parent' and tags.`{SWEEP}` = '{self.sweep}' and "
                                            f"tags.`{LEASE_DRIVER}` = '{driver}'", max_results=10) if ids else []
        return any((rec := LeaseRecord.loads(r.data.tags.get(LEASE))) is not None and rec.driver == driver
                   and rec.live() for r in runs)

    def unreachable(self, e: BaseException) -> bool:
        """Whether ``e``, raised by an MLflow call, means the tracking server or database could not be
        reached (a connection refused, reset or timed out), not an error of the call itself."""
        import requests

        seen: BaseException | None = e
        while seen is not None:
            if isinstance(seen, (ConnectionError, TimeoutError, requests.exceptions.ConnectionError,
                                 requests.exceptions.Timeout)):
                return True
            seen = seen.__cause__ or seen.__context__
        return "unable to open database file" in str(e)

    def save_view(self, share_key: str, state: dict[str, Any]) -> str:
        """Store a shared view of the experiment page (``runner.results.views``); return its UI link."""
        import json

        from runner.results import views

        self.client.set_experiment_tag(self.experiment_id, views.PREFIX + share_key, json.dumps(state, sort_keys=True))
        return views.link(self.ui_base(), self.experiment_id, share_key)

    def ui_base(self) -> str:
        """The MLflow UI's root URL: the tracking server without credentials, or, for a local
        database, where ``make mlflow-ui`` serves it (http://127.0.0.1:5000)."""
        from urllib.parse import urlsplit, urlunsplit

        u = urlsplit(self.uri)
        if u.scheme in ("http", "https"):
            return urlunsplit((u.scheme, u.netloc.rsplit("@", 1)[-1], u.path.rstrip("/"), "", ""))
        return "http://127.0.0.1:5000"

    def set_parent_status(self, status: str) -> None:
        """The parent run's MLflow status: RUNNING while a driver works on the sweep, then
        FINISHED (every trial COMPLETED), FAILED (some not) or KILLED (the driver was stopped)."""
        if status == "RUNNING":
            self.client.update_run(self.parent(), status="RUNNING")
        else:
            self.client.set_terminated(self.parent(), status)

    def parent_tags(self) -> dict[str, str]:
        return dict(self.client.get_run(self.parent()).data.tags)

    def log_parent(self, *, metrics: dict[str, float] | None = None, tags: dict[str, str] | None = None,
                   artifacts: Path | None = None) -> None:
        self._log(self.parent(), metrics=metrics, tags=tags)
        if artifacts is not None:
            self.client.log_artifacts(self.parent(), str(artifacts))

    def _log(self, run_id: str, *, params: dict[str, Any] | None = None, metrics: dict[str, float] | None = None,
             steps: list[dict[str, float]] | None = None, tags: dict[str, str] | None = None) -> None:
        import time

        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        p = [Param(k, str(redact.value(k, v))[:6000]) for k, v in (params or {}).items()]
        m = [Metric(k, float(v), now, 0) for k, v in (metrics or {}).items() if v is not None]
        for step, sample in enumerate(steps or []):
            m += [Metric(f"engine.{k}", float(v), now, step) for k, v in sample.items() if k != "t"]
        t = [RunTag(k, str(redact.value(k, v))[:5000]) for k, v in (tags or {}).items()]
        for i in range(0, max(len(p), len(m), len(t), 1), 100):  # MLflow caps a batch at 100 params
            self.client.log_batch(run_id, metrics=m[i:i + 100], params=p[i:i + 100], tags=t[i:i + 100])
