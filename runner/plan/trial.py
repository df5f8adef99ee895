"""The frozen records of a sweep: serving configuration, load point, trial; and statuses.

A *serving configuration* is everything that needs its own engine launch; a *load point*
is everything the load generator varies against one running engine; a *trial* is one of
each. Ids are content hashes (``runner.plan.ids``) of the fields that define a measurement:
the model path and the sweep name are deliberately left out, so the same trial in two
sweep files, or on two machines, has the same id; so is any credential in an endpoint URL
(``runner.core.redact.public_url``), so a new password never makes resume rerun a sweep.

A trial of the ``simulated`` engine is a SIMULATION, never an inference measurement:
``ServingConfig.simulation`` says so from the engine alone (no flag to forget), and its
``label`` (run names, progress lines, ``plan``) starts with ``SIMULATION``.
"""

from __future__ import annotations

import math
from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, computed_field

from runner.core import redact
from runner.plan.ids import content_id

#: The engine whose trials are simulations (``runner.engines.simulated``), and their marker.
SIMULATED_ENGINE = "simulated"
SIMULATION = "SIMULATION"


class Status(str, Enum):
    PENDING = "PENDING"
    RUNNING = "RUNNING"
    COMPLETED = "COMPLETED"
    FAILED = "FAILED"
    INVALID = "INVALID"
    UNSCHEDULABLE = "UNSCHEDULABLE"
    WONT_FIT = "WONT_FIT"
    KILLED = "KILLED"

    def is_finished(self) -> bool:
        return self is not Status.PENDING and self is not Status.RUNNING


#: Every failure reason a FAILED or INVALID trial can carry; exactly one per trial.
FAILURE_REASONS = {
    "engine_start_error": "the engine raised while starting (see the log tail)",
    "engine_start_error.oom": "the engine ran out of memory while starting",
    "engine_start_error.bad_argument": "the engine rejected an argument",
    "engine_start_error.missing_model": "the model path or id could not be found",
    "engine_start_timeout": "the engine did not become ready within timeouts.engine_start_s",
    "engine_died": "the engine process or its actor died during the trial",
    "sanity_check_failed": "the sanity request did not return the requested number of tokens",
    "request_timeout": "a stream produced no chunk for timeouts.request_s",
    "trial_timeout": "the load point did not finish within timeouts.trial_s",
    "placement_timeout": "the placement group stayed pending past timeouts.placement_s",
    "placement_lost": "the placement group was removed before it was ready (another driver of the sweep?)",
    "placement_split": "a replica's group landed with a TP group split over nodes; not measured (a retry may fit)",
    "unschedulable": "no node set in the cluster can ever hold this shape",
    "wont_fit": "the fit planner predicts the model does not fit the shape's GPUs (runner.plan.fit); not launched",
    "invalid_result": "the measurement failed a validity gate (see runner.measure.validity)",
    "driver_killed": "the driver stopped while the trial ran",
}


class Record(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class ServingConfig(Record):
    """One engine launch: engine, model, hardware, parallel shape and engine arguments."""

    engine: str
    model: str
    model_path: str
    hardware: str
    tp: int = 1
    pp: int = 1
    dp: int = 1
    ep: bool = False
    engine_args: dict[str, Any] = Field(default_factory=dict)
    lane: str = "default"
    api: str = "engine"
    endpoint: dict[str, Any] | None = None

    @computed_field
    @property
    def serving_config_id(self) -> str:
        return content_id(self.identity())

    def identity(self) -> dict[str, Any]:
        """The fields that define the measurement (not the machine-specific model path).

        The lane and the API mode count (another engine build, or the HTTP stack in the path, is
        another measurement), except at their defaults (lane ``default``, api ``engine``, no
        endpoint), which are left out so ids from before they existed stay valid. An endpoint
        counts by URL and served model name only (not the variable holding its key), and the
        URL without its credentials (``redact.public_url``: no userinfo, no token parameters).
        """
        d = self.model_dump(exclude={"serving_config_id", "model_path"})
        for key, neutral in (("lane", "default"), ("api", "engine"), ("endpoint", None)):
            if d[key] == neutral:
                del d[key]
        if d.get("endpoint"):
            d["endpoint"] = {k: d["endpoint"].get(k) for k in ("base_url", "model")}
            if d["endpoint"]["base_url"]:
                d["endpoint"]["base_url"] = redact.public_url(str(d["endpoint"]["base_url"]))
        return d

    @property
    def simulation(self) -> bool:
        """True for the simulated engine: its numbers are not inference measurements."""
        return self.engine == SIMULATED_ENGINE

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp

    @property
    def gpus(self) -> int:
        """Devices in use: TP × PP × DP."""
        return self.tp * self.pp * self.dp

    def label(self) -> str:
        """Human name (run names, logs): secret-named engine arguments show as ***."""
        args = " ".join(f"{k}={redact.value(k, v)}" for k, v in sorted(self.engine_args.items()))
        shape = f"tp{self.tp} pp{self.pp} dp{self.dp}{' ep' if self.ep else ''}"
        lane = "" if self.lane == "default" else f" [{self.lane}]"
        api = "" if self.api == "engine" else f" via {self.api}"
        sim = f"{SIMULATION} " if self.simulation else ""
        return f"{sim}{self.engine}{lane}{api} {self.model} {self.hardware} {shape} {args}".strip()


class LoadPoint(Record):
    """One measurement against a running engine. Lengths in tokens, rate in requests/s.

    ``request_rate=None`` is an infinite rate: a closed loop of ``concurrency`` requests.
    A finite rate is an open loop (gamma arrivals, shape ``burstiness``; 1 = Poisson), with
    ``concurrency`` as an optional cap. ``dataset=None`` is random tokens of exact lengths.
    """

    input_len: int
    output_len: int
    concurrency: int | None
    num_prompts: int
    warmup: int = 2
    ignore_eos: bool = True
    seed: int = 0
    temperature: float = 0.0
    request_rate: float | None = None
    burstiness: float = 1.0
    dataset: dict[str, Any] | None = None
    profile: str | None = None
    prompt_format: str = "ids"

    def sort_key(self) -> tuple:
        """Ascending load: lighter requests, then lower rate, then lower concurrency first."""
        rate = math.inf if self.request_rate is None else self.request_rate
        return (self.input_len + self.output_len, rate, self.concurrency or 0, self.num_prompts)

    def label(self) -> str:
        """'c8', '4/s c≤64', or 'serve-1024x256-c16 (c16)'."""
        base = f"c{self.concurrency}" if self.request_rate is None else f"{self.request_rate:g}/s" + (
            f" c≤{self.concurrency}" if self.concurrency else "")
        return f"{self.profile} ({base})" if self.profile else base

    def identity(self) -> dict[str, Any]:
        """Fields that define the measurement; new fields at their neutral value are left out,
        so ids of closed-loop random-token trials are unchanged since they were introduced."""
        d = self.model_dump()
        for key, neutral in (("request_rate", None), ("burstiness", 1.0), ("dataset", None), ("profile", None),
                               ("prompt_format", "ids")):
            if d[key] == neutral:
                del d[key]
        return d


class Trial(Record):
    serving: ServingConfig
    load: LoadPoint

    @computed_field
    @property
    def trial_id(self) -> str:
        return content_id({"serving": self.serving.identity(), "load": self.load.identity()})

    def params(self) -> dict[str, Any]:
        """Every resolved parameter, flattened (``engine_args.x``), for MLflow and ``plan``; an
        endpoint URL with its credentials masked (``redact.url``)."""
        s = self.serving.model_dump(exclude={"serving_config_id", "engine_args", "endpoint"})
        if self.serving.endpoint:
            s.update({f"endpoint.{k}": redact.url(v) if k == "base_url" and isinstance(v, str) else v
                      for k, v in sorted(self.serving.endpoint.items()) if v is not None})
        s.update({f"engine_args.{k}": v for k, v in sorted(self.serving.engine_args.items())})
        load = self.load.model_dump()
        load["request_rate"] = "inf" if load["request_rate"] is None else load["request_rate"]
        load["dataset"] = _flat_dataset(load["dataset"])
        s.update(load)
        return s


def _flat_dataset(d: dict[str, Any] | None) -> str:
    return "random" if not d else ",".join(f"{k}={v}" for k, v in sorted(d.items()))
