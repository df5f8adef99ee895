"""A model's weights and KV-cache footprint from its ``config.json`` alone, never its weights.

Units: parameter counts are counts, sizes are bytes. ``Shape`` is what the fit planner needs of a
Hugging Face ``config.json`` (or its ``text_config``): dense, MoE (experts, shared experts, dense
leading layers), MLA, sliding-window layers, multi-token-prediction layers, and the checkpoint's
quantization. The formulas follow the modules vLLM builds (``model_executor/models/llama.py``,
``mixtral.py``, ``qwen3_moe.py``, ``deepseek_v2.py``, ``glm4_moe.py``):

- attention (MHA/GQA/MQA): q ``h × H·d``, k and v ``h × K·d`` each, o ``H·d × h``; MLA: q (through
  ``q_lora_rank`` when set) ``h × r_q + r_q × H·(d_nope + d_rope)``, kv_a ``h × (r_kv + d_rope)``,
  kv_b ``r_kv × H·(d_nope + d_v)``, o ``H·d_v × h``;
- gated MLP: ``3 × h × i``; an MoE layer: ``E × 3 × h × i_moe`` plus shared experts and the router
  ``h × E``; ``first_k_dense_replace`` leading layers are dense;
- embeddings ``V × h``, and the LM head again unless ``tie_word_embeddings``; norms ``2h`` a layer.

Invariants: ``params()`` counts what vLLM loads (MTP layers are apart: vLLM loads them only as a
speculative draft); the checkpoint holds both. Quantized checkpoints store their linear layers at
``bytes_per_weight`` (bits + group scales); embeddings, LM head, norms and routers stay at the
model's dtype, as vLLM's quantization methods leave them.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict

#: Bytes per element of a dtype or KV-cache dtype name (vLLM's ``STR_DTYPE_TO_TORCH_DTYPE`` names).
DTYPE_BYTES = {"float32": 4.0, "float": 4.0, "bfloat16": 2.0, "float16": 2.0, "half": 2.0, "fp8": 1.0,
               "fp8_e4m3": 1.0, "fp8_e5m2": 1.0, "fp8_inc": 1.0, "fp8_per_token_head": 1.0,
               "int8_per_token_head": 1.0, "int4_per_token_head": 0.5, "nvfp4": 0.5625, "nvfp4_4over6": 0.5625}

#: vLLM's ``fp8_ds_mla`` stores, per token and layer, 512 fp8 latents, 4 float32 scales and 64 bf16
#: RoPE values (``vllm/v1/attention/backends/mla/flashmla_sparse.py``): 656 bytes.
FP8_DS_MLA_BYTES = 656


class Shape(BaseModel):
    """The architecture facts the planner uses; ``None``/0 where a model has no such part."""

    model_config = ConfigDict(frozen=True)

    hidden: int
    layers: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    tied: bool
    dtype: str
    intermediate: int          # dense MLP width
    dense_layers: int          # layers with a dense MLP (all of them for a dense model)
    experts: int = 0
    moe_intermediate: int = 0
    shared_intermediate: int = 0  # total width of the shared experts of an MoE layer
    top_k: int = 0
    kv_lora_rank: int = 0      # MLA when > 0
    q_lora_rank: int = 0
    qk_nope_head_dim: int = 0
    qk_rope_head_dim: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0    # tokens a sliding-window layer keeps, 0 when none
    sliding_layers: int = 0
    full_layers: int = -1      # full-attention layers; -1: every layer that is not sliding
    mtp_layers: int = 0
    quant_method: str = ""
    quant_bits: float = 0.0
    quant_group: int = 0
    quant_block: int = 0       # elements per scale of block-wise fp8 (128 × 128 → 16384)
    quant_attention: bool = True  # attention projections quantized too
    quant_experts_only: bool = False

    @property
    def mla(self) -> bool:
        return self.kv_lora_rank > 0


def _int(cfg: dict[str, Any], *keys: str, default: int | None = None) -> int:
    for k in keys:
        v = cfg.get(k)
        if isinstance(v, int) and not isinstance(v, bool):
            return v
    if default is None:
        raise ValueError(f"config.json has none of {', '.join(keys)}")
    return default


def shape(cfg: dict[str, Any]) -> Shape:
    """The ``Shape`` of a ``config.json`` dict; ``ValueError`` naming a missing key."""
    text = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    hidden, layers = _int(text, "hidden_size"), _int(text, "num_hidden_layers")
    heads = _int(text, "num_attention_heads")
    experts = _int(text, "n_routed_experts", "num_local_experts", "num_experts", default=0)
    moe_inter = _int(text, "moe_intermediate_size", default=0) or (_int(text, "intermediate_size") if experts else 0)
    shared = _int(text, "n_shared_experts", default=0) * moe_inter or _int(text, "shared_expert_intermediate_size",
                                                                          default=0)
    dense = layers if not experts else min(layers, _int(text, "first_k_dense_replace", default=0)
                                           + len(text.get("mlp_only_layers") or []))
    types = text.get("layer_types") or []
    window = _int(text, "sliding_window", default=0) if text.get("sliding_window") else 0
    if text.get("use_sliding_window") is False:  # Qwen's configs carry a window they do not use
        window = 0
    pattern = _int(text, "sliding_window_pattern", default=0)
    if types:  # per-layer types; linear-attention / mamba layers hold a state, not KV per token
        sliding = sum(1 for t in types if t == "sliding_attention") if window else 0
        full = sum(1 for t in types if t == "full_attention") + (0 if window else sum(
            1 for t in types if t == "sliding_attention"))
    else:  # Gemma 3 / Cohere 2: one full layer in every `pattern`; Gemma 2: every other; else all
        every = pattern or (2 if text.get("model_type") == "gemma2" else 0)
        sliding = (layers - layers // every if every else layers) if window else 0
        full = layers - sliding
    q = cfg.get("quantization_config") or text.get("quantization_config") or {}
    method, bits, group, block = _quant(q)
    not_conv = " ".join(str(m) for m in (q.get("modules_to_not_convert") or q.get("ignore") or []))
    return Shape(hidden=hidden, layers=layers, heads=heads, kv_heads=_int(text, "num_key_value_heads", default=heads),
                 head_dim=_int(text, "head_dim", default=hidden // heads), vocab=_int(text, "vocab_size"),
                 tied=bool(text.get("tie_word_embeddings", cfg.get("tie_word_embeddings", False))),
                 dtype=str(text.get("torch_dtype") or text.get("dtype") or cfg.get("torch_dtype") or "bfloat16"),
                 intermediate=_int(text, "intermediate_size", default=0), dense_layers=dense, experts=experts,
                 moe_intermediate=moe_inter, shared_intermediate=shared,
                 top_k=_int(text, "num_experts_per_tok", "moe_topk", default=0),
                 kv_lora_rank=_int(text, "kv_lora_rank", default=0), q_lora_rank=_int(text, "q_lora_rank", default=0),
                 qk_nope_head_dim=_int(text, "qk_nope_head_dim", default=0),
                 qk_rope_head_dim=_int(text, "qk_rope_head_dim", default=0),
                 v_head_dim=_int(text, "v_head_dim", default=0), sliding_window=window, sliding_layers=sliding,
                 full_layers=full,
                 mtp_layers=_int(text, "num_nextn_predict_layers", default=0), quant_method=method, quant_bits=bits,
                 quant_group=group, quant_block=block, quant_attention="attn" not in not_conv,
                 quant_experts_only=method == "mxfp4")


def _quant(q: dict[str, Any]) -> tuple[str, float, int, int]:
    """(method, bits, group size, elements per block scale) of a ``quantization_config``."""
    method = str(q.get("quant_method") or "").lower()
    if not method:
        return "", 0.0, 0, 0
    if method in ("awq", "gptq", "awq_marlin", "gptq_marlin", "auto-round"):
        group = int(q.get("group_size", q.get("q_group_size", 128)))
        return method, float(q.get("bits", q.get("w_bit", 4))), max(group, 0), 0  # -1: one scale a channel
    if method == "fp8":
        blk = q.get("weight_block_size") or []
        return method, 8.0, 0, int(blk[0]) * int(blk[1]) if len(blk) == 2 else 0
    if method == "mxfp4":
        return method, 4.0, 32, 0
    if method == "compressed-tensors":
        for group in (q.get("config_groups") or {}).values():
            w = (group or {}).get("weights") or {}
            bits = float(w.get("num_bits", 8))
            gs = w.get("group_size") or 0
            blk = w.get("block_structure") or []
            return method, bits, int(gs) if bits < 8 else 0, int(blk[0]) * int(blk[1]) if len(blk) == 2 else 0
    raise ValueError(f"quantization_config.quant_method {method!r} is not one the planner knows "
                     "(awq, gptq, fp8, mxfp4, compressed-tensors)")


class Params(BaseModel):
    """Parameter counts by part (what vLLM loads; ``mtp`` apart)."""

    model_config = ConfigDict(frozen=True)

    embedding: int   # embeddings + LM head
    attention: int   # all layers
    mlp: int         # dense MLPs and shared experts
    experts: int     # routed experts
    small: int       # norms and routers: never quantized
    mtp: int         # multi-token-prediction layers (checkpoint only)

    @property
    def total(self) -> int:
        return self.embedding + self.attention + self.mlp + self.experts + self.small


def _attention(s: Shape) -> int:
    h = s.hidden
    if s.mla:
        q_dim = s.heads * (s.qk_nope_head_dim + s.qk_rope_head_dim)
        q = h * s.q_lora_rank + s.q_lora_rank * q_dim if s.q_lora_rank else h * q_dim
        return (q + h * (s.kv_lora_rank + s.qk_rope_head_dim) + s.kv_lora_rank * s.heads * (s.qk_nope_head_dim
                + s.v_head_dim) + s.heads * s.v_head_dim * h)
    return 2 * h * s.heads * s.head_dim + 2 * h * s.kv_heads * s.head_dim


def params(s: Shape) -> Params:
    """Parameter counts of ``s`` by part."""
    h, moe_layers = s.hidden, s.layers - s.dense_layers
    expert_layer = s.experts * 3 * h * s.moe_intermediate
    one_moe = _attention(s) + expert_layer + 3 * h * s.shared_intermediate + h * s.experts + 2 * h
    mtp = s.mtp_layers * (one_moe + 2 * h * h + 2 * h + 2 * s.vocab * h)  # + its own embedding and head copies
    return Params(embedding=s.vocab * h * (1 if s.tied else 2), attention=s.layers * _attention(s),
                  mlp=s.dense_layers * 3 * h * s.intermediate + moe_layers * 3 * h * s.shared_intermediate,
                  experts=moe_layers * expert_layer, small=s.layers * (2 * h + h * s.experts) + h, mtp=mtp)


def bytes_per_weight(s: Shape, quantization: str | None = None) -> float:
    """Bytes per weight of a quantized linear layer: the bits, plus a float16 scale and a packed
    zero per group (AWQ/GPTQ), a float32 scale per block (block fp8) or an 8-bit scale per 32
    (mxfp4). ``quantization``: the engine argument, for a checkpoint that is not quantized."""
    if not s.quant_method:
        if quantization in (None, "", "None"):
            return DTYPE_BYTES.get(s.dtype, 2.0)
        if quantization in ("fp8", "fp8_per_block", "ptpc_fp8"):
            return 1.0
        if quantization == "bitsandbytes":
            return 0.5 + 4 / 64  # 4-bit NF4 with a float32 absmax per 64
        raise ValueError(f"engine_args.quantization {quantization!r} on an unquantized checkpoint: the planner "
                         "knows fp8 and bitsandbytes")
    b = s.quant_bits / 8
    if s.quant_method == "mxfp4":
        return b + 1 / 32
    if s.quant_group:
        return b + (2 + b) / s.quant_group
    return b + (4 / s.quant_block if s.quant_block else 0.0)


def weight_bytes(s: Shape, quantization: str | None = None, *, checkpoint: bool = False) -> float:
    """Bytes of the weights vLLM loads (``checkpoint``: of the files, MTP layers included)."""
    p, dt = params(s), DTYPE_BYTES.get(s.dtype, 2.0)
    q = bytes_per_weight(s, quantization)
    quantized = p.experts + (0 if s.quant_experts_only else p.mlp + (p.attention if s.quant_attention else 0))
    plain = p.embedding + p.small + (p.total - p.embedding - p.small - quantized)
    total = quantized * q + plain * dt
    if checkpoint and p.mtp:
        total += p.mtp * (q if not s.quant_experts_only else dt)
    return total


def kv_bytes_per_token(s: Shape, kv_cache_dtype: str, tp: int = 1) -> tuple[float, float]:
    """(full-attention, sliding-window) KV bytes one token takes on one GPU, summed over layers.

    MHA/GQA: ``2 × K_gpu × d × bytes`` a layer, with ``K_gpu = max(1, K // tp)`` (KV heads are
    replicated, not split, when TP exceeds them: vLLM's ``get_num_kv_heads``); MLA: one latent of
    ``r_kv + d_rope`` a layer, the same on every TP rank. ``kv_cache_dtype`` ``auto``: the model's.
    """
    if kv_cache_dtype == "fp8_ds_mla" and s.mla:
        per_layer = float(FP8_DS_MLA_BYTES)
    else:
        b = DTYPE_BYTES.get(s.dtype if kv_cache_dtype in ("auto", "", None) else kv_cache_dtype)
        if b is None:
            raise ValueError(f"kv_cache_dtype {kv_cache_dtype!r} is not one the planner knows")
        heads = max(1, s.kv_heads // tp)
        per_layer = (s.kv_lora_rank + s.qk_rope_head_dim) * b if s.mla else 2 * heads * s.head_dim * b
    full = s.full_layers if s.full_layers >= 0 else s.layers - s.sliding_layers
    return per_layer * full, per_layer * s.sliding_layers
