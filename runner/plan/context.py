"""Trials that can never succeed because a request does not fit the engine's context.

A request of ``input_len`` prompt tokens asking for ``output_len`` tokens needs
``input_len + output_len`` positions. vLLM stops a sequence at ``max_model_len`` (the engine
API: a short output, which validity marks INVALID; its OpenAI server: a 400), and refuses to
start at all when ``max_model_len`` exceeds what the model's ``config.json`` derives
(``config/model.py`` ``_get_and_verify_max_len``) unless ``VLLM_ALLOW_LONG_MAX_MODEL_LEN=1``.
SGLang's ``context_length`` plays the same part. ``check`` finds both before any launch.

Invariants: lengths are the longest a load point can draw (``range_ratio`` widens them in the
vllm convention; the sglang convention never exceeds L); a file dataset's lengths are not known
before the engine tokenises it, so it is not checked; ``api: endpoint`` servers keep their own
limits. The model's own limit is read only for local models (``paths.model_max_len``).
"""

from __future__ import annotations

from typing import Any

from runner.core import SweepSpecError
from runner.plan.trial import LoadPoint, Trial
from runner.sweep import paths

#: The engine argument that sets the context length, per engine.
CONTEXT_ARG = {"vllm": "max_model_len", "sglang": "context_length"}


def longest(load: LoadPoint) -> tuple[int, int] | None:
    """(prompt, output) tokens of the longest request the load point can draw; None if unknown."""
    d = load.dataset or {}
    if d.get("kind") == "file":
        return None
    r = float(d.get("range_ratio", 0.0))
    if d.get("range_convention", "vllm") == "vllm" and r > 0:
        return int(load.input_len * (1 + r)), int(load.output_len * (1 + r))
    return load.input_len, load.output_len


def check(file: str, trials: list[Trial], env: dict[str, str] | None = None) -> None:
    """Raise ``SweepSpecError`` for the first trial whose requests cannot fit its context."""
    own: dict[str, Any] = {}
    for t in trials:
        s = t.serving
        arg = CONTEXT_ARG.get(s.engine)
        if arg is None or s.api == "endpoint":
            continue
        if s.model_path not in own:
            own[s.model_path] = paths.model_max_len(s.model_path)
        model = own[s.model_path]
        value = s.engine_args.get(arg)
        set_len = value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None
        if (set_len is not None and model is not None and set_len > model[0] and s.engine == "vllm"
                and (env or {}).get("VLLM_ALLOW_LONG_MAX_MODEL_LEN") != "1"):
            raise SweepSpecError(file, f"engine_args.{arg}", set_len,
                                 f"at most {model[0]} for model {s.model} ({model[1]}); vLLM refuses to start "
                                 "above it unless env VLLM_ALLOW_LONG_MAX_MODEL_LEN=1 (positions beyond it give "
                                 "nan or out-of-bounds errors)")
        limit, source = (set_len, f"{arg} {set_len} (engine_args)") if set_len else (model or (None, ""))
        lengths = longest(t.load)
        if limit is None or lengths is None or sum(lengths) <= limit:
            continue
        key = "workload.profiles" if t.load.profile else "workload.input_len"
        raise SweepSpecError(file, key, f"input {lengths[0]} + output {lengths[1]} = {sum(lengths)} tokens "
                                        f"({t.load.label()}, model {s.model})",
                             f"at most {limit} tokens per request for {s.engine}: {source}; shorten the lengths, "
                             f"raise {arg}, or exclude the combination")
