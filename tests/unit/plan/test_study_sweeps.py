"""The shipped sweep files: each loads, expands to the trial and launch counts worked out by hand
from its study's axes, and keeps the properties that make it that study."""

import functools
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from runner.measure.dataset import lengths
from runner.plan.grid import expand, group
from runner.plan.trial import Trial
from runner.sweep import catalog
from runner.sweep.spec import SweepSpec, load

ROOT = Path(__file__).resolve().parents[3]
SWEEPS = ROOT / "sweeps"
FILES = sorted(p.name for p in SWEEPS.glob("*.yaml"))

# file → (trials, serving configurations = engine launches), by hand from each study's axes.
EXPECTED = {
    # 2 max_num_seqs × 1 shape = 2 configs; × 2 concurrency = 4 trials
    "cpu-demo.yaml": (4, 2),
    # air: 4 hw × 1 shape × EP off = 4; qwen: 4 hw × 2 EP = 8; glm-4.6: 4 hw × 2 EP = 8 → 20 configs
    # 20 configs × 3 concurrency (64, 128, 256) = 60 trials
    "blackwell-8k8k.yaml": (60, 20),
    # scout, m2.1: tp8 + 2 pp2 (EP off/on) + 2 dp2 (EP off/on) + tp4 = 6 each → 12
    # v4-flash: 5 (no tp4); v4-pro: 5 + eager fallback at tp8 = 6 → 12 + 5 + 6 = 23 configs
    # 23 configs × 3 profiles = 69 trials
    "h200-three-profiles.yaml": (69, 23),
    # tp8×dp1, tp1×dp8, tp1×dp16, tp1×dp32, tp1×dp64, tp1×dp96 = 6 configs; 1 load each = 6 trials
    "dp-vs-tp.yaml": (6, 6),
    # 2 (quant+KV off/on) × 3 (default, compile, no CUDA graph) = 6 configs; × 4 rates = 24 trials
    "sglang-rps-sweep.yaml": (48, 12),
    # 2 hw (GB200, GB300) × 2 shapes (tp8, tp16; EP on) = 4 configs; × 13 concurrency (2^0..2^12) = 52
    "disagg-prefill-decode.yaml": (52, 4),
}

STUDY_FILES = sorted(set(EXPECTED) - {"cpu-demo.yaml"})


@functools.cache
def _spec(name: str) -> SweepSpec:
    return load(SWEEPS / name)  # the function `python -m runner validate` calls


@functools.cache
def _trials(name: str) -> tuple[Trial, ...]:
    return tuple(expand(_spec(name)))


def _configs(name: str):
    return [ts[0].serving for ts in group(_trials(name)).values()]


def _shape(s) -> tuple[int, int, int, bool]:
    return (s.tp, s.pp, s.dp, s.ep)


def test_every_sweep_file_has_expected_counts():
    assert sorted(EXPECTED) == FILES, "add the hand-computed counts of a new sweep file to EXPECTED"


@pytest.mark.parametrize("name", FILES)
def test_counts(name):
    trials = _trials(name)
    assert (len(trials), len(group(trials))) == EXPECTED[name]
    assert len({t.trial_id for t in trials}) == len(trials)


@pytest.mark.parametrize("name", STUDY_FILES)
def test_study_file_header_names_study_and_trial_count(name):
    text = (SWEEPS / name).read_text()
    assert text.startswith("# Study "), "the header names the study"
    assert "Question:" in text
    n, m = EXPECTED[name]
    assert f"{m} serving configurations" in text and f"{n} trials" in text


def test_blackwell():
    trials = _trials("blackwell-8k8k.yaml")
    assert all(t.load.num_prompts == 2 * t.load.concurrency for t in trials)
    assert {t.load.concurrency for t in trials} == {64, 128, 256}
    assert {(t.load.input_len, t.load.output_len) for t in trials} == {(8000, 8000)}
    assert all(t.load.ignore_eos for t in trials)
    configs = _configs("blackwell-8k8k.yaml")
    assert {c.hardware for c in configs} == {"RTX-PRO-6000", "H100", "H200", "B200"}
    assert all(c.gpus == 8 and c.pp == 1 for c in configs)                # always one full node
    shapes = {(c.model, c.tp, c.dp) for c in configs}
    assert shapes == {("glm-4.5-air-awq", 1, 8), ("qwen3-coder-480b-awq", 4, 2), ("glm-4.6-fp8", 8, 1)}
    ep = {m: {c.ep for c in configs if c.model == m} for m in {c.model for c in configs}}
    assert ep == {"glm-4.5-air-awq": {False}, "qwen3-coder-480b-awq": {False, True}, "glm-4.6-fp8": {False, True}}
    assert all(c.engine_args == {"max_model_len": 16384, "kv_cache_dtype": "fp8", "gpu_memory_utilization": 0.9,
                                 "max_num_seqs": 512} for c in configs)
    assert _spec("blackwell-8k8k.yaml").prices == {"RTX-PRO-6000": 0.93, "H100": 1.91, "H200": 2.06, "B200": 2.68}


def test_h200_three_profiles():
    name = "h200-three-profiles.yaml"
    profiles = ["latency-1024x256-c1", "serve-1024x256-c16", "longctx-8192x256-c4"]
    assert _spec(name).workload.profiles == profiles
    assert _spec(name).workload.input_len is None                          # the profiles only, no custom grid
    known = catalog.profiles()
    for ts in group(_trials(name)).values():
        assert [t.load.profile for t in ts] == profiles                    # every launch runs all three, light first
        for t in ts:
            p = known[t.load.profile]
            assert (t.load.input_len, t.load.output_len, t.load.concurrency, t.load.num_prompts) == (
                p["input_len"], p["output_len"], p["concurrency"], p["num_prompts"])
            assert t.load.request_rate is None and t.load.temperature == 0.0
    configs = _configs(name)
    assert {c.gpus for c in configs} == {4, 8, 16}                         # 4×, 8× and 16× H200
    assert all(c.hardware == "H200" for c in configs)
    sixteen = {_shape(c) for c in configs if c.gpus == 16}
    assert sixteen == {(8, 2, 1, False), (8, 2, 1, True), (8, 1, 2, False), (8, 1, 2, True)}
    for model in ("llama-4-scout", "minimax-m2.1", "deepseek-v4-flash", "deepseek-v4-pro"):
        mine = [c for c in configs if c.model == model]
        assert {c.gpus for c in mine} >= {8, 16}, model                     # every model on both 8× and 16×
    assert {c.model for c in configs if c.gpus == 4} == {"llama-4-scout", "minimax-m2.1"}
    lanes = {c.model: c.lane for c in configs}
    assert lanes == {"llama-4-scout": "default", "minimax-m2.1": "default",
                     "deepseek-v4-flash": "vllm-deepseek", "deepseek-v4-pro": "vllm-deepseek"}
    eager = [c for c in configs if c.engine_args.get("enforce_eager")]
    assert [(c.model, _shape(c)) for c in eager] == [("deepseek-v4-pro", (8, 1, 1, False))]  # the fallback


def test_dp_vs_tp():
    trials = _trials("dp-vs-tp.yaml")
    shapes = sorted((t.serving.tp, t.serving.dp) for t in trials)
    assert shapes == [(1, 8), (1, 16), (1, 32), (1, 64), (1, 96), (8, 1)]
    assert all(t.load.concurrency == 128 * t.serving.gpus for t in trials)  # equal load per GPU
    one_node = [t for t in trials if t.serving.gpus == 8]
    assert len(one_node) == 2 and one_node[0].load == one_node[1].load     # TP 8 and DP 8 at the same load
    assert all(t.serving.engine_args == {"speculative_config": {"method": "mtp", "num_speculative_tokens": 1},
                                         "kv_cache_dtype": "fp8", "max_model_len": 4096} for t in trials)
    assert all((t.load.input_len, t.load.output_len) == (1024, 512) for t in trials)
    assert all(t.serving.hardware == "B200" and not t.serving.ep for t in trials)


def test_sglang_rps_sweep():
    trials = _trials("sglang-rps-sweep.yaml")
    assert all(t.serving.engine == "sglang" and t.serving.lane == "sglang-gpu" for t in trials)
    assert {t.load.request_rate for t in trials} == {1.0, 2.0, 4.0, 8.0}
    assert all(t.load.num_prompts == 300 * t.load.request_rate for t in trials)
    assert all(t.load.concurrency is None for t in trials)                 # open loop, no cap
    # the study's --random-range-ratio 1, written in SGLang's own convention, and exact lengths there
    sgl = {"range_ratio": 1.0, "range_convention": "sglang"}
    assert all((t.load.input_len, t.load.output_len, t.load.dataset) == (1024, 1024, sgl) for t in trials)
    assert lengths(5, 1024, 1.0, "sglang", np.random.default_rng(0)) == [1024] * 5
    for c in _configs("sglang-rps-sweep.yaml"):
        a = c.engine_args
        assert c.tp in (8, 16) and c.hardware == "H200"    # TP 16: two 8-GPU nodes (--nnodes 2)
        assert a["attn_dp_size"] == c.tp and a["mem_fraction_static"] == 0.8   # --enable-dp-attention
        assert (a["quantization"], a["kv_cache_dtype"]) in {(None, "auto"), ("fp8", "fp8_e5m2")}
        assert not (a["enable_torch_compile"] and a["disable_cuda_graph"])


def test_disagg_prefill_decode():
    trials = _trials("disagg-prefill-decode.yaml")
    for ts in group(trials).values():
        assert [t.load.concurrency for t in ts] == [2**i for i in range(13)]  # 1..4096 on one launch
    assert all(t.load.num_prompts == max(4 * t.load.concurrency, 16) for t in trials)
    assert all((t.load.input_len, t.load.output_len) == (8192, 1024) for t in trials)
    configs = _configs("disagg-prefill-decode.yaml")
    assert {(c.hardware, c.tp) for c in configs} == {("GB200", 8), ("GB200", 16), ("GB300", 8), ("GB300", 16)}
    assert all(c.ep and c.engine == "vllm" for c in configs)
    assert _spec("disagg-prefill-decode.yaml").prices == {"GB200": 2.21, "GB300": 2.65}
    text = (SWEEPS / "disagg-prefill-decode.yaml").read_text()
    assert "NOT SUPPORTED YET" in text and "Disaggregated prefill/decode" in text


@pytest.mark.parametrize("name", FILES)
def test_cli_validate_and_plan(name):
    n, m = EXPECTED[name]
    path = str(SWEEPS / name)
    v = subprocess.run([sys.executable, "-m", "runner", "validate", path], capture_output=True, text=True, cwd=ROOT)
    assert v.returncode == 0, v.stderr
    assert f"valid; {n} trials in {m} serving configurations" in v.stdout
    p = subprocess.run([sys.executable, "-m", "runner", "plan", "--json", path], capture_output=True, text=True,
                       cwd=ROOT)
    assert p.returncode == 0, p.stderr
    rows = json.loads(p.stdout)
    assert len(rows) == n and len({r["serving_config_id"] for r in rows}) == m
