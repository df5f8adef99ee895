"""API modes, pure: the sweep keys, their grid axis and ids, and what each mode asks of the cluster."""

from __future__ import annotations

import pytest

from runner.cluster import apimode, placement
from runner.core.errors import SweepSpecError
from runner.plan import grid
from runner.plan.trial import ServingConfig
from runner.report import rows
from runner.sweep.spec import load
from tests.unit.conftest import BASE

ENDPOINT = BASE.replace("engine_args:\n  enforce_eager: true\n  max_num_seqs: [8, 32]\n", "") + \
    "api: endpoint\nendpoint: {base_url: 'http://127.0.0.1:8000', model: served}\n"


def test_api_is_an_axis_and_the_default_keeps_old_ids(sweep_file):
    plain = grid.expand(load(sweep_file(BASE)))
    both = grid.expand(load(sweep_file(BASE + "api: [engine, openai]\n")))
    assert len(both) == 2 * len(plain)
    engine_ids = {t.trial_id for t in both if t.serving.api == "engine"}
    assert engine_ids == {t.trial_id for t in plain}  # api: engine is the neutral value: ids unchanged
    openai = [t for t in both if t.serving.api == "openai"]
    assert not engine_ids & {t.trial_id for t in openai}
    assert len({t.serving.serving_config_id for t in both}) == 4  # the HTTP stack is its own engine launch
    assert "via openai" in openai[0].serving.label() and openai[0].params()["api"] == "openai"


def test_endpoint_configs_carry_the_server_and_no_engine_args(sweep_file):
    trials = grid.expand(load(sweep_file(ENDPOINT)))
    assert len(trials) == 2  # two concurrencies, one serving configuration
    s = trials[0].serving
    assert s.api == "endpoint" and s.engine_args == {} and s.lane == "default"
    assert s.endpoint == {"base_url": "http://127.0.0.1:8000", "model": "served", "api_key_env": "OPENAI_API_KEY"}
    p = trials[0].params()
    assert p["endpoint.base_url"] == "http://127.0.0.1:8000" and p["endpoint.model"] == "served"
    other = grid.expand(load(sweep_file(ENDPOINT.replace("8000", "9000"))))
    assert other[0].trial_id != trials[0].trial_id  # another server is another measurement
    keyed = grid.expand(load(sweep_file(ENDPOINT.replace("model: served}", "model: served, api_key_env: K}"))))
    assert keyed[0].trial_id == trials[0].trial_id  # which variable holds the key does not count
    default = grid.expand(load(sweep_file(ENDPOINT.replace(", model: served", ""))))
    assert default[0].serving.endpoint["model"] == "tiny"  # the served name defaults to the model id


def _node(gpus: float, cpus: float = 8, label: str = "H100") -> dict:
    return {"NodeID": f"n{gpus}{label}", "Alive": True, "Resources": {"GPU": gpus, "CPU": cpus},
            "Labels": {placement.LABEL_KEY: label}}


def _config(api: str, hardware: str = "H100", tp: int = 2, endpoint: dict | None = None) -> ServingConfig:
    return ServingConfig(engine="vllm", model="m", model_path="/m", hardware=hardware, tp=tp, api=api,
                         endpoint=endpoint)


def test_each_mode_asks_the_cluster_for_what_it_runs():
    nodes = [_node(8)]
    engine = apimode.request(_config("engine"), nodes)
    assert engine.bundles == [{"GPU": 2.0, "CPU": 1.0}]
    openai = apimode.request(_config("openai"), nodes)
    assert openai.bundles == [{"GPU": 2.0, "CPU": 1.0}, {"CPU": apimode.CLIENT_CPUS}]
    assert openai.strategy == "STRICT_PACK" and openai.label == "H100"  # the client sits on the engine's node
    assert apimode.client_bundle(openai) == 1 and apimode.serve_host(openai) == "127.0.0.1"
    cpu = apimode.request(_config("openai", "cpu", tp=1), nodes)
    assert cpu.bundles == [{"CPU": 1.0}, {"CPU": apimode.CLIENT_CPUS}]
    ep = apimode.request(_config("endpoint", endpoint={"base_url": "http://h:1", "model": "m"}), nodes)
    assert ep.bundles == [{"CPU": apimode.CLIENT_CPUS}] and ep.label is None and ep.devices == 0
    assert apimode.client_bundle(ep) == 0
    # an endpoint needs no GPU of its type: it fits a cluster without any
    assert placement.check([ep], [_node(0, label="none")]) is None
    assert placement.check([engine], [_node(0, label="none")]) is not None
    # the client's CPU counts: a node with one CPU cannot hold engine + client
    assert placement.check([openai], [_node(8, cpus=1)]) is not None
    assert placement.check([engine], [_node(8, cpus=1)]) is None


def test_a_server_spanning_nodes_listens_on_the_engine_actors_own_node_address():
    spanning = apimode.request(_config("openai", tp=16), [_node(8), _node(8)])
    assert spanning.spans_nodes
    # the driver never picks an address (its node is not the engine's): the actor resolves it on its node
    assert apimode.serve_host(spanning) == apimode.NODE_ADDRESS
    import ray

    assert apimode.bind_host(apimode.NODE_ADDRESS) == ray.util.get_node_ip_address()
    assert apimode.bind_host("127.0.0.1") == "127.0.0.1"


def test_served_name_and_report_engine_label():
    assert apimode.served_name(_config("openai")) == "m"
    named = ServingConfig(engine="vllm", model="m", model_path="/m", hardware="cpu", api="openai",
                          engine_args={"served_model_name": "x"})
    assert apimode.served_name(named) == "x"
    assert apimode.served_name(_config("endpoint", endpoint={"base_url": "http://h", "model": "s"})) == "s"
    assert rows.engine({"engine": "vllm", "api": "openai"}) == "vllm via openai"
    assert rows.engine({"engine": "vllm", "api": "engine", "lane": "default"}) == "vllm"


def test_text_prompts_are_for_http_modes_and_keep_lengths(sweep_file):
    from tokenizers import Tokenizer

    from runner.engines.openai_http import same_length_text
    from runner.measure import dataset
    from runner.tinymodel import build

    with pytest.raises(SweepSpecError, match=r"workload\.prompt_format"):
        load(sweep_file(BASE + "  prompt_format: text\n"))
    text = grid.expand(load(sweep_file(ENDPOINT.replace("  concurrency: [1, 8]\n",
                                                        "  concurrency: [1, 8]\n  prompt_format: text\n"))))
    ids = grid.expand(load(sweep_file(ENDPOINT)))
    assert {t.load.prompt_format for t in text} == {"text"} and text[0].trial_id != ids[0].trial_id
    assert "prompt_format" not in ids[0].load.identity()  # the neutral value leaves ids unchanged
    model = build("models/tiny-llama")
    tok = Tokenizer.from_file(str(model / "tokenizer.json"))
    prompts = dataset.random_token_prompts(50, 128, tok.get_vocab_size(), [0, 1, 2], seed=0)
    exact = 0
    for p in prompts:
        t, ok = same_length_text(tok, p)
        n = len(tok.encode(t, add_special_tokens=False).ids)
        assert (n == 128) == ok and abs(n - 128) <= 3
        exact += ok
    assert exact >= 40  # most random prompts survive the round trip at their exact length
