"""SGLang across nodes, pure: how a TP × PP replica splits over nodes, the launchers' ranks and
arguments, and the placement requests (one bundle per node, STRICT_SPREAD) against vLLM's."""

from __future__ import annotations

import pytest

from runner.cluster import placement
from runner.core.errors import SweepSpecError
from runner.engines.sglang_nodes import NodeLaunch, gpus_per_node, host_port, launcher_args, node_layout, split_nodes
from runner.plan.trial import ServingConfig
from runner.sweep.spec import load
from tests.unit.conftest import BASE

LABEL = placement.LABEL_KEY


def sglang_rank_ranges(tp: int, pp: int, nnodes: int, node_rank: int) -> tuple[range, range]:
    """SGLang 0.5.23's ``engine._calculate_rank_ranges``, transcribed (pp ranks, tp ranks of a node)."""
    pp_size_per_node = max(pp // nnodes, 1)
    nnodes_per_pp_rank = max(nnodes // pp, 1)
    pp_range = range(pp_size_per_node * (node_rank // nnodes_per_pp_rank),
                     pp_size_per_node * (node_rank // nnodes_per_pp_rank + 1))
    tp_size_per_node = tp // nnodes_per_pp_rank
    tp_range = range(tp_size_per_node * (node_rank % nnodes_per_pp_rank),
                     tp_size_per_node * (node_rank % nnodes_per_pp_rank + 1))
    return pp_range, tp_range


@pytest.mark.parametrize("tp", [1, 2, 3, 4, 6, 8, 16])
@pytest.mark.parametrize("pp", [1, 2, 3, 4])
def test_gpus_per_node_is_exactly_when_sglang_covers_every_rank_once(tp, pp):
    """gpus_per_node(tp, pp, n) is not None iff SGLang's own per-node rank ranges partition the
    TP × PP grid over n nodes, and then it is the size of every node's share."""
    for nnodes in range(1, tp * pp + 3):
        shares = [sglang_rank_ranges(tp, pp, nnodes, r) for r in range(nnodes)]
        ranks = [(p, t) for pr, tr in shares for p in pr for t in tr]
        exact = sorted(ranks) == [(p, t) for p in range(pp) for t in range(tp)]
        per = gpus_per_node(tp, pp, nnodes)
        assert (per is not None) == exact, (tp, pp, nnodes, per, shares)
        if exact:
            assert all(len(pr) * len(tr) == per for pr, tr in shares) and per * nnodes == tp * pp


@pytest.mark.parametrize("tp,pp,nnodes,per", [
    (8, 1, 2, 4), (16, 1, 2, 8), (8, 1, 8, 1), (8, 1, 3, None),   # TP only
    (4, 2, 2, 4), (4, 4, 2, 8), (2, 4, 4, 2),                      # whole pipeline stages per node
    (4, 2, 4, 2), (6, 2, 4, 3), (3, 2, 4, None),                   # a stage spans nodes
    (3, 2, 3, None),   # SGLang accepts 6 % 3 == 0 but would give node 2 the non-existent stage 2
    (2, 4, 3, None), (1, 1, 2, None), (0, 1, 1, None),
])
def test_gpus_per_node_examples(tp, pp, nnodes, per):
    assert gpus_per_node(tp, pp, nnodes) == per


@pytest.mark.parametrize("tp,pp,node_gpus,nnodes", [
    (8, 1, [4, 4], 2),              # TP=8 on 4-GPU nodes: 2 × 4
    (16, 1, [8, 8, 8], 2),          # fewest nodes
    (16, 1, [4, 4, 4, 4], 4),
    (16, 1, [4, 4, 4], None),       # 4 × 4 needs a fourth node; 8 × 2 and 16 × 1 need more still
    (12, 1, [8, 4, 4, 4], 3),       # 2 × 6 fits one node only; 3 × 4 fits
    (6, 1, [4, 4], 2),              # 3 GPUs per node
    (5, 1, [4, 4], None),           # a prime TP only splits one GPU per node: 5 nodes
    (5, 1, [4] * 5, 5),
    (4, 2, [4, 4], 2),              # one pipeline stage per node
    (2, 1, [1, 1], 2),
    (2, 1, [0, 0], None),
])
def test_split_nodes(tp, pp, node_gpus, nnodes):
    assert split_nodes(tp, pp, node_gpus) == nnodes


def test_node_layout_puts_the_engine_actors_bundle_first_then_index_order():
    table = {0: "n-a", 1: "n-b", 2: "n-c", 3: "n-d"}
    assert node_layout(table, 8, 1) == [NodeLaunch(0, 0, 2), NodeLaunch(1, 1, 2), NodeLaunch(2, 2, 2),
                                        NodeLaunch(3, 3, 2)]
    assert node_layout(table, 8, 1, rank0_bundle=2) == [NodeLaunch(0, 2, 2), NodeLaunch(1, 0, 2),
                                                        NodeLaunch(2, 1, 2), NodeLaunch(3, 3, 2)]
    assert node_layout({"1": "n-b", "0": "n-a"}, 4, 2) == [NodeLaunch(0, 0, 4), NodeLaunch(1, 1, 4)]  # str keys


@pytest.mark.parametrize("table,tp,rank0,fragment", [
    ({0: "n-a", 1: "n-a"}, 8, 0, "bundles share nodes"),
    ({0: "n-a", 1: ""}, 8, 0, "not placed"),
    ({0: "n-a", 1: None}, 8, 0, "not placed"),
    ({0: "n-a", 1: "n-b"}, 8, 5, "rank-0 bundle 5"),
    ({0: "n-a", 1: "n-b", 2: "n-c"}, 8, 0, "cannot be split evenly over 3 nodes"),
    ({}, 8, 0, "no bundles"),
])
def test_node_layout_refuses_what_sglang_cannot_run(table, tp, rank0, fragment):
    with pytest.raises(ValueError, match=fragment):
        node_layout(table, tp, 1, rank0_bundle=rank0)


def test_launcher_args_share_nnodes_and_address_with_one_rank_each():
    layout = node_layout({0: "n-a", 1: "n-b", 2: "n-c", 3: "n-d"}, 4, 2, rank0_bundle=3)
    args = launcher_args(layout, host_port("10.0.0.7", 29500))
    assert args == [{"nnodes": 4, "node_rank": r, "dist_init_addr": "10.0.0.7:29500"} for r in range(4)]
    assert host_port("fd00::7", 29500) == "[fd00::7]:29500"


def node(name: str, gpus: float, label: str = "H100", cpus: float = 8, alive: bool = True) -> dict:
    """One entry of ``ray.nodes()``: what placement reads."""
    return {"NodeID": name, "Alive": alive, "Labels": {LABEL: label}, "Resources": {"GPU": gpus, "CPU": cpus}}


def config(engine: str, tp: int, pp: int = 1, hardware: str = "H100") -> ServingConfig:
    return ServingConfig(engine=engine, model="m", model_path="m", hardware=hardware, tp=tp, pp=pp)


def test_sglang_larger_than_a_node_gets_one_bundle_per_node_strict_spread():
    nodes = [node("a", 4), node("b", 4), node("c", 4, label="H200")]
    req = placement.request_for(config("sglang", 8), nodes)
    assert req.bundles == [{"GPU": 4.0, "CPU": 1.0}, {"GPU": 4.0, "CPU": 1.0}]
    assert req.strategy == "STRICT_SPREAD" and req.spans_nodes and req.devices == 8 and req.reason is None
    assert req.actor_resources == {"num_gpus": 4.0, "num_cpus": 1.0}   # rank 0 holds its node's GPUs
    assert placement.check([req], nodes) is None

    pipeline = placement.request_for(config("sglang", 4, pp=2), nodes)   # one stage of TP=4 per node
    assert pipeline.bundles == req.bundles and pipeline.strategy == "STRICT_SPREAD"


def test_vllm_larger_than_a_node_keeps_one_gpu_bundles_packed():
    nodes = [node("a", 4), node("b", 4)]
    req = placement.request_for(config("vllm", 8), nodes)
    assert req.bundles == [{"GPU": 1.0, "CPU": 1.0}] + [{"GPU": 1.0}] * 7
    assert req.strategy == "PACK" and req.actor_resources == {"num_cpus": 1.0}
    assert placement.check([req], nodes) is None


def test_a_replica_that_fits_one_node_is_strict_pack_for_both_engines():
    nodes = [node("a", 4), node("b", 4)]
    for engine in ("sglang", "vllm"):
        req = placement.request_for(config(engine, 4), nodes)
        assert req.bundles == [{"GPU": 4.0, "CPU": 1.0}] and req.strategy == "STRICT_PACK" and not req.spans_nodes


def test_sglang_split_follows_the_nodes_that_exist():
    mixed = [node("big", 8), node("s1", 4), node("s2", 4), node("s3", 4)]
    req = placement.request_for(config("sglang", 12), mixed)   # 2 × 6 fits one node; 3 × 4 fits
    assert req.bundles == [{"GPU": 4.0, "CPU": 1.0}] * 3 and placement.check([req], mixed) is None


def test_sglang_shapes_that_need_more_nodes_are_unschedulable_with_the_reason():
    nodes = [node("a", 4), node("b", 4)]
    prime = placement.request_for(config("sglang", 5), nodes)   # 5 launchers of 1 GPU
    assert prime.bundles == [{"GPU": 1.0, "CPU": 1.0}] * 5 and prime.strategy == "STRICT_SPREAD"
    why = placement.check([prime], nodes)
    assert "5 bundles of 1 GPU on 5 separate nodes" in why and "one launcher per node" in why, why
    assert "2 such node(s)" in why
    # vLLM packs the same 5 GPUs over the two nodes
    assert placement.check([placement.request_for(config("vllm", 5), nodes)], nodes) is None

    one = [node("a", 4)]
    why = placement.check([placement.request_for(config("sglang", 8), one)], one)
    assert "2 bundles of 4 GPU on 2 separate nodes" in why, why


def test_a_request_that_can_never_be_placed_carries_its_reason_to_check_pack_and_create():
    gpuless = [node("a", 0), node("b", 0)]   # labelled H100, but no GPU
    req = placement.request_for(config("sglang", 2), gpuless)
    assert req.reason and "at least 1 H100 GPU" in req.reason and "TP=2" in req.reason
    assert placement.check([req], gpuless) == req.reason
    assert placement.pack([req], {"a": {"GPU": 8.0, "CPU": 8.0}}) is False
    with pytest.raises(ValueError, match="at least 1 H100 GPU"):
        placement.create(req, "runner:t:x", gpuless)
    # a cluster without the type at all still says that first
    assert "no node has" in placement.check([req], [node("c", 8, label="H200")])


def test_pack_puts_strict_spread_bundles_on_distinct_nodes():
    req = placement.request_for(config("sglang", 8), [node("a", 8), node("b", 8)])
    assert req.bundles == [{"GPU": 8.0, "CPU": 1.0}]   # fits one 8-GPU node: STRICT_PACK
    spread = placement.Request("H100", "gpu", [{"GPU": 4.0, "CPU": 1.0}] * 2, "STRICT_SPREAD", "H100")
    packed = placement.Request("H100", "gpu", [{"GPU": 4.0, "CPU": 1.0}] * 2, "PACK", "H100")

    cap = {"a": {"GPU": 8.0, "CPU": 8.0}, "b": {"GPU": 8.0, "CPU": 8.0}}
    assert placement.pack([spread], cap)
    assert cap == {"a": {"GPU": 4.0, "CPU": 7.0}, "b": {"GPU": 4.0, "CPU": 7.0}}   # one bundle on each
    assert placement.pack([spread], cap) and cap["a"]["GPU"] == cap["b"]["GPU"] == 0   # DP: a second replica
    assert not placement.pack([spread], cap)

    lone = {"a": {"GPU": 8.0, "CPU": 8.0}}
    assert placement.pack([packed], dict(lone)) and not placement.pack([spread], {"a": {"GPU": 8.0, "CPU": 8.0}})


def test_fits_now_honours_strict_spread_against_what_is_free():
    nodes = [node("a", 4), node("b", 4)]
    req = placement.request_for(config("sglang", 4, pp=2), nodes)
    free = {"a": {"GPU": 4.0, "CPU": 8.0}, "b": {"GPU": 4.0, "CPU": 8.0}}
    assert placement.fits_now([req], nodes, free)
    assert not placement.fits_now([req], nodes, {**free, "b": {"GPU": 2.0, "CPU": 8.0}})
    assert not placement.fits_now([req, req], nodes, free)


def test_reserve_takes_a_launch_from_nodes_of_its_type_only_and_all_or_nothing():
    nodes = [node("a", 8, label="H200"), node("b", 8), node("c", 8)]
    req = placement.request_for(config("vllm", 4), nodes)   # H100, one 4-GPU group per replica
    free = {"a": {"GPU": 8.0, "CPU": 8.0}, "b": {"GPU": 8.0, "CPU": 8.0}, "c": {"GPU": 2.0, "CPU": 8.0}}
    assert placement.reserve([req], nodes, free)
    assert free["a"]["GPU"] == 8.0 and free["b"]["GPU"] == 4.0   # not on the H200 node listed first
    before = {k: dict(v) for k, v in free.items()}
    assert not placement.reserve([req, req], nodes, free)   # DP=2 needs 2 × 4 H100 GPUs: only 4 + 2 left
    assert free == before                                   # a failed reservation takes nothing


def test_the_multi_node_arguments_are_the_runners_not_the_sweeps(sweep_file):
    for key in ("nnodes", "node_rank", "dist_init_addr"):
        text = BASE.replace("engine: vllm", "engine: sglang").replace("  enforce_eager: true\n", "") \
            .replace("  max_num_seqs: [8, 32]", f"  {key}: 2")
        with pytest.raises(SweepSpecError, match="the runner sets it from placement"):
            load(sweep_file(text))
