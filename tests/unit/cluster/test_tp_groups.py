"""A vLLM replica spanning nodes never splits a TP group across nodes: admission hands each node
whole TP groups, and a placed group is checked against vLLM's own rank order."""

from runner.cluster import placement
from runner.plan import ServingConfig


def _node(nid, gpus):
    return {"NodeID": nid, "Alive": True, "Resources": {"GPU": float(gpus), "CPU": 16.0},
            "Labels": {placement.LABEL_KEY: "H100"}}


def _req(tp, pp, nodes):
    cfg = ServingConfig(engine="vllm", model="m", model_path="/m", hardware="H100", tp=tp, pp=pp)
    return placement.request_for(cfg, nodes)


NODES = [_node("a", 8), _node("b", 8), _node("c", 8)]
FRAGMENTED = {"a": {"GPU": 4.0, "CPU": 16.0}, "b": {"GPU": 8.0, "CPU": 16.0}, "c": {"GPU": 4.0, "CPU": 16.0}}


def test_whole_tp_groups_go_to_a_node_each():
    four = [_node("a", 4), _node("b", 4), _node("c", 4)]
    req = _req(2, 4, four)  # 8 GPUs over nodes of 4: one bundle per GPU, TP groups of 2 kept whole
    assert req.strategy == "PACK" and len(req.bundles) == 8 and req.group == 2
    layouts: list[list[str]] = []
    avail = {"a": {"GPU": 3.0, "CPU": 16.0}, "b": {"GPU": 4.0, "CPU": 16.0}, "c": {"GPU": 3.0, "CPU": 16.0}}
    assert placement.reserve([req], four, avail, layouts)  # a node-blind pack would put ranks 2, 3 on a and b
    assert layouts == [["a", "a", "b", "b", "b", "b", "c", "c"]]
    assert avail["a"]["GPU"] == 1.0 and avail["c"]["GPU"] == 1.0
    assert placement.split_groups(req, dict(enumerate(layouts[0]))) is None


def test_a_shape_whose_tp_group_fits_no_free_node_waits_instead_of_splitting():
    req = _req(8, 2, NODES)  # TP 8 x PP 2 on 4 + 8 + 4 free GPUs: 16 free, but one whole TP group only
    assert req.group == 8
    assert not placement.reserve([req], NODES, {k: dict(v) for k, v in FRAGMENTED.items()})
    assert placement.check([req], NODES) is None  # it can fit the cluster once GPUs free up: not UNSCHEDULABLE


def test_a_placed_group_is_checked_in_vllms_rank_order():
    req = _req(8, 2, NODES)
    split = {i: n for i, n in enumerate(["a"] * 4 + ["b"] * 8 + ["c"] * 4)}
    why = placement.split_groups(req, split)
    assert why and "TP=8 needs a multiple of 8 on each node" in why and "a: 4" in why, why
    assert placement.split_groups(req, {i: n for i, n in enumerate(["b"] * 8 + ["a"] * 8)}) is None
    # the engine's node first, then the others by node id: whole groups whichever node the engine is on
    assert placement.split_groups(req, {i: n for i, n in enumerate(["c"] * 8 + ["a"] * 8)}, engine_node="c") is None


def test_tp_larger_than_every_node_spans_nodes_in_whole_slices():
    four = [_node("a", 4), _node("b", 4), _node("c", 4), _node("d", 4)]
    req = _req(16, 1, four)  # as on GB200 NVL72 (4 GPUs a node, NVLink across them)
    assert req.group == 4 and placement.check([req], four) is None
    assert placement.tp_unit(5, 4) == 1 and placement.tp_unit(8, 4) == 4 and placement.tp_unit(6, 4) == 3
    assert placement.tp_unit(4, 8) == 4 and placement.tp_unit(8, 0) == 1


def test_the_openai_client_bundle_is_not_a_rank():
    from dataclasses import replace

    four = [_node("a", 4), _node("b", 4)]
    req = _req(4, 2, four)
    served = replace(req, bundles=[*req.bundles, {"CPU": 1.0}])  # api openai: a client bundle at the end
    where = {i: n for i, n in enumerate(["a"] * 4 + ["b"] * 4 + ["b"])}
    assert placement.split_groups(served, where) is None
    assert placement.split_groups(req, {}) is None  # a group Ray no longer knows: nothing to check


def test_a_pinned_group_waiting_to_be_placed_is_counted_where_it_was_pinned():
    four = [_node("a", 4), _node("b", 4), _node("c", 4)]
    req = _req(2, 4, four)
    avail = {"a": {"GPU": 4.0, "CPU": 16.0}, "b": {"GPU": 4.0, "CPU": 16.0}, "c": {"GPU": 4.0, "CPU": 16.0}}
    layout = ["b", "b", "b", "b", "c", "c", "c", "c"]  # where create() pinned it
    assert placement.retake([req], [layout], four, avail)
    assert avail["a"]["GPU"] == 4.0 and avail["b"]["GPU"] == 0.0 and avail["c"]["GPU"] == 0.0
    assert not placement.retake([req], [layout], four, avail)  # b and c are taken: it really waits
