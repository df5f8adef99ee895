"""Engine arguments the runner sets itself are refused at validate, with the reason."""

import pytest

from runner.core import SweepSpecError
from runner.sweep import load

VLLM = """
name: t
engine: vllm
models: [{id: m, path: org/model}]
hardware: H100
engine_args: {%s: %s}
workload: {input_len: 8, output_len: 8, concurrency: 1}
"""


@pytest.mark.parametrize("engine, arg, value, why", [
    ("vllm", "distributed_executor_backend", "ray", "mp within a node, ray across nodes"),
    ("vllm", "data_parallel_size_local", 2, "data parallel is shape.dp"),
    ("vllm", "data_parallel_backend", "ray", "placement groups of its own"),
    ("vllm", "data_parallel_address", "10.0.0.1", "data parallel is shape.dp"),
    ("vllm", "node_rank", 1, "placement"),
    ("sglang", "use_ray", "true", "one launcher per node"),
    ("sglang", "node_rank", 1, "the nodes of a replica spanning nodes"),
    ("sglang", "dist_init_addr", "10.0.0.1:5000", "rank 0's node IP"),
    ("sglang", "port", 30000, "a free port on its node"),
    ("sglang", "nccl_port", 29000, "below the ephemeral range"),
])
def test_a_reserved_argument_is_refused_with_its_reason(tmp_path, engine, arg, value, why):
    f = tmp_path / "s.yaml"
    f.write_text((VLLM % (arg, value)).replace("engine: vllm", f"engine: {engine}"))
    with pytest.raises(SweepSpecError) as e:
        load(str(f))
    msg = str(e.value)
    assert f"engine_args.{arg}" in msg and "not here: the runner sets it from" in msg and why in msg, msg


def test_the_sweeps_engine_environment_leaves_what_the_runner_sets_alone(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(VLLM % ("max_num_seqs", 8) + "env: {NCCL_SOCKET_IFNAME: eth0, FI_PROVIDER: efa}\n")
    assert load(str(f)).env == {"NCCL_SOCKET_IFNAME": "eth0", "FI_PROVIDER": "efa"}
    for bad in ("CUDA_VISIBLE_DEVICES", "RAY_ADDRESS", "VLLM_CACHE_ROOT"):
        f.write_text(VLLM % ("max_num_seqs", 8) + f"env: {{{bad}: x}}\n")
        with pytest.raises(SweepSpecError, match=f"env.{bad}"):
            load(str(f))
