"""Uploading spooled attempts to MLflow: the live path and ``python -m runner sync`` alike.

An attempt folder holds ``upload.json`` (run name, params, tags, status, metrics, and the
MLflow run id if one was created), ``state.json`` (``uploaded``) and ``artifacts/``.
Invariant: no attempt ever gets two MLflow runs. ``upload`` reuses the recorded run id, or
else finds the run by (trial id, attempt) before creating one, so a run created by a call
whose reply was lost is found again rather than duplicated.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.results import spool
from runner.results.store import TRIAL, Store


def upload(store: Store, d: Path) -> bool:
    """Send one attempt folder to MLflow; True when it arrived (and ``state.json`` says so)."""
    info: dict[str, Any] = json.loads((d / "upload.json").read_text())
    run_id = info.get("run_id") or _find(store, info["trial_id"], info["attempt"])
    if run_id is None:
        run_id = store.start_trial(info["trial_id"], info["name"], info["tags"], info["params"])
    info["run_id"] = run_id
    spool.write_json(d / "upload.json", info)
    samples = d / "artifacts" / "engine_samples.json"
    steps = json.loads(samples.read_text()) if samples.exists() else None
    store.end_trial(run_id, info["status"], tags=info.get("end_tags") or {}, metrics=info.get("metrics") or {},
                    steps=steps, artifacts=d / "artifacts")
    spool.write_json(d / "state.json", {**json.loads((d / "state.json").read_text()), "uploaded": True,
                                        "run_id": run_id})
    return True


def _find(store: Store, trial_id: str, attempt: int) -> str | None:
    runs = store.search(f"tags.`{TRIAL}` = '{trial_id}' and tags.`runner.attempt` = '{attempt}'")
    return runs[0].info.run_id if runs else None


def sync(store: Store, root: Path, sweep: str) -> tuple[int, int]:
    """Upload every pending attempt of ``sweep``; return (uploaded, still pending)."""
    ok = failed = 0
    for d in spool.pending_uploads(root, sweep):
        try:
            upload(store, d)
            ok += 1
        except Exception:
            failed += 1
    return ok, failed
