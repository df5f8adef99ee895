"""Lanes Ray builds on each node from a pinned spec; a lane never serves a hardware kind it was not
built for; container lanes are refused (they cannot work: see configs/lanes.yaml's header)."""

import pytest

from runner.cluster import lanes
from runner.core import RunnerError, SweepSpecError
from runner.sweep import catalog, load

SWEEP = """
name: t
engine: sglang
models: [{id: m, path: org/model}]
hardware: %s
lanes: {sglang: %s}
workload: {input_len: 8, output_len: 8, concurrency: 1}
"""


def test_gpu_lanes_are_pinned_specs_ray_builds_per_node():
    rt, env = lanes.runtime_env("sglang-gpu")
    assert rt == {"uv": {"packages": ["sglang==0.5.23"]}} and env == {}
    assert lanes.runtime_env("vllm-deepseek")[0] == {"uv": {"packages": ["vllm==0.33.0"]}}
    assert all("image_uri" not in e for e in catalog.lanes().values())
    assert lanes.kind("sglang-cpu") == "cpu" and lanes.kind("sglang-gpu") == "gpu" and lanes.kind("default") == "any"


def test_a_lane_on_the_wrong_hardware_kind_is_refused_at_validate(tmp_path):
    f = tmp_path / "s.yaml"
    f.write_text(SWEEP % ("H100", "sglang-cpu"))
    with pytest.raises(SweepSpecError) as e:
        load(str(f))
    assert "lanes.sglang" in str(e.value) and "sglang-cpu serves cpu only" in str(e.value) and "H100" in str(e.value)
    f.write_text(SWEEP % ("cpu", "sglang-gpu"))
    with pytest.raises(SweepSpecError, match="sglang-gpu serves gpu only"):
        load(str(f))
    f.write_text(SWEEP % ("H100", "sglang-gpu"))
    assert load(str(f)).lanes == {"sglang": "sglang-gpu"}


def test_a_container_lane_is_refused(monkeypatch):
    monkeypatch.setattr(catalog, "lanes", lambda: {"box": {"image_uri": "vllm/vllm-openai:v0.32.0"}})
    with pytest.raises(RunnerError, match="container lane"):
        lanes.runtime_env("box")
