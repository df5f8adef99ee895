"""Sweep files: the frozen pydantic models and ``load()``.

A sweep file is YAML. Any value written as a list on an *axis* key (``engine``,
``hardware``, ``shape.*``, ``workload.input_len/output_len/concurrency``, each
``engine_args`` value) is a grid axis; the grid is their Cartesian product minus ``exclude``.
A literal list value for an engine argument is written as a one-element axis: ``[[1, 2]]``.

``load()`` does no I/O beyond reading the file and the catalogues under ``configs/``. Every
problem is raised as ``SweepSpecError`` naming the file, the key path, the bad value and the
allowed values; no other exception escapes for bad input.
"""

from __future__ import annotations

import difflib
import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError

from runner.core import SweepSpecError, redact
from runner.sweep import catalog, compat, excludes, paths, schema_errors, yamlfile
from runner.sweep.expr import ExprError, evaluate
from runner.sweep.nodetypes import ClusterSpec, node_types
from runner.sweep.numbers import BOUNDS, Float, Int, closed_loop, non_finite

T = TypeVar("T")


def _as_list(v: Any) -> Any:
    return v if isinstance(v, list) else [v]


#: A grid axis: a scalar or a non-empty list of values; always a list after validation.
Axis = Annotated[list[T], BeforeValidator(_as_list), Field(min_length=1)]
Parallel = Int(1, BOUNDS["parallel"])
Tokens = Int(1, BOUNDS["tokens"])
Seconds = Float(gt=0, le=BOUNDS["seconds"])
Ms = Float(gt=0, le=BOUNDS["ms"])
Rate = Annotated[Float(gt=0, le=BOUNDS["rate"]) | Literal["inf"], BeforeValidator(closed_loop)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ModelSpec(Strict):
    id: str = Field(min_length=1, pattern=r"^[A-Za-z0-9._/-]+$",
                    description="Stable model name; part of the trial id.")
    path: str = Field(min_length=1, description="Local path or hub id passed to the engine.")
    engine_args: dict[str, Any] = Field(default_factory=dict,
                                        description="Per-model engine-argument overrides.")
    lane: str | None = Field(default=None, description="Engine lane for this model (configs/lanes.yaml).")


class ShapeSpec(Strict):
    tp: Axis[Parallel] = Field(default=[1], description="Tensor-parallel size.")
    pp: Axis[Parallel] = Field(default=[1], description="Pipeline-parallel size.")
    dp: Axis[Int(1, BOUNDS["replicas"])] = Field(default=[1], description="Independent engine replicas.")
    ep: Axis[bool] = Field(default=[False], description="Expert parallel on/off.")


class SLOSpec(Strict):
    ttft_ms: Ms | None = None
    tpot_ms: Ms | None = None
    e2el_ms: Ms | None = None


class DatasetSpec(Strict):
    """Where prompts come from. Lengths are token counts from the engine's own tokenizer."""

    kind: Literal["random", "prefix", "file"] = "random"
    range_ratio: Float(ge=0, le=1) = Field(default=0.0,
                               description="vllm: 0 = exact lengths, < 1; sglang: 1 = exact lengths.")
    range_convention: Literal["vllm", "sglang"] = Field(
        default="vllm", description="vllm: lengths in [L(1-r), L(1+r)]; sglang: lengths in [max(1, L*r), L], "
                                    "as sglang.bench_serving (so r = 0 there means 1..L, not exact).")
    prefix_len: Int(0, BOUNDS["tokens"]) = Field(default=0, description="kind=prefix: tokens shared within a group.")
    groups: Int(1, BOUNDS["requests"]) = Field(default=1, description="kind=prefix: how many distinct shared prefixes.")
    path: str | None = Field(default=None, description="kind=file: a JSONL or ShareGPT JSON file.")
    format: Literal["jsonl", "sharegpt"] = "jsonl"


class WorkloadSpec(Strict):
    input_len: Axis[Tokens] | None = Field(default=None, description="Prompt length in tokens.")
    output_len: Axis[Tokens] | None = Field(default=None, description="Output length in tokens.")
    concurrency: Axis[Int(1, BOUNDS["concurrency"])] | None = Field(
        default=None, description="Closed-loop concurrency; with a finite request_rate, a cap.")
    request_rate: Axis[Rate] = Field(
        default=["inf"], description="Requests/s of an open loop; 'inf' = closed loop.")
    burstiness: Float(gt=0, le=1000) = Field(default=1.0, description="Gamma shape of arrivals; 1 = Poisson.")
    num_prompts: Int(1, BOUNDS["requests"]) | str = Field(
        default="4 * concurrency", description="A count, or an expression of `concurrency` and `rate`.")
    profiles: list[str] = Field(default_factory=list, description="Named profiles from configs/profiles.yaml.")
    dataset: DatasetSpec = Field(default_factory=DatasetSpec)
    warmup: Int(0, BOUNDS["requests"]) = Field(default=2, description="Unmeasured requests before each load point.")
    ignore_eos: bool = True
    prompt_format: Literal["ids", "text"] = Field(
        default="ids", description="ids: token ids, exact lengths; text: decoded text the server tokenizes, as "
                                   "vllm bench serve sends (api openai/endpoint only).")
    seed: Int(0, 2**63 - 1) = 0
    temperature: Float(ge=0, le=100) = 0.0
    percentiles: list[Float(gt=0, lt=100)] = Field(default=[50, 90, 99])
    slo: SLOSpec = Field(default_factory=SLOSpec)
    max_failure_rate: Float(ge=0, le=1) = 0.0
    client_bound_lag_ms: Ms = Field(
        default=20.0, description="p90 schedule lag above this flags the trial client_bound.")


class EndpointSpec(Strict):
    """An OpenAI-compatible server the runner does not own (``api: endpoint``)."""

    base_url: str = Field(pattern=r"^https?://[^\s/]+", description="Server root, e.g. http://10.0.0.5:8000.")
    model: str | None = Field(default=None, min_length=1,
                              description="Served model name (default: the model's id).")
    api_key_env: str = Field(default="OPENAI_API_KEY", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                             description="Environment variable holding the bearer token, if any.")


class TimeoutSpec(Strict):
    placement_s: Seconds = 600
    engine_start_s: Seconds = 900
    request_s: Seconds = Field(default=300, description="No chunk for this long fails a request.")
    trial_s: Seconds = 7200


class PlacementSpec(Strict):
    label_key: str = Field(default="ray.io/accelerator-type",
                           description="Node label whose value is the hardware type's `label`.")
    starvation_s: Seconds = Field(default=120,
                                description="How long a waiting launch lets smaller ones start around it.")


class FitSpec(Strict):
    enforce: bool = Field(default=True, description="A configuration the fit planner predicts WONT_FIT is not "
                                                    "launched (its trials end WONT_FIT); false launches it anyway.")


class SweepSpec(Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")
    experiment: str | None = Field(default=None, description="MLflow experiment (default: name).")
    description: str = ""
    engine: Axis[str] = Field(default=["vllm"])
    api: Axis[Literal["engine", "openai", "endpoint"]] = Field(
        default=["engine"], description="engine: in-process API; openai: the engine's own HTTP server in the "
                                        "engine actor, driven by a client actor; endpoint: a running server.")
    endpoint: EndpointSpec | None = Field(default=None, description="The server for api: endpoint.")
    models: list[ModelSpec] = Field(min_length=1)
    hardware: Axis[str] = Field(description="Hardware types from configs/hardware.yaml.")
    shape: ShapeSpec = Field(default_factory=ShapeSpec)
    engine_args: dict[str, Any] = Field(default_factory=dict)
    workload: WorkloadSpec
    exclude: list[dict[str, Any]] = Field(default_factory=list)
    timeouts: TimeoutSpec = Field(default_factory=TimeoutSpec)
    placement: PlacementSpec = Field(default_factory=PlacementSpec)
    cluster: ClusterSpec | None = Field(default=None, description="Node types an autoscaling cluster may "
                                                                  "launch (runner.sweep.nodetypes).")
    prices: dict[str, Float(ge=0, le=BOUNDS["price"])] = Field(
        default_factory=dict, description="$/GPU-hour overrides by hardware type.")
    fit: FitSpec = Field(default_factory=FitSpec, description="The fit planner's verdict (runner.plan.fit).")
    max_attempts: Int(1, 100) = Field(default=3, description="Attempts per trial before giving up.")
    lanes: dict[str, str] = Field(default_factory=dict, description="Engine name → lane (configs/lanes.yaml).")
    allow_simulation: bool = Field(default=False, description="engine: simulated (holds resources, no model) "
                                                                 "runs only when this says so.")
    env: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")], str] = Field(
        default_factory=dict, description="Environment of the engine processes (NCCL_*, FI_*, …), over the lane's; "
                                          "never the driver's whole environment. Not part of trial ids.")

    @property
    def experiment_name(self) -> str:
        return self.experiment or self.name


#: Flat names that ``exclude`` rules and trial params use for each axis.
AXES = ("engine", "api", "model", "hardware", "tp", "pp", "dp", "ep", "input_len", "output_len", "concurrency",
        "request_rate", "profile", "lane")


def load(path: str | Path) -> SweepSpec:
    """Read and validate a sweep file; raise ``SweepSpecError`` for any problem."""
    file = str(path)
    raw = yamlfile.read(path)
    if not isinstance(raw, dict):
        raise SweepSpecError(file, "", raw, "a mapping with keys " + ", ".join(SweepSpec.model_fields))
    try:
        spec = SweepSpec.model_validate(raw)
    except ValidationError as e:
        raise schema_errors.convert(file, e, SweepSpec) from None
    _check(file, spec)
    redact.remember_args(raw)  # secret-named engine args: scrubbed from every log and artifact
    return spec


def num_prompts(spec: WorkloadSpec, concurrency: int | None, rate: float | None) -> int:
    """Resolve ``num_prompts`` for one load point: an int in [1, BOUNDS["requests"]] once ``load``
    has checked the expression (a result within 1e-9 of a whole number counts as that number)."""
    if isinstance(spec.num_prompts, int):
        return spec.num_prompts
    return _whole(evaluate(spec.num_prompts, _names(concurrency, rate)))


def _is_whole(n: float) -> bool:
    """Within 1e-9 (relative) of a whole number: ``300 * 0.1`` is 30."""
    return abs(n - round(n)) <= 1e-9 * max(1.0, abs(n))


def _whole(n: float) -> int:
    return round(n) if _is_whole(n) else math.ceil(n)


def _names(concurrency: int | None, rate: float | None) -> dict[str, float]:
    names: dict[str, float] = {}
    if concurrency is not None:
        names["concurrency"] = concurrency
    if rate is not None:
        names["rate"] = rate
    return names


def rates(spec: WorkloadSpec) -> list[float | None]:
    """The request-rate axis with 'inf' as None."""
    return [None if r == "inf" else float(r) for r in spec.request_rate]


def _check(file: str, spec: SweepSpec) -> None:
    hw = catalog.hardware()
    for i, name in enumerate(spec.hardware):
        if name not in hw:
            raise SweepSpecError(file, f"hardware[{i}]", name, _choices(name, hw))
    for name in spec.prices:
        if name not in hw:
            raise SweepSpecError(file, f"prices.{name}", name, _choices(name, hw))
    engines = catalog.engines()
    for i, name in enumerate(spec.engine):
        if name not in engines:
            raise SweepSpecError(file, f"engine[{i}]", name, _choices(name, engines))
    if "simulated" in spec.engine and not spec.allow_simulation:
        raise SweepSpecError(file, f"engine[{spec.engine.index('simulated')}]", "simulated",
                             "a real engine, or `allow_simulation: true` at the top of the file (the simulated "
                             "engine only holds resources: every number it gives is labelled SIMULATION)")
    for eng in spec.engine:
        _check_engine_args(file, "engine_args", spec.engine_args, eng)
        for i, m in enumerate(spec.models):
            _check_engine_args(file, f"models[{i}].engine_args", m.engine_args, eng)
    _check_api(file, spec)
    lanes = catalog.lanes()
    for eng, lane in spec.lanes.items():
        if eng not in engines:
            raise SweepSpecError(file, f"lanes.{eng}", eng, _choices(eng, engines))
        if lane not in lanes:
            raise SweepSpecError(file, f"lanes.{eng}", lane, _choices(lane, lanes))
    for i, m in enumerate(spec.models):
        paths.check_model(file, f"models[{i}].path", m.path)
        if m.lane is not None and m.lane not in lanes:
            raise SweepSpecError(file, f"models[{i}].lane", m.lane, _choices(m.lane, lanes))
    compat.check_lane_kinds(file, spec, lanes, hw)
    ids = [m.id for m in spec.models]
    for i, mid in enumerate(ids):
        if ids.index(mid) != i:
            raise SweepSpecError(file, f"models[{i}].id", mid, "ids unique within the sweep")
    _check_workload(file, spec.workload)
    node_types(file, spec.cluster)  # a cluster-launcher file named there must be readable now
    compat.check_env(file, spec.env)
    excludes.check(file, spec, AXES)


#: Engines whose own OpenAI-compatible server the engine actor can serve in-process (``api: openai``).
OPENAI_ENGINES = ("vllm",)


def _check_api(file: str, spec: SweepSpec) -> None:
    if "endpoint" in spec.api and spec.endpoint is None:
        raise SweepSpecError(file, "endpoint", None, "an endpoint block (base_url, model) for api: endpoint",
                             "add `endpoint: {base_url: http://HOST:PORT}` or drop endpoint from api, then run "
                             f"`python -m runner validate {file}`")
    if spec.endpoint is not None and "endpoint" not in spec.api:
        raise SweepSpecError(file, "api", spec.api, "a list holding endpoint when an endpoint block is given")
    if spec.api == ["endpoint"]:
        for i, m in enumerate(spec.models):
            if spec.engine_args or m.engine_args:
                where = "engine_args" if spec.engine_args else f"models[{i}].engine_args"
                raise SweepSpecError(file, where, "engine arguments",
                                     "none with api: endpoint (the server is already running with its own)")
    if spec.workload.prompt_format == "text" and "engine" in spec.api:
        raise SweepSpecError(file, "workload.prompt_format", "text",
                             "ids with api: engine (text prompts need an HTTP server: api openai or endpoint)")
    if "openai" in spec.api:
        for i, eng in enumerate(spec.engine):
            if eng not in OPENAI_ENGINES:
                raise SweepSpecError(file, f"engine[{i}]", eng,
                                     f"one of {', '.join(OPENAI_ENGINES)} with api: openai (for {eng}, start its "
                                     "server yourself and use api: endpoint)")


def _check_workload(file: str, w: WorkloadSpec) -> None:
    grid = [w.input_len, w.output_len]
    if any(v is not None for v in grid) and any(v is None for v in grid):
        raise SweepSpecError(file, "workload.input_len" if w.input_len is None else "workload.output_len", None,
                             "input_len and output_len together (or neither, with profiles)")
    if w.input_len is None and not w.profiles:
        raise SweepSpecError(file, "workload", "no load points", "input_len and output_len, or profiles")
    known = catalog.profiles()
    for i, name in enumerate(w.profiles):
        if name not in known:
            raise SweepSpecError(file, f"workload.profiles[{i}]", name, _choices(name, known))
    if w.input_len is not None and w.concurrency is None and "inf" in w.request_rate:
        raise SweepSpecError(file, "workload.concurrency", None,
                             "a concurrency for the closed loop of request_rate 'inf'")
    if isinstance(w.num_prompts, str) and w.input_len is not None:
        for c in w.concurrency or [None]:
            for r in rates(w):
                try:
                    n = evaluate(w.num_prompts, _names(c, r))
                except ExprError as e:
                    raise SweepSpecError(file, "workload.num_prompts", w.num_prompts, str(e)) from None
                at = f"at concurrency {c}, rate {r}"
                if n < 1 or n > BOUNDS["requests"]:
                    raise SweepSpecError(file, "workload.num_prompts", w.num_prompts,
                                         f"an expression giving >= 1 and <= {BOUNDS['requests']:,} (gives {n:g} {at})")
                if not _is_whole(n):
                    raise SweepSpecError(file, "workload.num_prompts", w.num_prompts,
                                         f"an expression giving a whole count (gives {n:g} {at}); wrap it in "
                                         f"ceil(...) or round(...)")
    d = w.dataset
    if d.range_convention == "vllm" and d.range_ratio >= 1:
        raise SweepSpecError(file, "workload.dataset.range_ratio", d.range_ratio,
                             "a ratio in [0, 1) with range_convention vllm (lengths L(1-r)..L(1+r)); SGLang's "
                             "--random-range-ratio 1 (exact lengths) is range_convention: sglang, range_ratio: 1")
    if d.kind == "file" and not d.path:
        raise SweepSpecError(file, "workload.dataset.path", None, "a JSONL or ShareGPT file path for kind: file")
    if d.kind == "file":
        paths.check_dataset(file, "workload.dataset.path", d.path)
    if d.kind == "prefix" and w.input_len is not None and d.prefix_len >= min(w.input_len):
        raise SweepSpecError(file, "workload.dataset.prefix_len", d.prefix_len,
                             f"fewer tokens than the shortest input_len ({min(w.input_len)})")


def _check_engine_args(file: str, where: str, args: dict[str, Any], engine: str) -> None:
    info = catalog.engines()[engine]
    for key, value in args.items():
        bad = non_finite(value)
        if bad is not None:
            raise SweepSpecError(file, f"{where}.{key}{bad}", value, "finite numbers (no .nan, .inf)")
        if key in info["reserved"]:
            raise SweepSpecError(file, f"{where}.{key}", key,
                                 f"not here: the runner sets it from {info['reserved'][key]}")
        allowed = (info.get("choices") or {}).get(key) or []
        for v in (value if isinstance(value, list) else [value]) if allowed else []:  # an axis: each value
            if v is not None and not any(excludes.same(v, a) for a in allowed):
                raise SweepSpecError(file, f"{where}.{key}", v, f"one of {', '.join(map(str, allowed))} ({engine} "
                                     f"{info['version']}'s own choices; null leaves the engine's default)",
                                     f"list them with `python -m runner engine-args {engine}`")
        if key not in info["args"]:
            close = difflib.get_close_matches(key, info["args"], n=3)
            hint = f"did you mean {', '.join(close)}? " if close else ""
            raise SweepSpecError(
                file, f"{where}.{key}", key,
                f"{hint}one of the {len(info['args'])} {engine} {info['version']} engine arguments",
                f"list them with `python -m runner engine-args {engine}`")


def _choices(value: str, options: Any) -> str:
    close = difflib.get_close_matches(str(value), list(options), n=1)
    return (f"did you mean {close[0]!r}? " if close else "") + "one of " + ", ".join(sorted(options))
