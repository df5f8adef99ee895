"""The fit planner against published sizes and the studies' deployment choices.

``tests/data/configs``: real architectures written from their public ``config.json`` files (the
AWQ and FP8 checkpoints' ``quantization_config`` as those checkpoints name their method: AWQ
4-bit, group 128; block-wise FP8, 128 × 128). Published parameter counts (model cards):
Llama 3.1 70B 70,553,706,496 (its safetensors index: 141,107,412,992 bytes in bf16); Mixtral 8×7B
46.7 B; Qwen3-235B-A22B 235 B; DeepSeek-V3 671 B (685 B with its MTP module); GLM-4.5-Air 106 B;
GLM-4.6 355 B (with MTP); Qwen3-Coder-480B-A35B 480 B.
"""

import json
from pathlib import Path

import pytest

from runner.plan import architecture, fit
from runner.plan.trial import ServingConfig
from runner.sweep import catalog

DATA = Path(__file__).resolve().parents[2] / "data" / "configs"


def shape(name: str) -> architecture.Shape:
    return architecture.shape(json.loads((DATA / f"{name}.json").read_text()))


@pytest.mark.parametrize(("name", "published", "checkpoint"), [
    ("llama-3.1-70b", 70.55e9, False), ("mixtral-8x7b", 46.7e9, False), ("qwen3-235b-a22b", 235e9, False),
    ("deepseek-v3", 671e9, False), ("deepseek-v3", 685e9, True), ("glm-4.5-air-awq", 106e9, False),
    ("glm-4.6-fp8", 355e9, True), ("qwen3-coder-480b-a35b-awq", 480e9, False)])
def test_parameter_counts_match_the_model_cards_within_3_percent(name, published, checkpoint):
    p = architecture.params(shape(name))
    total = p.total + (p.mtp if checkpoint else 0)
    assert abs(total / published - 1) < 0.03, f"{name}: {total / 1e9:.2f} B against {published / 1e9:.2f} B"


def test_bf16_weight_bytes_are_the_published_checkpoint_size():
    assert architecture.params(shape("llama-3.1-70b")).total == 70_553_706_496  # exact: every tensor counted
    assert architecture.weight_bytes(shape("llama-3.1-70b")) == 141_107_412_992
    assert abs(architecture.weight_bytes(shape("mixtral-8x7b")) / 93.4e9 - 1) < 0.03


def test_quantized_weights_take_their_bits_plus_scales_and_keep_embeddings_at_bf16():
    s = shape("qwen3-coder-480b-a35b-awq")
    p = architecture.params(s)
    per = architecture.bytes_per_weight(s)
    assert per == pytest.approx(0.5 + 2.5 / 128)  # int4 + a float16 scale and a packed 4-bit zero per 128
    quantized = p.experts + p.mlp + p.attention
    assert architecture.weight_bytes(s) == pytest.approx(quantized * per + (p.embedding + p.small) * 2)
    ds = shape("deepseek-v3")
    assert architecture.bytes_per_weight(ds) == pytest.approx(1 + 4 / 128**2)  # fp8 + a float32 scale a block
    # dynamic fp8 of an unquantized checkpoint (engine argument quantization: fp8): 1 byte a weight
    assert architecture.weight_bytes(shape("llama-3.1-70b"), "fp8") < 0.52 * 141.1e9


def test_kv_bytes_per_token_gqa_replicates_heads_mla_is_not_split():
    s = shape("llama-3.1-70b")  # 80 layers, 8 KV heads of 128, bf16
    assert architecture.kv_bytes_per_token(s, "auto", 1) == (80 * 2 * 8 * 128 * 2, 0)
    assert architecture.kv_bytes_per_token(s, "fp8", 8)[0] == 80 * 2 * 1 * 128
    assert architecture.kv_bytes_per_token(s, "auto", 16) == architecture.kv_bytes_per_token(s, "auto", 8)
    ds = shape("deepseek-v3")  # one latent of 512 + 64 a layer, the same on every rank
    assert architecture.kv_bytes_per_token(ds, "auto", 1)[0] == 61 * 576 * 2
    assert architecture.kv_bytes_per_token(ds, "auto", 8)[0] == 61 * 576 * 2
    assert architecture.kv_bytes_per_token(ds, "fp8_ds_mla", 8)[0] == 61 * 656


def test_sliding_window_layers_are_capped_at_the_window():
    cfg = {**json.loads((DATA / "llama-3.1-70b.json").read_text()), "sliding_window": 4096,
           "layer_types": ["sliding_attention", "full_attention"] * 40}
    s = architecture.shape(cfg)
    full, swa = architecture.kv_bytes_per_token(s, "auto", 1)
    assert full == swa == 40 * 2 * 8 * 128 * 2
    f = fit.Fit(verdict="FITS", reason="", kv_gb=10.0, kv_bytes_per_token=full, swa_bytes_per_token=swa, window=4096)
    assert f.request_bytes(16384) == full * 16384 + swa * 4096
    assert architecture.shape({**cfg, "use_sliding_window": False}).sliding_layers == 0


def serving(model: str, hardware: str, tp: int, **args) -> ServingConfig:
    return ServingConfig(engine="vllm", model=model, model_path=model, hardware=hardware, tp=tp,
                         engine_args={"max_model_len": 16384, "kv_cache_dtype": "fp8",
                                      "gpu_memory_utilization": 0.9, **args})


STUDY = [("glm-4.5-air-awq", 1), ("qwen3-coder-480b-a35b-awq", 4), ("glm-4.6-fp8", 8)]
GPUS = ["RTX-PRO-6000", "H100", "H200", "B200"]


@pytest.mark.parametrize(("name", "tp"), STUDY)
def test_the_blackwell_studys_shapes_are_the_smallest_that_fit_every_gpu(name, tp):
    """The study ran each model at the TP above on all four GPUs (max_model_len 16384, fp8 KV):
    it fits on each of them there, and at half that TP it does not fit on the H100."""
    hw = catalog.hardware()
    for gpu in GPUS:
        f = fit.predict(serving(name, gpu, tp), hw[gpu], shape(name))
        assert f.verdict == "FITS", (name, gpu, f.summary())
        assert f.max_concurrency(16000) >= 1
    if tp > 1:
        f = fit.predict(serving(name, "H100", tp // 2), hw["H100"], shape(name))
        assert f.verdict == "WONT_FIT" and "GB per GPU" in f.reason, f.summary()


def test_a_context_the_kv_cache_cannot_hold_once_wont_fit():
    hw = catalog.hardware()["RTX-PRO-6000"]
    s = shape("llama-3.1-70b")  # 70.6 GB of bf16 a GPU at TP 2: ~19 GB of 93 left for KV, ~118k tokens
    f = fit.predict(serving("llama-3.1-70b", "RTX-PRO-6000", 2, max_model_len=131072, kv_cache_dtype="auto"), hw, s)
    assert f.verdict == "WONT_FIT" and "max_model_len 131,072" in f.reason, f.summary()
    assert 100_000 < f.kv_capacity_tokens < 131_072
    short = fit.predict(serving("llama-3.1-70b", "RTX-PRO-6000", 2, kv_cache_dtype="auto"), hw, s)
    assert short.verdict == "FITS" and short.max_concurrency(16384) == int(short.kv_gb * 1e9 // (16384 * 163840))
    # unset max_model_len: the model's own limit is vLLM's default
    assert fit.predict(serving("x", "RTX-PRO-6000", 2, max_model_len=None, kv_cache_dtype="auto"), hw, s,
                       model_max_len=131072).verdict == "WONT_FIT"


def test_cpu_kv_space_is_the_budget_and_unknown_without_one():
    hw = catalog.hardware()["cpu"]
    s = shape("mixtral-8x7b")
    f = fit.predict(serving("m", "cpu", 1, kv_cache_dtype="auto", max_model_len=4096), hw, s,
                    env={"VLLM_CPU_KVCACHE_SPACE": "3"})
    assert f.verdict == "FITS" and f.kv_capacity_tokens == 2**30 // (32 * 2 * 8 * 128 * 2)  # the catalogue's 1 GiB
    two = fit.predict(serving("m", "cpu", 1, kv_cache_dtype="auto", max_model_len=4096), {**hw, "env": {}}, s,
                      env={"VLLM_CPU_KVCACHE_SPACE": "2"})
    assert two.kv_capacity_tokens == 2 * f.kv_capacity_tokens
    assert fit.predict(serving("m", "cpu", 1), {**hw, "env": {}}, s, env={}).verdict == "UNKNOWN"
    assert fit.predict(serving("m", "cpu", 1), hw, None, why_unknown="hub offline").reason == "hub offline"


def test_what_the_engines_do_with_edge_settings():
    hw = catalog.hardware()
    s = shape("llama-3.1-70b")
    # vLLM's max_model_len -1 / auto shrinks the length to what fits: no refusal to predict
    for auto in (-1, "auto"):
        sv = serving("x", "RTX-PRO-6000", 2, max_model_len=auto, kv_cache_dtype="auto")
        assert fit.predict(sv, hw["RTX-PRO-6000"], s, model_max_len=131072).verdict == "FITS"
    # SGLang warns and caps request lengths instead of refusing, and its fraction excludes activations
    sg = ServingConfig(engine="sglang", model="x", model_path="x", hardware="RTX-PRO-6000", tp=2,
                       engine_args={"context_length": 131072})
    f = fit.predict(sg, hw["RTX-PRO-6000"], s)
    assert f.verdict == "FITS" and f.reserve_gb == 0.0
    # a float32 checkpoint is served in bfloat16 unless dtype says otherwise
    f32 = s.model_copy(update={"dtype": "float32"})
    assert fit.predict(serving("x", "H200", 4), hw["H200"], f32).weights_gb == pytest.approx(
        fit.predict(serving("x", "H200", 4), hw["H200"], s).weights_gb)
    assert fit.predict(serving("x", "H200", 4, dtype="float32"), hw["H200"], f32).weights_gb == pytest.approx(
        2 * fit.predict(serving("x", "H200", 4), hw["H200"], s).weights_gb)


def test_per_channel_gptq_patterned_and_all_sliding_windows_and_broken_configs(tmp_path):
    cfg = json.loads((DATA / "llama-3.1-70b.json").read_text())
    gptq = architecture.shape({**cfg, "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": -1}})
    assert architecture.bytes_per_weight(gptq) == 0.5  # one scale a channel: negligible
    gemma3 = architecture.shape({**cfg, "sliding_window": 1024, "sliding_window_pattern": 6})
    assert (gemma3.full_layers, gemma3.sliding_layers) == (13, 67)  # 80 layers, one full in every 6
    mistral = architecture.shape({**cfg, "sliding_window": 4096})
    full, swa = architecture.kv_bytes_per_token(mistral, "fp8", 8)  # as serving() sets it
    assert full == 0 and swa > 0
    f = fit.predict(serving("x", "H100", 8, max_model_len=32768), catalog.hardware()["H100"], mistral)
    assert f.kv_capacity_tokens == int(f.kv_gb * 1e9 // swa) and f.max_concurrency(32768) > 0
    hybrid = architecture.shape({**cfg, "layer_types": ["linear_attention"] * 60 + ["full_attention"] * 20})
    assert architecture.kv_bytes_per_token(hybrid, "auto", 1)[0] == 20 * 2 * 8 * 128 * 2
    (tmp_path / "config.json").write_text(json.dumps({**cfg, "quantization_config": {"quant_method": "awq",
                                                                                        "bits": None}}))
    from runner.plan.trial import LoadPoint, Trial

    t = Trial(serving=serving("x", "H100", 8).model_copy(update={"model_path": str(tmp_path)}),
              load=LoadPoint(input_len=8, output_len=8, concurrency=1, num_prompts=1))
    [f] = fit.for_trials([t]).values()  # never a traceback: the planner cannot tell, and says why
    assert f.verdict == "UNKNOWN" and "TypeError" in f.reason and str(tmp_path) in f.reason
