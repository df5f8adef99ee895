"""A failed upload keeps its reason in the spool (``state.json``), shown per pending trial, on a
real (SQLite) MLflow: the live path (Recorder) and ``sync`` alike."""

import json

from runner.cluster import Outcome
from runner.plan import Status
from runner.plan.grid import expand
from runner.results import Recorder, Store, spool
from runner.results.sync import pending_lines, sync
from runner.sweep.spec import load
from tests.unit.results.test_recorder_marks import records


def spooled(tmp_path, sweep_file, store):
    """One COMPLETED attempt of BASE's first trial, recorded with ``store`` (None: MLflow was down)."""
    spec = load(sweep_file())
    trial = expand(spec)[0]
    out = (tmp_path / "out.txt").open("a")
    rec = Recorder(spec, store, tmp_path / "spool", out=out)
    rec.on_start(trial, {})
    if store is not None:
        store.client.delete_run(rec.live[trial.trial_id][0])        # the run is gone before the upload
    rec.on_end(Outcome(trial, Status.COMPLETED, result={"records": records(4, 64), "duration_s": 1.0}))
    out.close()
    [d] = spool.pending_uploads(tmp_path / "spool", spec.name)
    return spec, trial, d


def test_sync_keeps_the_last_error_and_shows_it_per_trial(tmp_path, sweep_file):
    spec, trial, d = spooled(tmp_path, sweep_file, None)
    root = tmp_path / "spool"
    assert pending_lines(root, "t") == [f"{trial.trial_id} attempt 1 COMPLETED: no upload tried yet "
                                        "(MLflow was not reachable when it ran)"]
    store = Store(spec.experiment_name, spec.name, f"sqlite:///{tmp_path / 'm.db'}")
    info = json.loads((d / "upload.json").read_text())
    (d / "upload.json").write_text(json.dumps({**info, "run_id": "0" * 32}))   # a run MLflow does not have
    assert sync(store, root, "t") == (0, 1)
    assert sync(store, root, "t") == (0, 1)
    state = json.loads((d / "state.json").read_text())
    assert state["uploaded"] is False and state["upload_failures"] == 2
    assert state["last_error"].startswith("MlflowException: ") and "0" * 32 in state["last_error"]
    [p] = spool.pending(root, "t")
    assert (p.trial_id, p.attempt, p.status, p.upload_failures) == (trial.trial_id, 1, "COMPLETED", 2)
    [line] = pending_lines(root, "t")
    assert line.startswith(f"{trial.trial_id} attempt 1 COMPLETED: upload failed 2x, last at 20")
    assert "MlflowException: " in line
    (d / "upload.json").write_text(json.dumps({**info, "run_id": None}))
    assert sync(store, root, "t") == (1, 0)
    assert pending_lines(root, "t") == [] and store.done_ids() == {trial.trial_id}


def test_live_upload_failure_is_said_and_kept(tmp_path, sweep_file):
    store = Store("t", "t", f"sqlite:///{tmp_path / 'm.db'}")
    _, trial, d = spooled(tmp_path, sweep_file, store)
    state = json.loads((d / "state.json").read_text())
    assert state["upload_failures"] == 1 and state["last_error"]
    said = (tmp_path / "out.txt").read_text()
    assert f"! MLflow write failed ({state['last_error'][:60]}" in said
    [line] = pending_lines(tmp_path / "spool", "t")
    assert line.startswith(f"{trial.trial_id} attempt 1 COMPLETED: upload failed 1x")
