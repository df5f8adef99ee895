"""Grid expansion: ``expand(spec) -> list[Trial]``, a pure function.

Invariants: no I/O, no randomness, no ``eval``. The output order is deterministic: serving
configurations in the order of the sweep file's axes, and within each configuration the
load points in ascending load. Excluded combinations never appear; duplicates (the same
trial id reached twice) appear once.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from typing import Any

from runner.plan.trial import LoadPoint, ServingConfig, Trial
from runner.sweep import DatasetSpec, SweepSpec, catalog, num_prompts, paths, rates


def expand(spec: SweepSpec) -> list[Trial]:
    """All trials of the sweep, grouped by serving configuration, ascending load within one."""
    trials: dict[str, Trial] = {}
    for serving in _serving_configs(spec):
        flat_s = _flat_serving(serving)
        if _excluded_partial(spec, flat_s):
            continue
        points = sorted(_load_points(spec), key=LoadPoint.sort_key)
        for load in points:
            if _excluded(spec, {**flat_s, **load.model_dump(), "request_rate": load.request_rate or "inf"}):
                continue
            t = Trial(serving=serving, load=load)
            trials.setdefault(t.trial_id, t)
    return list(trials.values())


def group(trials: Iterable[Trial]) -> dict[str, list[Trial]]:
    """serving_config_id → its trials, in first-seen order; each group is one engine launch."""
    out: dict[str, list[Trial]] = {}
    for t in trials:
        out.setdefault(t.serving.serving_config_id, []).append(t)
    return out


def _serving_configs(spec: SweepSpec) -> Iterable[ServingConfig]:
    sh = spec.shape
    for engine, api, model, hw, tp, pp, dp, ep in itertools.product(
            spec.engine, spec.api, spec.models, spec.hardware, sh.tp, sh.pp, sh.dp, sh.ep):
        merged = {} if api == "endpoint" else {**spec.engine_args, **model.engine_args}
        lane = "default" if api == "endpoint" else model.lane or spec.lanes.get(engine, "default")
        endpoint = None
        if api == "endpoint" and spec.endpoint is not None:
            endpoint = {**spec.endpoint.model_dump(), "model": spec.endpoint.model or model.id}
        for args in _arg_grid(merged):
            yield ServingConfig(engine=engine, model=model.id, model_path=paths.resolve_model(model.path), hardware=hw,
                                tp=tp, pp=pp, dp=dp, ep=ep, engine_args=args, lane=lane, api=api, endpoint=endpoint)


def _arg_grid(args: dict[str, Any]) -> Iterable[dict[str, Any]]:
    keys = list(args)
    axes = [v if isinstance(v, list) else [v] for v in args.values()]
    for combo in itertools.product(*axes):
        yield dict(zip(keys, combo))


def _load_points(spec: SweepSpec) -> Iterable[LoadPoint]:
    w = spec.workload
    d = w.dataset
    dataset = None if d == DatasetSpec() else d.model_dump(exclude_defaults=True)
    if dataset and d.kind == "file":
        dataset["path"] = d.path  # as written; the actor resolves it
    common = {"warmup": w.warmup, "ignore_eos": w.ignore_eos, "seed": w.seed, "burstiness": w.burstiness,
              "prompt_format": w.prompt_format,
              "dataset": dataset}
    if w.input_len is not None:
        for il, ol, c, r in itertools.product(w.input_len, w.output_len, w.concurrency or [None], rates(w)):
            if r is None and c is None:
                continue
            yield LoadPoint(input_len=il, output_len=ol, concurrency=c, request_rate=r,
                            num_prompts=num_prompts(w, c, r), temperature=w.temperature, **common)
    for name in w.profiles:
        p = dict(catalog.profiles()[name])
        rate = p.pop("request_rate", None)
        yield LoadPoint(profile=name, request_rate=None if rate in (None, "inf") else float(rate),
                        temperature=p.pop("temperature", 0.0), **p, **common)


def _flat_serving(s: ServingConfig) -> dict[str, Any]:
    d = {"engine": s.engine, "api": s.api, "model": s.model, "hardware": s.hardware, "tp": s.tp, "pp": s.pp,
         "dp": s.dp, "ep": s.ep}
    d.update({f"engine_args.{k}": v for k, v in s.engine_args.items()})
    return d


def _matches(rule: dict[str, Any], flat: dict[str, Any]) -> bool:
    """A rule matches when every key it names is present with one of the listed values."""
    return all(key in flat and flat[key] in (want if isinstance(want, list) else [want])
               for key, want in rule.items())


def _excluded(spec: SweepSpec, flat: dict[str, Any]) -> bool:
    return any(_matches(rule, flat) for rule in spec.exclude)


def _excluded_partial(spec: SweepSpec, flat_serving: dict[str, Any]) -> bool:
    """A rule naming only serving keys removes the whole configuration (no launch)."""
    return any(all(k in flat_serving for k in rule) and _matches(rule, flat_serving)
               for rule in spec.exclude)
