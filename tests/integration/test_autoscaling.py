"""A sweep on an autoscaling cluster that starts without GPU nodes (Ray's own autoscaler, v1, with its
``fake_multinode`` provider on this host; see ``autoscaler.py``).

The head has 2 CPUs and no GPU; the node types H100 (4 GPUs, 0..2 nodes) and H200 (4 GPUs, 0..1)
start at zero, and the sweep names them through the launcher file (``cluster: {config: …}``).
One sweep holds a configuration for each case:
- ``cpu`` fits the live head: it runs at once, while the H100 one waits for its node;
- ``H100`` TP=1 needs a scale-up: its placement group makes the autoscaler launch an H100 node
  (not an H200: the v1 autoscaler ignores label selectors, so the group also asks for the
  ``accelerator_type:H100`` resource the types declare), and the trial completes there;
- ``B200`` fits no node type: UNSCHEDULABLE before any engine starts, naming the types there are;
- ``H100`` TP=4 × DP=3 fits the type only partly (12 GPUs, 2 nodes of 4 at most): UNSCHEDULABLE.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.integration.autoscaler import AutoscalingHead, gpu_type
from tests.integration.faults import driver_env, start_driver, trial_runs

SWEEP = """
name: it-autoscale
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 256}
hardware: [cpu, H100, B200]
shape: {tp: [1, 4], dp: [1, 3]}
engine_args: {enforce_eager: true, max_num_seqs: 4}
workload: {input_len: 16, output_len: 16, concurrency: 2, num_prompts: 8, warmup: 1}
exclude:
  - {tp: 1, dp: 3}
  - {tp: 4, dp: 1}
  - {hardware: cpu, tp: 4}
  - {hardware: B200, tp: 4}
timeouts: {placement_s: 300}
cluster: {config: CLUSTER}
"""


def _running(h: AutoscalingHead):
    h.start()
    try:
        yield h
    finally:
        left = h.stop()
        assert not left, f"processes of the test's head left running: {left}"


def _run(sweep: str, env: dict[str, str], log: Path) -> str:
    """One driver on the sweep to its end (it must exit 1: some configuration can never run); its output."""
    p = start_driver(sweep, env, log)
    try:
        assert p.wait(900) == 1, log.read_text()
    finally:
        if p.poll() is None:  # an interrupted or failed wait leaves no driver behind
            p.kill()
            p.wait(30)
    return log.read_text()


def _nodes(head: AutoscalingHead, env: dict[str, str]) -> dict[str, dict]:
    """The head's nodes, read by a driver of their own: this test process may hold another Ray session."""
    probe = f"import json, ray; ray.init(address={head.address!r}); print(json.dumps(ray.nodes()))"
    q = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, env=env)
    assert q.returncode == 0, q.stderr[-2000:]
    return {n["NodeID"]: n for n in json.loads(q.stdout.strip().splitlines()[-1])}


@pytest.fixture
def head(tiny_model):
    yield from _running(AutoscalingHead({"H100": gpu_type("H100", 4, 2), "H200": gpu_type("H200", 4, 1)},
                                        max_workers=3))


def test_an_autoscaling_cluster_without_gpu_nodes_runs_what_a_node_type_holds(head, mlflow_env, write_sweep,
                                                                               tmp_path):
    sweep = write_sweep(SWEEP.replace("CLUSTER", str(head.config_path)), "autoscale.yaml")
    env = driver_env(head.address, VLLM_CPU_KVCACHE_SPACE="1")
    text = _run(sweep, env, tmp_path / "run.log")            # two configurations can never run: exit 1
    assert "cluster: launchable node types from" in text and "H100 (0..2, 4 GPU H100, 2 CPU)" in text, text
    runs = {(r.data.params["hardware"], r.data.params["tp"]): r for r in trial_runs(mlflow_env, "it-autoscale")}
    assert set(runs) == {("cpu", "1"), ("H100", "1"), ("B200", "1"), ("H100", "4")}, text
    status = {k: r.data.tags["runner.status"] for k, r in runs.items()}
    assert status == {("cpu", "1"): "COMPLETED", ("H100", "1"): "COMPLETED", ("B200", "1"): "UNSCHEDULABLE",
                      ("H100", "4"): "UNSCHEDULABLE"}, {k: r.data.tags for k, r in runs.items()}

    b200 = runs[("B200", "1")].data.tags["runner.detail"]
    assert "launchable type H100" in b200 and "launchable type H200" in b200, b200
    partly = runs[("H100", "4")].data.tags["runner.detail"]
    assert "needs 3 replica(s) × 4 GPU of H100" in partly and "(0 live, 2 launchable)" in partly, partly
    lines = [ln.strip() for ln in text.splitlines()]
    first_start = next(i for i, ln in enumerate(lines) if ln.startswith("▶"))
    unschedulable = [i for i, ln in enumerate(lines) if "UNSCHEDULABLE" in ln and ln.startswith("✘")]
    assert len(unschedulable) == 2 and max(unschedulable) < first_start, text  # at once, before any engine

    spool = Path(os.environ["RUNNER_SPOOL"]) / "it-autoscale"

    def system(run):
        return json.loads(next(spool.glob(f"{run.data.tags['runner.trial_id']}/attempt-*/artifacts/system.json"))
                          .read_text())["engine"]

    gpu, cpu = system(runs[("H100", "1")]), system(runs[("cpu", "1")])
    nodes = _nodes(head, env)
    node = nodes[gpu["node_id"]]
    assert node["Labels"].get("ray.io/accelerator-type") == "H100" and node["Resources"].get("GPU") == 4
    assert not [n for n in nodes.values() if n["Labels"].get("ray.io/accelerator-type") == "H200"], \
        "the autoscaler launched an H200 node for an H100 group"
    assert gpu["node_id"] != cpu["node_id"] and len(gpu["gpu_ids"]) == 1
    # the launch waiting for its node did not hold back the one that fit the live head: the cpu
    # launch was placed before the H100 group was ready (which took a node launch)
    h100_ready = gpu["timing"]["placed_at"] + gpu["timing"]["placement_s"]
    assert cpu["timing"]["placed_at"] < h100_ready, (cpu["timing"], gpu["timing"])


SWEEP_V2 = """
name: it-autoscale-v2
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 256}
hardware: [H100, B200]
engine_args: {enforce_eager: true, max_num_seqs: 4}
workload: {input_len: 16, output_len: 16, concurrency: 2, num_prompts: 8, warmup: 1}
timeouts: {placement_s: 600}
"""


@pytest.fixture
def head_v2(tiny_model):
    yield from _running(AutoscalingHead({"H100": gpu_type("H100", 4, 1)}, max_workers=1, version="v2"))


def test_with_autoscaler_v2_and_no_node_types_described_the_autoscaler_decides(head_v2, mlflow_env, write_sweep,
                                                                               tmp_path):
    """Autoscaler v2 (``ray up``'s default) and a sweep that names no node types (no ``cluster:``
    section, no launcher file on the head, as on a KubeRay cluster): nothing fits a live node, so
    each GPU launch's group is created with the type's label only and v2 decides. H100: v2 launches
    an H100 node and the trial completes there. B200: no node type holds it; v2 lists the group as
    infeasible and, with nothing else of the driver waiting, the launch is UNSCHEDULABLE on that
    verdict (the only path that names the autoscaler), long before ``placement_s``."""
    sweep = write_sweep(SWEEP_V2, "autoscale-v2.yaml")
    env = driver_env(head_v2.address, VLLM_CPU_KVCACHE_SPACE="1")
    text = _run(sweep, env, tmp_path / "run.log")            # B200 can never run: exit 1
    runs = {r.data.params["hardware"]: r for r in trial_runs(mlflow_env, "it-autoscale-v2")}
    status = {k: r.data.tags["runner.status"] for k, r in runs.items()}
    assert status == {"H100": "COMPLETED", "B200": "UNSCHEDULABLE"}, ({k: r.data.tags for k, r in runs.items()}, text)
    b200 = runs["B200"].data.tags["runner.detail"]
    assert "Ray's autoscaler (v2) lists its placement group" in b200 and "infeasible" in b200, b200
    spool = Path(os.environ["RUNNER_SPOOL"]) / "it-autoscale-v2"
    h100 = runs["H100"]
    system = json.loads(next(spool.glob(f"{h100.data.tags['runner.trial_id']}/attempt-*/artifacts/system.json"))
                        .read_text())["engine"]
    node = _nodes(head_v2, env)[system["node_id"]]                       # a node v2 launched, of the type
    assert node["Labels"].get("ray.io/accelerator-type") == "H100"
