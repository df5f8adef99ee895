"""SGLang across nodes, for real, on a fake multi-node cluster (ray.cluster_utils.Cluster, its own
RAY_TMPDIR): two nodes with 1 logical GPU labelled H100 and two with 4 labelled GB200.

Real SGLang 0.5.23 (the CPU lane, device cpu, gloo) runs TP=2 split over the two H100 nodes:
the engine actor is node rank 0 on bundle 0 and a follower launcher is node rank 1 on the
other node (``nnodes=2``, ``dist_init_addr`` = rank 0's node IP and port). The fake GPUs only
steer placement and CUDA_VISIBLE_DEVICES; SGLang computes on the CPU. Both "nodes" are this one
host, so the OMP binding (SGLANG_CPU_OMP_THREADS_BIND, indexed by each node's local rank 0)
puts both launchers on the same two cores. The GB200 nodes check the layout of TP=8 on 4-GPU
nodes without an engine (8 CPU ranks of SGLang do not fit two cores). Drivers run as their own
processes so this test process stays attached to its own cluster. Never ``ray stop``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from tests.integration.conftest import ROOT
from tests.integration.faults import driver_env, start_driver, trial_runs
from tests.integration.test_sglang_engine import lane  # noqa: F401  (the module-scoped lane fixture)

LABEL = "ray.io/accelerator-type"
#: One bind group per local rank: each launcher has one rank here, so both use "0-1".
OMP_BIND = {"SGLANG_CPU_OMP_THREADS_BIND": "0-1"}


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    previous = os.environ.get("RAY_TMPDIR")
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-sgmn-", dir="/tmp")
    c = Cluster(initialize_head=True, connect=False,
                head_node_args={"num_cpus": 0, "num_gpus": 0, "object_store_memory": 200 * 2**20})
    ids = {}
    for name, label, gpus in (("h100-a", "H100", 1), ("h100-b", "H100", 1), ("gb200-a", "GB200", 4),
                              ("gb200-b", "GB200", 4)):
        ids[name] = c.add_node(num_cpus=1, num_gpus=gpus, labels={LABEL: label},
                               object_store_memory=200 * 2**20).node_id
    c.wait_for_nodes()
    yield c, ids
    c.shutdown()
    if previous is not None:
        os.environ["RAY_TMPDIR"] = previous


def run_script(script: str, c, *args: str, timeout: float = 900) -> dict:
    p = subprocess.run([sys.executable, "-c", script, c.address, *args], env=driver_env(c.address),
                       capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("RESULT ")]
    assert p.returncode == 0 and lines, p.stdout[-4000:] + p.stderr[-6000:]
    return json.loads(lines[-1][len("RESULT "):])


def alive(pids: list[int]) -> list[int]:
    """The pids still running (a zombie is dead: nothing may reap it in a container)."""
    import psutil

    out = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                out.append(pid)
        except psutil.NoSuchProcess:
            pass
    return out


def launcher_pids(launchers: list[dict]) -> list[int]:
    return [p for x in launchers for p in [x["pid"], *x["child_pids"]]]


def check_launchers(launchers: list[dict], h100_nodes: set[str]) -> None:
    """Two launchers of one TP=2 replica: ranks 0 and 1 on the two H100 nodes, one GPU each."""
    assert [x["node_rank"] for x in launchers] == [0, 1], launchers
    assert {x["node_id"] for x in launchers} == h100_nodes, launchers   # two different nodes
    addr = launchers[0]["dist_init_addr"]
    assert addr.rsplit(":", 1)[0] == launchers[0]["ip"], launchers     # rank 0's node IP
    for x in launchers:
        assert x["nnodes"] == 2 and x["tp_size"] == 2 and x["pp_size"] == 1 and x["dist_init_addr"] == addr, x
        assert x["gpu_ids"] == [x["cuda_visible_devices"]] and len(x["gpu_ids"]) == 1, x  # its node's one GPU
        assert x["child_pids"], x   # its own scheduler process(es)
    assert launchers[0]["pid"] != launchers[1]["pid"]


# Both scripts below start, as runner.cluster.scheduler does, one engine actor for an SGLang TP=2 replica
# split over the two fake nodes: the request, its group (named GROUP) and the actor on bundle 0
# with the request's resources and multi_node, in the SGLang lane.
SETUP = """
import json, sys, time
import ray
from ray.util.placement_group import remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from runner.cluster import placement
from runner.cluster.actor import EngineActor
from runner.plan.trial import ServingConfig

address, lane, model, env = sys.argv[1], sys.argv[2], sys.argv[3], json.loads(sys.argv[4])
ray.init(address=address)
nodes = ray.nodes()
cfg = ServingConfig(engine="sglang", model="tiny-llama", model_path=model, hardware="H100", tp=2,
                    engine_args={"mem_fraction_static": 0.05})
req = placement.request_for(cfg, nodes)
pg = placement.create(req, GROUP, nodes)
ray.get(pg.ready(), timeout=60)
strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0,
                                            placement_group_capture_child_tasks=True)
actor = ray.remote(EngineActor).options(
    scheduling_strategy=strategy, max_restarts=0, **req.actor_resources,
    runtime_env={"py_executable": f"{lane}/bin/python", "env_vars": env}).remote(
    cfg.model_dump(exclude={"serving_config_id"}), 0, req.spans_nodes)
"""

ACTOR = 'GROUP = "runner:sglang-mn:x-1-r0"\n' + SETUP + """
from ray.util import placement_group_table
from runner.plan.trial import LoadPoint

out = {"bundles": req.bundles, "strategy": req.strategy, "actor_resources": req.actor_resources,
       "check": placement.check([req], nodes),
       "bundle_nodes": {str(k): v for k, v in placement_group_table(pg)["bundles_to_node_id"].items()}}
t0 = time.monotonic()
out["start"] = ray.get(actor.start.remote(120), timeout=600)
out["start_wall_s"] = time.monotonic() - t0
if out["start"]["ok"]:
    load = LoadPoint(input_len=32, output_len=16, concurrency=2, num_prompts=6, warmup=1)
    res = ray.get(actor.run.remote(load.model_dump(), 120), timeout=600)
    out["run"] = {"ok": res["ok"], "tokens": [sum(r["chunk_tokens"]) for r in res.get("records", [])],
                  "errors": [r["error"] for r in res.get("records", []) if r["error"]]}
ray.kill(actor, no_restart=True)   # as the driver does after a timeout: no stop
remove_placement_group(pg)
print("RESULT " + json.dumps(out))
"""


def test_real_sglang_tp2_over_two_nodes_serves_and_dies_with_its_engine_actor(cluster, lane, tiny_model):  # noqa: F811
    c, ids = cluster
    env = {"SGLANG_USE_CPU_ENGINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **OMP_BIND}
    out = run_script(ACTOR, c, lane, tiny_model, json.dumps(env))
    assert out["bundles"] == [{"GPU": 1.0, "CPU": 1.0}] * 2 and out["strategy"] == "STRICT_SPREAD", out
    assert out["actor_resources"] == {"num_gpus": 1.0, "num_cpus": 1.0} and out["check"] is None, out
    assert set(out["bundle_nodes"].values()) == {ids["h100-a"], ids["h100-b"]}, out

    start = out["start"]
    assert start["ok"], {k: v for k, v in start.items() if k != "log_tail"} | {"log_tail": start.get("log_tail")}
    assert start["versions"]["engine_version"] == "0.5.23"
    launchers = start["launchers"]
    check_launchers(launchers, {ids["h100-a"], ids["h100-b"]})
    assert launchers[0]["node_id"] == out["bundle_nodes"]["0"] == start["node_id"]   # rank 0 = the engine actor
    assert launchers[0]["pid"] == start["pid"]
    assert launchers[1]["node_id"] == out["bundle_nodes"]["1"]

    run = out["run"]   # tokens computed by both TP ranks (every decode step all-reduces over gloo)
    assert run["ok"] and run["tokens"] == [16] * 6 and not run["errors"], run

    # killing the engine actor (no stop) takes the follower and every scheduler with it
    from tests.integration.faults import wait_for

    wait_for(lambda: not alive(launcher_pids(launchers)), 60, "the launchers' processes to exit")


FAULT = 'GROUP = "runner:sglang-mn:z-1-r0"\n' + SETUP + """
import os, signal
import psutil

ref = actor.start.remote(120)


def find(title):   # Ray's process title of an actor running a method: "ray::Class.method"
    for p in psutil.process_iter(["cmdline"]):
        if (p.info["cmdline"] or [""])[0].startswith(title):
            return p
    return None


end = time.monotonic() + 300
follower = None
while follower is None and time.monotonic() < end:   # the follower, once its schedulers are launching
    follower = find("ray::SglangFollower.start")
    if follower is not None and not follower.children():
        follower = None
    time.sleep(0.2)
engine = find("ray::EngineActor")
out = {"found": follower is not None}
if follower is not None:
    os.kill(follower.pid, signal.SIGKILL)
    t0 = time.monotonic()
    out["start"] = ray.get(ref, timeout=600)
    out["fail_s"] = time.monotonic() - t0
    out["engine_children"] = [" ".join(c.cmdline())[:200] for c in engine.children(recursive=True)
                              if c.status() != psutil.STATUS_ZOMBIE]
ray.kill(actor, no_restart=True)
remove_placement_group(pg)
print("RESULT " + json.dumps({k: v for k, v in out.items()}, default=str))
"""


def test_a_follower_dying_while_starting_fails_the_start_at_once(cluster, lane, tiny_model):  # noqa: F811
    """SIGKILL the follower launcher while SGLang starts: rank 0 must not wait out the rendezvous
    (SGLang's own timeout is many minutes), but fail with the follower's error and no child left."""
    c, _ = cluster
    env = {"SGLANG_USE_CPU_ENGINE": "1", "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), **OMP_BIND}
    out = run_script(FAULT, c, lane, tiny_model, json.dumps(env))
    assert out["found"], out
    start = out["start"]
    assert not start["ok"] and start["reason"].startswith("engine_start_error"), start
    assert "a follower failed" in start["error"] and "ActorDiedError" in start["error"], start["error"]
    assert out["fail_s"] < 60, out["fail_s"]
    assert out["engine_children"] == [], out

SWEEP = """
name: sglang-2node
engine: sglang
lanes: {sglang: sglang-cpu}
models:
  - id: tiny-llama
    path: $MODEL
hardware: H100
shape: {tp: 2}
engine_args: {mem_fraction_static: 0.05}
workload:
  input_len: 32
  output_len: 16
  concurrency: 2
  num_prompts: 6
  warmup: 1
timeouts: {placement_s: 60, engine_start_s: 600, request_s: 120}
"""


def test_the_runner_runs_sglang_over_two_nodes_and_records_each_launcher(cluster, lane, mlflow_env,  # noqa: F811
                                                                        write_sweep, tmp_path):
    """`python -m runner run` end to end: placement, engine actor + follower, load, graceful stop."""
    c, ids = cluster
    configs = tmp_path / "configs"   # the catalogue, with the CPU thread binding on the (fake) H100s
    subprocess.run(["cp", "-r", str(ROOT / "configs"), str(configs)], check=True)
    hw = yaml.safe_load((configs / "hardware.yaml").read_text())
    hw["H100"]["env"] = dict(OMP_BIND)
    (configs / "hardware.yaml").write_text(yaml.safe_dump(hw))
    lanes = yaml.safe_load((configs / "lanes.yaml").read_text())  # the CPU build on fake GPUs, knowingly:
    lanes["sglang-cpu"]["hardware"] = "any"                       # validate refuses the shipped lane there
    (configs / "lanes.yaml").write_text(yaml.safe_dump(lanes))
    env = driver_env(c.address, RUNNER_CONFIG_DIR=str(configs))
    log = tmp_path / "run.log"
    p = start_driver(write_sweep(SWEEP), env, log)
    assert p.wait(900) == 0, log.read_text()[-6000:]

    (run,) = trial_runs(mlflow_env, "sglang-2node")
    assert run.data.tags["runner.status"] == "COMPLETED", run.data.tags
    assert run.data.params["placement.nodes"] == "2" and run.data.params["placement.bundles"] == "2"
    assert run.data.metrics["completed"] == 6 and run.data.metrics["total_output_tokens"] == 6 * 16, run.data.metrics
    spool = Path(os.environ["RUNNER_SPOOL"]) / "sglang-2node"
    system = json.loads(next(spool.glob(f"{run.data.tags['runner.trial_id']}/attempt-1/artifacts/system.json"))
                        .read_text())["engine"]
    launchers = system["launchers"]
    check_launchers(launchers, {ids["h100-a"], ids["h100-b"]})
    assert launchers[0]["node_id"] == system["node_id"] and launchers[0]["pid"] == system["pid"]
    assert sorted(system["bundle_nodes"][0]) == sorted({ids["h100-a"], ids["h100-b"]})
    assert not alive(launcher_pids(launchers))   # the driver stopped and killed them before it exited


LAYOUT = """
import json, os, sys
import ray
from ray.util import placement_group_table
from ray.util.placement_group import remove_placement_group
from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy
from runner.cluster import placement
from runner.engines.sglang_nodes import follower_options, host_port, launcher_args, node_layout
from runner.plan.trial import ServingConfig

ray.init(address=sys.argv[1])
nodes = ray.nodes()
cfg = ServingConfig(engine="sglang", model="m", model_path="m", hardware="GB200", tp=8)
req = placement.request_for(cfg, nodes)
out = {"bundles": req.bundles, "strategy": req.strategy, "actor_resources": req.actor_resources,
       "check": placement.check([req], nodes), "check_dp2": placement.check([req, req], nodes)}
pg = placement.create(req, "runner:sglang-mn:y-1-r0", nodes)
ray.get(pg.ready(), timeout=60)
table = placement_group_table(pg)["bundles_to_node_id"]
out["bundle_nodes"] = {str(k): v for k, v in table.items()}


@ray.remote
class Where:
    def where(self):
        ctx = ray.get_runtime_context()
        return {"node_id": ctx.get_node_id(), "ip": ray.util.get_node_ip_address(),
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "gpu_ids": sorted(str(g) for g in ray.get_gpu_ids())}


# the engine actor exactly as runner.cluster.scheduler places it, then each follower exactly as NodeGroup does
rank0 = Where.options(scheduling_strategy=PlacementGroupSchedulingStrategy(
    pg, placement_group_bundle_index=0, placement_group_capture_child_tasks=True), **req.actor_resources).remote()
here = ray.get(rank0.where.remote(), timeout=60)
mine = [b for b, n in table.items() if n == here["node_id"]]
layout = node_layout(table, cfg.tp, cfg.pp, rank0_bundle=mine[0])
out["layout"] = [list(x) for x in layout]
followers = [Where.options(**follower_options(pg, x.bundle_index)).remote() for x in layout[1:]]
out["where"] = [here] + ray.get([f.where.remote() for f in followers], timeout=60)
out["args"] = launcher_args(layout, host_port(here["ip"], 29500))
out["rank0_node_ip"] = next(n["NodeManagerAddress"] for n in nodes if n["NodeID"] == here["node_id"])
remove_placement_group(pg)
print("RESULT " + json.dumps(out))
"""


def test_sglang_tp8_on_4gpu_nodes_gets_one_bundle_and_one_launcher_per_node(cluster):
    """Placement only (no engine): the layout of TP=8 over two 4-GPU GB200 nodes, with the actors
    the runner would create, each on its node holding that node's four GPUs."""
    c, ids = cluster
    out = run_script(LAYOUT, c, timeout=300)
    gb200 = {ids["gb200-a"], ids["gb200-b"]}
    assert out["bundles"] == [{"GPU": 4.0, "CPU": 1.0}] * 2 and out["strategy"] == "STRICT_SPREAD", out
    assert out["actor_resources"] == {"num_gpus": 4.0, "num_cpus": 1.0} and out["check"] is None, out
    assert "2 replica(s)" in out["check_dp2"] and "2 separate nodes" in out["check_dp2"], out["check_dp2"]
    assert set(out["bundle_nodes"].values()) == gb200, out                  # one bundle per node
    assert out["layout"] == [[0, 0, 4], [1, 1, 4]], out                     # rank 0 = the engine actor's bundle 0
    where = out["where"]
    assert [w["node_id"] for w in where] == [out["bundle_nodes"]["0"], out["bundle_nodes"]["1"]], where
    for w in where:   # each launcher sees exactly its node's four GPUs
        assert len(w["gpu_ids"]) == 4 and sorted(w["cuda_visible_devices"].split(",")) == w["gpu_ids"], w
    addr = f"{out['rank0_node_ip']}:29500"
    assert out["args"] == [{"nnodes": 2, "node_rank": 0, "dist_init_addr": addr},
                           {"nnodes": 2, "node_rank": 1, "dist_init_addr": addr}], out["args"]
