"""A launch: one serving configuration's DP replicas on their way through the scheduler, and
the ``Outcome`` each of its trials ends with.

A ``Launch`` moves queued → placing → starting → running → done (``runner.cluster.scheduler``);
every field below belongs to one phase or carries what the next one needs. Times: ``deadline``,
``queued_at`` and ``timing`` are monotonic seconds (``timing["placed_at"]`` is wall clock, for
intervals compared across launches); an ``Outcome``'s ``started``/``ended`` are wall clock.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

from runner.cluster import placement
from runner.plan import ServingConfig, Status, Trial


@dataclass
class Outcome:
    trial: Trial
    status: Status
    reason: str = ""
    error: str = ""
    log_tail: str = ""
    result: dict[str, Any] | None = None
    engine: dict[str, Any] | None = None
    started: float = 0.0
    ended: float = field(default_factory=time.time)


@dataclass
class Launch:
    serving: ServingConfig
    pending: list[Trial]
    reqs: list[placement.Request] = field(default_factory=list)
    phase: str = "queued"
    pgs: list[Any] = field(default_factory=list)
    actors: list[Any] = field(default_factory=list)
    clients: list[Any] = field(default_factory=list)  # api openai/endpoint: one load-driving client per replica
    places: list[Any] = field(default_factory=list)  # refs: each engine actor's where() (node, pid), asked first
    layouts: list[list[str]] = field(default_factory=list)  # node id per bundle per replica, as admitted
    starts: list[dict[str, Any]] = field(default_factory=list)  # api openai: the engine actors' start results
    refs: list[Any] = field(default_factory=list)
    waiting: set = field(default_factory=set)
    deadline: float = math.inf
    queued_at: float = field(default_factory=time.monotonic)
    current: Trial | None = None
    current_started: float = 0.0
    engine: dict[str, Any] | None = None
    timing: dict[str, float] = field(default_factory=dict)  # monotonic: placed, ready, started
    # no node type known to fit it, but Ray's autoscaler v2 runs: its group is created unpinned and
    # the autoscaler decides (launches a node, or lists it infeasible: ``runner.cluster.autoscaler``)
    unknown_fit: bool = False

    @property
    def est_steps(self) -> float:
        """Estimated length in decode steps (unitless; only the order matters)."""
        trials = self.pending + ([self.current] if self.current else [])
        return sum(-(-(t.load.num_prompts + t.load.warmup) // (t.load.concurrency or 1)) * t.load.output_len
                   for t in trials)  # an uncapped open loop counts as concurrency 1: a rough upper bound

    @property
    def devices(self) -> float:
        return sum(sum(b.get("GPU", b.get("CPU", 0)) for b in r.bundles) for r in self.reqs)
