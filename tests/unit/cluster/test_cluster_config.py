"""ray_cluster.yaml is a valid Ray cluster-launcher config with one 8-GPU worker type per GPU."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import yaml

from runner.sweep import catalog

ROOT = Path(__file__).resolve().parents[3]
GPUS = ("H100", "H200", "B200", "RTX-PRO-6000")
LABEL = "ray.io/accelerator-type"


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((ROOT / "ray_cluster.yaml").read_text())


@pytest.fixture(scope="module")
def prepared(raw) -> dict:
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = prepare_config(copy.deepcopy(raw))
    validate_config(cfg)  # raises on unknown keys or wrong types
    return cfg


def test_validates_with_the_launchers_own_checks(prepared):
    assert prepared["provider"]["type"] == "aws" and prepared["provider"]["region"]
    assert prepared["head_node_type"] in prepared["available_node_types"]


def test_unknown_keys_are_rejected(raw):
    """The check has teeth: a misspelt key fails validation."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    bad = copy.deepcopy(raw)
    bad["available_node_types"]["h100"]["resourcez"] = {"GPU": 8}
    with pytest.raises(Exception):  # noqa: B017 - jsonschema's ValidationError, re-raised as ValueError
        validate_config(prepare_config(bad))


@pytest.mark.parametrize("gpu", GPUS)
def test_each_gpu_type_has_an_8_gpu_worker_type(prepared, gpu):
    types = prepared["available_node_types"]
    matches = [name for name, t in types.items() if t["resources"].get(f"accelerator_type:{gpu}")]
    assert len(matches) == 1, f"{gpu}: worker types {matches}"
    t = types[matches[0]]
    assert t["resources"]["GPU"] == 8
    assert t["resources"][f"accelerator_type:{gpu}"] == 1
    assert t["labels"] == {LABEL: gpu}
    assert t["node_config"]["InstanceType"]
    assert matches[0] != prepared["head_node_type"] and t["max_workers"] >= 1


def test_names_match_the_hardware_catalogue(prepared):
    """The runner selects nodes by the catalogue's label; the config must advertise the same names."""
    hw = catalog.hardware()
    for gpu in GPUS:
        assert hw[gpu]["label"] == gpu and hw[gpu]["gpus_per_node"] == 8


def test_head_has_no_gpu_and_every_node_installs_the_runner(prepared):
    head = prepared["available_node_types"][prepared["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0
    assert any("pip install" in c and "[vllm]" in c for c in prepared["worker_setup_commands"])
    assert any("pip install" in c for c in prepared["head_setup_commands"])
    assert any(v == "." for v in prepared["file_mounts"].values())


def test_nodes_get_a_python_the_engines_accept_and_the_pinned_engine(prepared):
    """vLLM 0.32/0.33 need Python >= 3.11 (Ubuntu 22.04's python3 is 3.10: pip would fall back to
    vLLM 0.31); the venv every node runs Ray from is made by python3.11, and the engine extra pins
    the catalogue's vLLM."""
    import re

    venv = [c for c in prepared["setup_commands"] if "-m venv" in c]
    assert venv and all(re.search(r"python3\.1[1-9] -m venv", c) for c in venv), venv
    assert not [c for c in prepared["setup_commands"] if re.search(r"(^|[ ;&])python3 -m venv", c)]
    pins = re.findall(r'^vllm = \[(.*)\]', (ROOT / "pyproject.toml").read_text(), re.M)
    assert pins == [f'"vllm=={catalog.engines()["vllm"]["version"]}"'], pins
