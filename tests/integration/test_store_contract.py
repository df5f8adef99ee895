"""The Store contract, run unchanged against every backend the runner supports.

One parametrised fixture, ``store_factory``, gives each test a factory of ``Store`` objects on
(a) a SQLite file, (b) a real `mlflow server` on loopback, and (c) the same server behind
MLflow's basic-auth app with credentials in MLFLOW_TRACKING_USERNAME/PASSWORD. Every test uses
its own experiment, so the servers are shared by the module.
"""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from runner.results import spool
from runner.results.store import Store
from runner.results.sync import sync, upload
from tests.integration.mlflow_server import MlflowServer

USER, PASSWORD = "runner-admin", "contract-pw-7f3a"
_names = itertools.count()


@pytest.fixture(scope="module")
def plain_server(tmp_path_factory):
    s = MlflowServer(tmp_path_factory.mktemp("mlflow-plain")).start()
    yield s
    s.stop()


@pytest.fixture(scope="module")
def auth_server(tmp_path_factory):
    s = MlflowServer.with_basic_auth(tmp_path_factory.mktemp("mlflow-auth"), USER, PASSWORD).start()
    yield s
    s.stop()


@pytest.fixture(params=["sqlite", "server", "server-basic-auth"])
def store_factory(request, tmp_path, monkeypatch):
    """(make(sweep) -> Store, uri): a fresh experiment per test on the chosen backend."""
    if request.param == "sqlite":
        uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    elif request.param == "server":
        uri = request.getfixturevalue("plain_server").uri
    else:
        uri = request.getfixturevalue("auth_server").uri
        monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", USER)
        monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    experiment = f"contract-{request.param}-{request.node.name}-{next(_names)}"

    def make(sweep: str = "s") -> Store:
        return Store(experiment, sweep, uri=uri)
    return make, uri


def _trial(store: Store, tid: str, attempt: int = 1, params: dict | None = None) -> str:
    return store.start_trial(tid, f"trial {tid}", {"runner.attempt": str(attempt), "runner.serving_config_id": "sc1"},
                             params or {"concurrency": 1, "engine_args.max_num_seqs": 8})


def test_parent_is_created_once_and_reused(store_factory):
    make, _ = store_factory
    a = make()
    pid = a.parent({"sweep_file": "x.yaml", "trials": 4})
    assert a.parent() == pid
    assert make().parent({"trials": 99}) == pid             # a later `run` reuses it, params untouched
    assert make("other").parent() != pid                    # another sweep, another parent
    run = a.client.get_run(pid)
    assert run.info.run_name == "sweep s"
    assert run.data.tags["runner.role"] == "parent" and run.data.tags["runner.sweep"] == "s"
    assert run.data.params == {"sweep_file": "x.yaml", "trials": "4"}


def test_start_and_end_trial_record_tags_metrics_steps_and_artifacts(store_factory, tmp_path):
    make, _ = store_factory
    s = make()
    rid = _trial(s, "t1")
    run = s.client.get_run(rid)
    assert run.info.status == "RUNNING"
    assert run.data.tags["runner.status"] == "RUNNING" and run.data.tags["runner.trial_id"] == "t1"
    assert run.data.tags["mlflow.parentRunId"] == s.parent() and run.data.tags["runner.role"] == "trial"
    art = tmp_path / "art"
    art.mkdir()
    (art / "result.json").write_text(json.dumps({"output_throughput": 12.5}))
    s.end_trial(rid, "COMPLETED", metrics={"output_throughput": 12.5, "median_ttft_ms": 3.0, "skipped": None},
                steps=[{"t": 0.0, "kv_cache_usage": 0.1}, {"t": 0.5, "kv_cache_usage": 0.3}], artifacts=art)
    run = s.client.get_run(rid)
    assert run.info.status == "FINISHED" and run.data.tags["runner.status"] == "COMPLETED"
    assert run.data.metrics["output_throughput"] == 12.5 and "skipped" not in run.data.metrics
    hist = s.client.get_metric_history(rid, "engine.kv_cache_usage")
    assert sorted((m.step, m.value) for m in hist) == [(0, 0.1), (1, 0.3)]
    assert [a.path for a in s.client.list_artifacts(rid)] == ["result.json"]
    assert json.loads(Path(s.client.download_artifacts(rid, "result.json", str(tmp_path))).read_text()) == \
        {"output_throughput": 12.5}


@pytest.mark.parametrize(("status", "mlflow_status"), [("FAILED", "FAILED"), ("INVALID", "FAILED"),
                                                       ("KILLED", "KILLED")])
def test_unsuccessful_endings(store_factory, status, mlflow_status):
    make, _ = store_factory
    s = make()
    rid = _trial(s, "t1")
    s.end_trial(rid, status, tags={"runner.reason": "engine_start_failed", "runner.detail": "x" * 6000})
    run = s.client.get_run(rid)
    assert run.info.status == mlflow_status and run.data.tags["runner.status"] == status
    assert run.data.tags["runner.reason"] == "engine_start_failed"
    assert len(run.data.tags["runner.detail"]) == 5000          # truncated, not refused


def test_done_ids_latest_by_trial_and_attempts(store_factory):
    make, _ = store_factory
    s = make()
    r = _trial(s, "a")                                          # a: FAILED then COMPLETED
    s.end_trial(r, "FAILED")
    r = _trial(s, "a", 2)
    s.end_trial(r, "COMPLETED", metrics={"x": 1})
    time.sleep(0.01)
    r = _trial(s, "b")                                          # b: COMPLETED, then a newer forced rerun FAILED
    s.end_trial(r, "COMPLETED")
    time.sleep(0.01)
    r = _trial(s, "b", 2)
    s.end_trial(r, "FAILED")
    r = _trial(s, "c")                                          # c: INVALID only
    s.end_trial(r, "INVALID")
    _trial(s, "d")                                              # d: still RUNNING

    assert s.done_ids() == {"a", "b"}
    latest = {k: v.data.tags["runner.status"] for k, v in s.latest_by_trial().items()}
    assert latest == {"a": "COMPLETED", "b": "COMPLETED", "c": "INVALID", "d": "RUNNING"}
    assert [s.attempts(t) for t in "abcde"] == [2, 2, 1, 1, 0]
    assert len(s.trial_runs()) == 6
    assert make("another-sweep").done_ids() == {"a", "b"}      # done-ness is per experiment, by tag


def test_reclaim_stale_marks_running_trials_killed(store_factory):
    make, _ = store_factory
    s = make()
    done = _trial(s, "done")
    s.end_trial(done, "COMPLETED")
    stale = [_trial(s, "x"), _trial(s, "y")]
    assert sorted(make().reclaim_stale()) == ["x", "y"]         # a new driver, as after a crash
    for rid in stale:
        run = s.client.get_run(rid)
        assert run.info.status == "KILLED" and run.data.tags["runner.status"] == "KILLED"
        assert run.data.tags["runner.reason"] == "driver_killed"
    assert s.client.get_run(done).data.tags["runner.status"] == "COMPLETED"
    assert make().reclaim_stale() == []
    assert s.done_ids() == {"done"}


def test_more_than_one_batch_of_params(store_factory):
    make, _ = store_factory
    s = make()
    params = {f"p{i:03d}": i for i in range(250)}               # MLflow caps a batch at 100 params
    rid = _trial(s, "wide", params=params)
    assert s.client.get_run(rid).data.params == {k: str(v) for k, v in params.items()}


def _spooled_attempt(root: Path, sweep: str, tid: str, attempt: int = 1, run_id: str | None = None) -> Path:
    d = spool.attempt_dir(root, sweep, tid, attempt)
    spool.write_json(d / "artifacts" / "result.json", {"output_throughput": 7.0, "runner": {"trial_id": tid}})
    spool.write_json(d / "artifacts" / "engine_samples.json", [{"t": 0.0, "num_requests_running": 2.0}])
    spool.write_json(d / "upload.json", {
        "run_id": run_id, "trial_id": tid, "attempt": attempt, "status": "COMPLETED", "name": f"trial {tid}",
        "params": {"concurrency": 2}, "tags": {"runner.attempt": str(attempt), "runner.serving_config_id": "sc1"},
        "end_tags": {}, "metrics": {"output_throughput": 7.0}})
    spool.write_json(d / "state.json", {"status": "COMPLETED", "reason": "", "run_id": run_id, "uploaded": False,
                                        "trial_id": tid, "attempt": attempt})
    return d


def test_sync_uploads_a_spooled_attempt_exactly_once(store_factory, tmp_path):
    make, _ = store_factory
    s = make("spooled")
    s.parent()
    root = tmp_path / "spool"
    d = _spooled_attempt(root, "spooled", "t1")
    assert sync(s, root, "spooled") == (1, 0)
    assert sync(s, root, "spooled") == (0, 0)                   # state.json says uploaded: nothing to do
    assert json.loads((d / "state.json").read_text())["uploaded"] is True
    runs = s.trial_runs()
    assert len(runs) == 1
    run = runs[0]
    assert run.info.status == "FINISHED" and run.data.tags["runner.status"] == "COMPLETED"
    assert run.data.metrics["output_throughput"] == 7.0
    assert run.data.tags["mlflow.parentRunId"] == s.parent()
    assert {a.path for a in s.client.list_artifacts(run.info.run_id)} == {"result.json", "engine_samples.json"}
    assert [m.value for m in s.client.get_metric_history(run.info.run_id, "engine.num_requests_running")] == [2.0]
    upload(s, d)           # again, as after a crash between end_trial and state.json: same run, not a new one
    assert [r.info.run_id for r in s.trial_runs()] == [run.info.run_id]
    assert s.done_ids() == {"t1"}


def test_a_repeated_upload_does_not_double_metric_history(store_factory, tmp_path):
    make, _ = store_factory
    s = make("again")
    root = tmp_path / "spool"
    d = _spooled_attempt(root, "again", "t1")
    upload(s, d)
    upload(s, d)
    rid = s.trial_runs()[0].info.run_id
    assert [m.value for m in s.client.get_metric_history(rid, "output_throughput")] == [7.0]
    assert [m.value for m in s.client.get_metric_history(rid, "engine.num_requests_running")] == [2.0]


def test_sync_finds_a_run_whose_creation_reply_was_lost(store_factory, tmp_path):
    """The live path created the run but never recorded its id: sync reuses it, no duplicate."""
    make, _ = store_factory
    s = make("lost")
    root = tmp_path / "spool"
    created = _trial(s, "t1", attempt=1)                        # run exists in MLflow, RUNNING
    d = _spooled_attempt(root, "lost", "t1", attempt=1, run_id=None)
    assert sync(make("lost"), root, "lost") == (1, 0)
    runs = s.trial_runs()
    assert [r.info.run_id for r in runs] == [created]
    assert runs[0].data.tags["runner.status"] == "COMPLETED"
    assert json.loads((d / "upload.json").read_text())["run_id"] == created


def test_a_second_attempt_is_a_second_run(store_factory, tmp_path):
    make, _ = store_factory
    s = make("two")
    root = tmp_path / "spool"
    _spooled_attempt(root, "two", "t1", attempt=1)
    _spooled_attempt(root, "two", "t1", attempt=2)
    assert sync(s, root, "two") == (2, 0)
    assert sync(s, root, "two") == (0, 0)
    assert s.attempts("t1") == 2
    assert sorted(r.data.tags["runner.attempt"] for r in s.trial_runs()) == ["1", "2"]


def test_runs_are_visible_to_a_plain_client(store_factory):
    """What the Store writes is ordinary MLflow: the UI and any client read it the same way."""
    make, uri = store_factory
    s = make()
    _trial(s, "t1")
    exp = MlflowClient(uri).get_experiment(s.experiment_id)
    runs = MlflowClient(uri).search_runs([exp.experiment_id], "tags.`runner.trial_id` = 't1'")
    assert len(runs) == 1
