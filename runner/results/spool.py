"""The local spool: every trial attempt's results on disk before they go to MLflow.

Layout: ``<root>/<sweep>/<trial_id>/attempt-<n>/`` holding
- ``artifacts/``: what the MLflow run gets — ``result.json`` (vLLM ``--save-result`` key names,
  per-request arrays and a ``runner`` provenance block), ``requests.parquet`` (one row per
  measured request, chunk times as lists), ``serving_config.json``, ``system.json``,
  ``engine_samples.json``, ``engine_log_tail.txt``;
- ``upload.json``: the run's name, params, tags, status and metrics (see ``runner.results.sync``);
- ``state.json``: status, MLflow run id, whether the attempt reached MLflow and, after a failed
  upload, why: ``last_error`` (redacted ``Type: message``), ``last_error_at`` (UTC, ISO 8601)
  and ``upload_failures`` (count); read back as ``Pending`` records.
Invariant: files are written only under the attempt's folder, each atomically, and
``state.json`` last, so a crash never leaves a half-state that claims to be complete.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict

from runner.core import redact
from runner.measure import RequestRecord


def default_root() -> Path:
    return Path(os.environ.get("RUNNER_SPOOL", "spool"))


def attempt_dir(root: Path, sweep: str, trial_id: str, attempt: int) -> Path:
    d = root / sweep / trial_id / f"attempt-{attempt}"
    if not d.resolve().is_relative_to(root.resolve()) or not str(trial_id).isalnum():
        raise ValueError(f"spool path {d} would leave {root}")  # names are validated; this is the backstop
    (d / "artifacts").mkdir(parents=True, exist_ok=True)
    return d


def attempts(root: Path, sweep: str, trial_id: str) -> int:
    """How many attempts of this trial the spool holds."""
    return len(list((root / sweep / trial_id).glob("attempt-*")))


def completed(root: Path, sweep: str) -> set[str]:
    """Trial ids with a COMPLETED attempt in the spool (uploaded or not)."""
    out = set()
    for state in (root / sweep).glob("*/attempt-*/state.json"):
        if json.loads(state.read_text()).get("status") == "COMPLETED":
            out.add(state.parent.parent.name)
    return out


def write_json(path: Path, obj: Any) -> None:
    """Atomically, with secrets redacted (``runner.core.redact.clean``)."""
    write_text(path, json.dumps(redact.clean(obj), indent=1, sort_keys=True, default=str))


def write_text(path: Path, text: str) -> None:
    """Atomically, with secrets redacted (``runner.core.redact.text``)."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(redact.text(text))
    os.replace(tmp, path)


def write_requests(path: Path, records: list[RequestRecord]) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    cols: dict[str, list] = {k: [] for k in (
        "index", "replica", "prompt_tokens", "output_tokens", "intended_s", "st_s", "ttft_ms",
        "e2el_ms", "ok", "error", "finish_reason", "chunk_times_s", "chunk_tokens")}
    for r in records:
        ok = bool(r.chunk_times)
        for k, v in (("index", r.index), ("replica", r.replica), ("prompt_tokens", r.prompt_tokens),
                     ("output_tokens", r.output_tokens), ("intended_s", r.intended), ("st_s", r.st),
                     ("ttft_ms", r.ttft * 1e3 if ok else None), ("e2el_ms", r.e2el * 1e3 if ok else None),
                     ("ok", r.ok), ("error", redact.text(r.error)), ("finish_reason", r.finish_reason),
                     ("chunk_times_s", list(r.chunk_times)), ("chunk_tokens", list(r.chunk_tokens))):
            cols[k].append(v)
    pq.write_table(pa.table(cols), path)


class Pending(BaseModel):
    """One attempt whose results have not reached MLflow, as ``state.json`` records it.
    ``last_error`` is empty (and ``upload_failures`` 0) when no upload of it was tried yet."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    dir: Path
    trial_id: str
    attempt: int
    status: str = ""
    reason: str = ""
    last_error: str = ""
    last_error_at: str = ""
    upload_failures: int = 0


def note_upload_error(d: Path, error: str) -> None:
    """Record in ``d/state.json`` that an upload of attempt folder ``d`` failed, and why."""
    import time

    state = json.loads((d / "state.json").read_text())
    write_json(d / "state.json", {**state, "last_error": error[:1000],
                                  "last_error_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                  "upload_failures": int(state.get("upload_failures", 0)) + 1})


def pending(root: Path, sweep: str) -> list[Pending]:
    """Every attempt not yet in MLflow, with its last upload error, by trial id and attempt."""
    out = []
    for d in pending_uploads(root, sweep):
        state = json.loads((d / "state.json").read_text())
        state.setdefault("trial_id", d.parent.name)
        state.setdefault("attempt", int(d.name.removeprefix("attempt-")))
        out.append(Pending(dir=d, **state))
    return out


def pending_uploads(root: Path, sweep: str) -> list[Path]:
    """Attempt folders whose results have not reached MLflow yet."""
    out = []
    for state in sorted((root / sweep).glob("*/attempt-*/state.json")):
        if not json.loads(state.read_text()).get("uploaded"):
            out.append(state.parent)
    return out
