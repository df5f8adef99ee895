"""What an autoscaling cluster can have: live nodes plus the node types it may still launch."""

import json

from runner.cluster import capacity, placement
from runner.plan import ServingConfig
from runner.sweep import nodetypes

H100 = nodetypes.NodeTypeSpec(resources={"GPU": 4, "CPU": 2, "accelerator_type:H100": 1},
                              labels={placement.LABEL_KEY: "H100"}, max_workers=2)
H200 = nodetypes.NodeTypeSpec(resources={"GPU": 4, "accelerator_type:H200": 1}, labels={placement.LABEL_KEY: "H200"},
                              max_workers=1)
HEAD = {"NodeID": "head", "Alive": True, "Resources": {"CPU": 2, "node:__internal_head__": 1}, "Labels": {}}


def _live_h100(i):
    return {"NodeID": f"h{i}", "Alive": True, "Resources": {"GPU": 4, "CPU": 2, "accelerator_type:H100": 1},
            "Labels": {placement.LABEL_KEY: "H100"}}


def _cfg(hw="H100", tp=1, dp=1):
    return ServingConfig(engine="vllm", model="m", model_path="/m", hardware=hw, tp=tp, dp=dp)


def test_launchable_nodes_are_each_types_headroom_within_the_cluster_cap():
    types = capacity.NodeTypes({"H100": H100, "H200": H200}, "test")
    extra = capacity.launchable(types, [HEAD])
    assert [n["NodeID"] for n in extra] == ["launchable:H100:0", "launchable:H100:1", "launchable:H200:0"]
    assert extra[2]["Resources"]["CPU"] == 4 * nodetypes.DEFAULT_CPUS_PER_GPU  # left to the provider: filled in
    # a live H100 takes one of its type's places; the cluster-wide cap counts worker nodes, not the head
    assert [n["NodeID"] for n in capacity.launchable(types, [HEAD, _live_h100(0)])] == \
        ["launchable:H100:0", "launchable:H200:0"]
    capped = capacity.NodeTypes({"H100": H100, "H200": H200}, "test", max_workers=2)
    # one worker node left under the cap: each type may still take it, none is cut off by name order
    assert [n["NodeID"] for n in capacity.launchable(capped, [HEAD, _live_h100(0)])] == \
        ["launchable:H100:0", "launchable:H200:0"]
    assert capacity.launchable(capped, [HEAD, _live_h100(0), _live_h100(1)]) == []


def test_feasibility_counts_launchable_nodes_and_says_which_are_which():
    types = capacity.NodeTypes({"H100": H100, "H200": H200}, "test")
    nodes = [HEAD, *capacity.launchable(types, [HEAD])]
    fits = [placement.request_for(_cfg(tp=4), nodes)]
    assert placement.check(fits, [HEAD]) is not None          # live nodes alone: nothing holds it
    assert placement.check(fits, nodes) is None                # a launchable H100 does
    three = [placement.request_for(_cfg(tp=4), nodes)] * 3     # 3 × 4 GPUs, 2 H100 nodes at most
    why = placement.check(three, nodes)
    assert "the cluster has 2 such node(s) (0 live, 2 launchable)" in why, why
    why = placement.check([placement.request_for(_cfg("B200"), nodes)], nodes)
    assert "launchable type H100" in why and "launchable type H200" in why, why
    # admission reserves launchable capacity, so two launches never count on one future node
    avail = capacity.available({"head": {"CPU": 2.0}}, capacity.launchable(types, [HEAD]))
    assert placement.reserve(fits, nodes, avail) and placement.reserve(fits, nodes, avail)
    assert not placement.reserve(fits, nodes, avail)


def test_node_types_come_from_the_sweep_then_the_heads_bootstrap_file(tmp_path):
    launcher = tmp_path / "cluster.yaml"
    launcher.write_text(json.dumps({"max_workers": 3, "head_node_type": "head", "available_node_types": {
        "head": {"resources": {"CPU": 2}, "node_config": {}},
        "gpu": {"resources": {"GPU": 4, "accelerator_type:H100": 1}, "labels": {placement.LABEL_KEY: "H100"},
                "min_workers": 0, "max_workers": 2, "node_config": {"InstanceType": "p5"}}}}))
    sweep = str(tmp_path / "s.yaml")
    got = capacity.node_types(sweep, nodetypes.ClusterSpec(config=str(launcher)))
    assert list(got.types) == ["gpu"] and got.max_workers == 3 and got.source == str(launcher)
    both = capacity.node_types(sweep, nodetypes.ClusterSpec(config=str(launcher), node_types={"gpu": H200}))
    assert both.types["gpu"] == H200                           # the sweep's own entry wins by name
    boot = capacity.node_types(sweep, None, bootstrap=str(launcher))
    assert list(boot.types) == ["gpu"] and boot.source == str(launcher)
    assert capacity.node_types(sweep, None, bootstrap=str(tmp_path / "none.yaml")).types == {}
    assert "gpu (0..2, 4 GPU H100, 32 CPU)" in got.describe()


def test_a_launcher_type_without_max_workers_takes_the_clusters_and_a_typo_is_refused(tmp_path):
    import pytest

    from runner.core import SweepSpecError

    launcher = tmp_path / "c.yaml"
    launcher.write_text(json.dumps({"max_workers": 5, "available_node_types": {
        "gpu": {"resources": {"GPU": 8}, "node_config": {}}}}))
    assert nodetypes.read_launcher_config("s.yaml", str(launcher))[0]["gpu"].max_workers == 5  # Ray's own default
    with pytest.raises(Exception, match="max_worker"):
        nodetypes.ClusterSpec.model_validate({"node_types": {"gpu": {"resources": {"GPU": 8}, "max_worker": 2}}})
    launcher.write_text(json.dumps({"available_node_types": {"gpu": {"resources": {"GPU": "eight"}}}}))
    with pytest.raises(SweepSpecError, match=r"available_node_types\.gpu\.resources"):
        nodetypes.read_launcher_config("s.yaml", str(launcher))


def test_a_request_of_no_type_never_counts_on_a_launchable_gpu_node():
    types = capacity.NodeTypes({"H100": H100}, "test")
    nodes = [HEAD, *capacity.launchable(types, [HEAD])]
    cpu = ServingConfig(engine="vllm", model="m", model_path="/m", hardware="cpu", tp=4)  # 4 CPUs: the head has 2
    assert placement.check([placement.request_for(cpu, nodes)], nodes) is not None  # not a GPU node launch
