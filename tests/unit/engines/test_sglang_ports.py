"""SGLang engines sharing a node get ports of their own: a base ``port`` whose derived range is free,
and an ``nccl_port`` below the ephemeral range, as SGLang 0.5.23 picks its own."""

import random
import socket

from runner.engines import sglang_nodes
from runner.engines.sglang import SglangEngine
from runner.plan import ServingConfig


def test_nccl_port_is_free_and_below_the_ephemeral_range():
    for _ in range(20):
        p = sglang_nodes.free_port_below_ephemeral()
        assert 22000 <= p <= min(29999, sglang_nodes._ephemeral_low() - 1) and sglang_nodes._bindable(p)


def test_a_base_port_whose_derived_ports_are_taken_is_passed_over(monkeypatch):
    held = socket.socket()
    held.bind(("0.0.0.0", 0))
    held.listen()
    taken = held.getsockname()[1]
    try:
        assert not sglang_nodes._bindable(taken)
        free = next(p for p in range(30000, 59000, 7) if all(sglang_nodes._bindable(q) for q in
                                                             (p, *range(p + 233, p + sglang_nodes.SGLANG_PORT_SPAN))))
        picks = iter([taken - 236, free])  # the first's DP-attention range holds the taken port
        monkeypatch.setattr(random, "randrange", lambda a, b: next(picks))
        assert sglang_nodes.free_port_range() == free
    finally:
        held.close()


def test_every_engine_gets_its_own_ports():
    cfg = ServingConfig(engine="sglang", model="tiny", model_path="/m", hardware="cpu", engine_args={})
    a, b = SglangEngine()._kwargs(cfg), SglangEngine()._kwargs(cfg)
    assert {"port", "nccl_port"} <= set(a)
    assert (a["port"], a["nccl_port"]) != (b["port"], b["nccl_port"])
    assert 30000 <= a["port"] < 60000 - sglang_nodes.SGLANG_PORT_SPAN and 22000 <= a["nccl_port"] <= 29999
