"""Uploading spooled attempts to MLflow: the live path and ``python -m runner sync`` alike.

An attempt folder holds ``upload.json`` (run name, params, tags, status, metrics, and the
MLflow run id if one was created), ``state.json`` (``uploaded``) and ``artifacts/``.
Invariant: no attempt ever gets two MLflow runs. ``upload`` reuses the recorded run id, or
else finds the run by (trial id, attempt) before creating one, so a run created by a call
whose reply was lost is found again rather than duplicated. A failed upload leaves its reason
in the attempt's ``state.json`` (``spool.note_upload_error``), shown per pending trial by
``pending_lines``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from runner.core import redact
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


def try_upload(store: Store, d: Path) -> str | None:
    """``upload``, never raising: None when it arrived, else the reason (``Type: message``,
    redacted), which is also kept in the attempt's ``state.json``."""
    try:
        upload(store, d)
        return None
    except Exception as e:
        why = redact.text(f"{type(e).__name__}: {e}".strip())[:1000]
        try:
            spool.note_upload_error(d, why)
        except Exception:  # an unreadable state.json must not hide the upload's own error
            pass
        return why


def sync(store: Store, root: Path, sweep: str) -> tuple[int, int]:
    """Upload every pending attempt of ``sweep``; return (uploaded, still pending)."""
    ok = failed = 0
    for d in spool.pending_uploads(root, sweep):
        if try_upload(store, d) is None:
            ok += 1
        else:
            failed += 1
    return ok, failed


def pending_lines(root: Path, sweep: str) -> list[str]:
    """One line per attempt still in the spool only: trial, attempt, status and why it is not
    in MLflow (the last upload error, or that no upload was tried yet)."""
    out = []
    for p in spool.pending(root, sweep):
        why = (f"upload failed {p.upload_failures}x, last at {p.last_error_at}: {p.last_error[:300]}"
               if p.last_error else "no upload tried yet (MLflow was not reachable when it ran)")
        out.append(f"{p.trial_id} attempt {p.attempt} {p.status or '?'}: {why}")
    return out
