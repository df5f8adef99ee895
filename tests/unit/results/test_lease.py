"""The sweep lease: who may run a sweep, decided from the record on a real (SQLite) MLflow parent run."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from runner.results import Lease, LeaseHeld, LeaseRecord, Store, lease

_names = itertools.count()


@pytest.fixture(scope="module")
def uri(tmp_path_factory):
    return f"sqlite:///{tmp_path_factory.mktemp('lease') / 'mlflow.db'}"


@pytest.fixture
def make(uri, request):
    """make(sweep) -> a new Store (as a new driver process would have) on this test's own experiment."""
    experiment = f"lease-{request.node.name}-{next(_names)}"
    return lambda sweep="s", exp=experiment: Store(exp, sweep, uri=uri)


def _gone_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def _acquire(store: Store, me: LeaseRecord | None = None) -> Lease:
    return Lease.acquire(store, me, renew_s=3600, settle_s=0)  # the test beats by hand


def test_a_record_is_live_until_it_expires_or_is_released():
    rec = LeaseRecord.here(expire_s=30)
    assert rec.state(rec.renewed + 29.9) == "live"
    assert rec.state(rec.renewed + 30) == "expired"
    assert rec.model_copy(update={"released": True}).state(rec.renewed) == "released"
    assert LeaseRecord.loads(rec.dumps()) == rec
    assert LeaseRecord.loads(None) is None and LeaseRecord.loads("{not json") is None
    with pytest.raises(ValueError):
        LeaseRecord(**{**rec.model_dump(), "driver": "not-hex"})


def test_a_holder_on_this_machine_whose_process_is_gone_is_dead_at_once():
    rec = LeaseRecord.here(expire_s=3600)
    gone = rec.model_copy(update={"pid": _gone_pid()})
    assert gone.state() == "dead"
    assert rec.model_copy(update={"pid_start": (rec.pid_start or 0) + 1}).state() == "dead"  # pid reused
    zombie = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    alive = rec.model_copy(update={"pid": zombie.pid, "pid_start": lease._start_ticks(zombie.pid)})
    assert alive.state() == "live"
    zombie.stdin.close()
    while Path(f"/proc/{zombie.pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z":
        time.sleep(0.05)  # exited, not yet reaped: still in /proc, but dead
    assert alive.state() == "dead"
    zombie.wait()
    # another machine's pid says nothing here: only its renewals count
    assert gone.model_copy(update={"machine": "another-boot/pid:[1]"}).state() == "live"


def test_describe_names_host_pid_ray_job_and_since(monkeypatch):
    monkeypatch.setenv("RAY_JOB_CONFIG_JSON_ENV_VAR", json.dumps({"metadata": {"job_submission_id": "raysubmit_x1"}}))
    rec = LeaseRecord.here()
    assert rec.ray_job == "raysubmit_x1"
    text = rec.describe(rec.renewed + 4)
    assert f"host {rec.host}" in text and f"pid {os.getpid()}" in text and "Ray job raysubmit_x1" in text
    assert time.strftime("since %Y-%m-%d", time.gmtime(rec.since)) in text and "renewed 4 s ago" in text
    monkeypatch.delenv("RAY_JOB_CONFIG_JSON_ENV_VAR")
    monkeypatch.setenv("RAY_JOB_ID", "02000000")
    assert LeaseRecord.here().ray_job == "02000000"


def test_lease_length_comes_from_the_environment(monkeypatch):
    monkeypatch.setenv(lease.EXPIRE_ENV, "7.5")
    assert LeaseRecord.here().expire_s == 7.5
    monkeypatch.setenv(lease.EXPIRE_ENV, "0")
    with pytest.raises(lease.RunnerError, match="RUNNER_LEASE_S"):
        LeaseRecord.here()


def test_a_second_driver_is_refused_while_the_first_holds_the_lease(make):
    first = _acquire(make())
    with pytest.raises(LeaseHeld) as e:
        _acquire(make())
    assert e.value.exit_code == 2
    msg = str(e.value)
    assert first.driver in msg and f"pid {os.getpid()}" in msg and "since " in msg
    assert make().read_lease() == first.record           # the refused driver wrote nothing
    first.release()
    second = _acquire(make())                             # released: free at once
    assert make().read_lease().driver == second.driver
    second.release()


def test_an_expired_lease_is_taken_over_and_its_holder_finds_it_lost(make):
    store = make()
    old = _acquire(store)
    expired = old.record.model_copy(update={"renewed": time.time() - old.record.expire_s - 1})
    store.write_lease(expired)                            # its last heartbeat, long ago
    seen = []
    old.on_lost = seen.append
    new = _acquire(make())
    assert new.driver != old.driver
    assert old.renew() is False and old.lost.driver == new.driver and seen == [old.lost]
    assert old.renew() is False and len(seen) == 1        # lost once; never written again
    old.release()                                         # does not free the new holder's lease
    assert make().read_lease().driver == new.driver and make().read_lease().live()
    assert new.renew() is True
    new.release()
    assert make().read_lease().state() == "released"


def test_renewal_moves_the_heartbeat(make):
    held = _acquire(make())
    before = make().read_lease().renewed
    time.sleep(0.01)
    assert held.renew() and make().read_lease().renewed > before
    held.release()


def test_the_heartbeat_thread_renews_until_released(make):
    held = Lease.acquire(make(), renew_s=0.05, settle_s=0)
    first = make().read_lease().renewed
    deadline = time.monotonic() + 60
    while make().read_lease().renewed == first:
        assert time.monotonic() < deadline, "no renewal"
        time.sleep(0.05)
    held.release()
    assert not held._thread.is_alive() and make().read_lease().released


def _running(store: Store, tid: str) -> str:
    return store.start_trial(tid, tid, {}, {})


def test_reclaim_kills_only_runs_whose_driver_lease_is_not_live(make):
    dead_store = make()
    dead = _acquire(dead_store)
    stale = _running(dead_store, "of-dead")
    dead_store.write_lease(dead.record.model_copy(update={"renewed": time.time() - 3600}))
    legacy_store = make()                                  # a run from before leases: no driver tag
    legacy = _running(legacy_store, "legacy")
    live_store = make()
    live = _acquire(live_store)                            # takes over the expired lease
    mine = _running(live_store, "of-live")
    other_sweep = make("other")                            # same experiment, another sweep, its own live lease
    other = _acquire(other_sweep)
    theirs = _running(other_sweep, "of-other-sweep")

    assert sorted(make().reclaim_stale()) == ["legacy", "of-dead"]
    status = {rid: live_store.client.get_run(rid) for rid in (stale, legacy, mine, theirs)}
    assert status[stale].data.tags["runner.status"] == "KILLED" and status[stale].info.status == "KILLED"
    assert status[stale].data.tags["runner.reason"] == "driver_killed"
    assert status[legacy].data.tags["runner.status"] == "KILLED"
    assert status[mine].data.tags["runner.status"] == "RUNNING"
    assert status[mine].data.tags["runner.driver"] == live.driver
    assert status[theirs].data.tags["runner.status"] == "RUNNING"
    other.release()                                       # a released lease: its runs are stale now
    assert make().reclaim_stale() == ["of-other-sweep"]
    live.release()


def test_driver_live_looks_in_every_experiment_of_the_sweep_name(make):
    here = _acquire(make("shared-name"))
    elsewhere = _acquire(make("shared-name", exp=f"lease-elsewhere-{next(_names)}"))
    probe = make("shared-name")
    assert probe.driver_live(here.driver) and probe.driver_live(elsewhere.driver)
    assert not probe.driver_live("0123456789ab")
    assert not make("another-name").driver_live(here.driver)
    elsewhere.release()
    assert not probe.driver_live(elsewhere.driver)
    here.release()


def test_two_drivers_that_created_parents_at_once_agree_on_the_oldest(make):
    a, b = make(), make()
    first = a.parent()
    run = b.client.create_run(b.experiment_id, tags={"runner.role": "parent", "runner.sweep": "s"})
    assert b.parent() == first and b.parent(again=True) == first != run.info.run_id


def test_unreachable_is_a_connection_failure_only(make, monkeypatch):
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    store = make()
    with pytest.raises(Exception) as e:
        MlflowClient("http://127.0.0.1:9").search_experiments()   # nothing listens on port 9
    assert store.unreachable(e.value)
    with pytest.raises(Exception) as e:
        store.client.get_run("0" * 32)                             # reached, and the run does not exist
    assert not store.unreachable(e.value)
    assert not store.unreachable(KeyError("output_throughput"))
