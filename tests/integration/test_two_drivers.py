"""Two real drivers on one sweep (real Ray, a real `mlflow server`, the tiny model): the lease.

The first driver's trials are held in place by freezing its engine actor (SIGSTOP; the load
generator runs inside it), never by timing. A second driver meanwhile exits 2 at once, naming the
first, and the first's trial completes untouched. Then the first driver freezes (SIGSTOP: Ray still
counts it and its placement groups alive, but it stops renewing its lease, as a hung or partitioned
driver does), and a third driver started once the lease has expired (read from MLflow) reclaims its
RUNNING run and removes its groups while it is still frozen (so Ray's own cleanup of a dead job
cannot be what removed them); then the first is SIGKILLed, and the third finishes the sweep. The test
process itself holds a live lease on a sweep of the same name in another experiment, with a group of
its own, which no driver here may remove.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections import Counter

import psutil
import pytest
from mlflow.tracking import MlflowClient
from ray.util.placement_group import placement_group, remove_placement_group

from runner.cluster import placement
from runner.results import Lease, Store
from tests.integration.faults import by_status, driver_env, start_driver, trial_runs, wait_for
from tests.integration.mlflow_server import MlflowServer

NAME = "two-drivers"
SWEEP = f"""
name: {NAME}
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {{max_model_len: 256}}
hardware: cpu
engine_args: {{enforce_eager: true, max_num_seqs: 4}}
workload:
  input_len: 16
  output_len: 32
  concurrency: [1, 2]      # two trials, one engine launch
  num_prompts: "40 * concurrency"
  warmup: 1
timeouts: {{request_s: 600}}
"""


@pytest.fixture
def server(tmp_path):
    s = MlflowServer(tmp_path).start()  # a server, not SQLite: a frozen driver must hold no database lock
    yield s
    s.stop()


def _lease(uri: str) -> dict:
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name(NAME)
    [parent] = client.search_runs([exp.experiment_id], "tags.`runner.role` = 'parent'")
    return json.loads(parent.data.tags["runner.lease"])


def _groups(driver: str) -> dict[str, str]:
    from ray.util import placement_group_table

    return {k: v["state"] for k, v in placement_group_table().items()
            if v["name"].startswith(f"runner:{NAME}:{driver}:")}


def _run(uri: str, run_id: str):
    return MlflowClient(uri).get_run(run_id)


def test_a_second_driver_is_refused_and_a_dead_drivers_runs_and_groups_are_reclaimed(ray_local, server, write_sweep,
                                                                                    tmp_path, monkeypatch):
    monkeypatch.setenv("RUNNER_SPOOL", str(tmp_path / "spool"))
    sweep = write_sweep(SWEEP)
    env = driver_env(ray_local.get_runtime_context().gcs_address, MLFLOW_TRACKING_URI=server.uri,
                     RUNNER_LEASE_S="8", RUNNER_LEASE_RENEW_S="1")
    uri, logs = server.uri, {k: tmp_path / f"{k}.log" for k in ("first", "second", "third")}
    procs: list = []
    engine_tree: list[psutil.Process] = []
    elsewhere = theirs = None
    try:
        first = start_driver(sweep, env, logs["first"])
        procs.append(first)
        # a RUNNING run with its params: the store creates the run (tags) before it logs the params
        run1 = wait_for(lambda: [r for r in by_status(trial_runs(uri, NAME)).get("RUNNING", [])
                                 if "concurrency" in r.data.params], 300, "the first trial RUNNING", every=0.2)[0]
        engine = psutil.Process(int(run1.data.tags["runner.engine_pid"]))
        engine_tree[:] = [engine, *engine.children(recursive=True)]
        engine.send_signal(signal.SIGSTOP)                     # hold it: the trial stays RUNNING
        assert run1.data.params["concurrency"] == "1", "the first trial ended before it could be held"
        lease = _lease(uri)
        assert lease["pid"] == first.pid and lease["host"] == socket.gethostname() and not lease["released"]
        assert run1.data.tags["runner.driver"] == lease["driver"]
        groups = wait_for(lambda: _groups(lease["driver"]), 30, "the first driver's group")
        assert set(groups.values()) == {"CREATED"}

        # a second driver while the first runs: refused at once, naming the first; nothing of the first touched
        second = start_driver(sweep, env, logs["second"])
        procs.append(second)
        assert second.wait(180) == 2, logs["second"].read_text()
        text = logs["second"].read_text()
        assert "is being run by another driver" in text and lease["driver"] in text
        assert f"host {socket.gethostname()}" in text and f"pid {first.pid}" in text and "since 20" in text
        assert f"Ray job {_lease(uri)['ray_job']}" in text      # the first's Ray job id, named once it connected
        assert "Traceback" not in text and f"sweep {NAME}:" not in text   # it stopped before planning anything
        assert _run(uri, run1.info.run_id).data.tags["runner.status"] == "RUNNING"
        assert _groups(lease["driver"]) == groups
        assert placement.remove_orphans(NAME, live=Store(NAME, NAME, uri=uri).driver_live) == 0  # a live lease
        assert _groups(lease["driver"]) == groups

        engine.send_signal(signal.SIGCONT)                     # the first trial completes, untouched
        wait_for(lambda: _run(uri, run1.info.run_id).data.tags["runner.status"] != "RUNNING", 300,
                 "the first trial to end", every=0.1)
        engine.send_signal(signal.SIGSTOP)                     # and the second is held
        assert _run(uri, run1.info.run_id).data.tags["runner.status"] == "COMPLETED"
        run2 = wait_for(lambda: by_status(trial_runs(uri, NAME)).get("RUNNING"), 120, "the second trial RUNNING",
                        every=0.2)[0]
        assert run2.data.tags["runner.driver"] == lease["driver"]

        # the first driver stops renewing (frozen); a third driver waits for the lease to expire, as read from MLflow
        psutil.Process(first.pid).send_signal(signal.SIGSTOP)
        wait_for(lambda: time.time() > _lease(uri)["renewed"] + _lease(uri)["expire_s"], 120, "the lease to expire")
        elsewhere = Lease.acquire(Store(f"{NAME}-elsewhere", NAME, uri=uri), renew_s=1, settle_s=0)
        theirs = placement_group([{"CPU": 0.01}], name=placement.group_name(NAME, elsewhere.driver, "x-1-r0"))
        ray_local.get(theirs.ready(), timeout=120)
        third = start_driver(sweep, env, logs["third"])
        procs.append(third)
        wait_for(lambda: "orphaned placement group" in logs["third"].read_text() or third.poll() is not None, 300,
                 "the third driver's orphan cleanup")
        text = logs["third"].read_text()
        assert "reclaimed 1 trial run(s)" in text and "removed 1 orphaned placement group(s)" in text, text
        assert psutil.Process(first.pid).status() == psutil.STATUS_STOPPED   # alive to Ray all along: the
        assert set(_groups(lease["driver"]).values()) == {"REMOVED"}         # third driver removed them
        assert set(_groups(elsewhere.driver).values()) == {"CREATED"}        # a live driver's, in another experiment
        killed = _run(uri, run2.info.run_id)
        assert killed.data.tags["runner.status"] == "KILLED" and killed.info.status == "KILLED"
        assert killed.data.tags["runner.reason"] == "driver_killed"
        os.kill(first.pid, signal.SIGKILL)
        first.wait(30)

        assert third.wait(600) == 0, logs["third"].read_text()
        st = by_status(trial_runs(uri, NAME))
        assert set(st) == {"COMPLETED", "KILLED"}
        done = Counter(r.data.tags["runner.trial_id"] for r in st["COMPLETED"])
        assert len(done) == 2 and set(done.values()) == {1}     # each trial COMPLETED exactly once
        assert [r.info.run_id for r in st["KILLED"]] == [run2.info.run_id]
        drivers = {r.data.tags["runner.trial_id"]: r.data.tags["runner.driver"] for r in st["COMPLETED"]}
        assert drivers[run1.data.tags["runner.trial_id"]] == lease["driver"]
        final = _lease(uri)
        assert drivers[run2.data.tags["runner.trial_id"]] == final["driver"] != lease["driver"]
        assert final["pid"] == third.pid and final["released"]
    finally:
        if elsewhere is not None:
            elsewhere.release()
        if theirs is not None:
            remove_placement_group(theirs)
        for p in procs:
            if p.poll() is None:
                os.kill(p.pid, signal.SIGKILL)
                p.wait(30)
        for proc in engine_tree:  # the frozen engine's processes, if Ray left any behind (same start time only)
            try:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
            except psutil.Error:
                pass
