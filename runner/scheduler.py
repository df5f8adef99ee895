"""Which serving configurations run now; launching, advancing and reaping their actors.

The scheduler is a single-threaded event loop in the driver over ``ray.wait``. Each serving
configuration is a ``Launch`` that moves queued → placing → starting → running → done; every
phase has a deadline from the sweep's ``timeouts``. Invariants:
- every trial handed in gets exactly one ``on_end`` call, with one status and, unless it
  completed, one reason from ``runner.trial.FAILURE_REASONS``;
- a launch's actor is killed and its group removed on every path out (success, error,
  timeout, SIGTERM);
- when an engine dies or a load point times out, the launch's remaining trials are queued
  again as a fresh launch, so one bad trial does not take its siblings down.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from runner import lanes, loadgen, placement
from runner.errors import RunnerError
from runner.spec import TimeoutSpec
from runner.trial import ServingConfig, Status, Trial

#: Driver environment variables forwarded to engine actors when set (never logged).
PASSTHROUGH_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                   "TRANSFORMERS_OFFLINE", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND",
                   loadgen.STALL_ENV)


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
    req: placement.Request
    phase: str = "queued"
    pg: Any = None
    actor: Any = None
    ref: Any = None
    deadline: float = math.inf
    current: Trial | None = None
    current_started: float = 0.0
    engine: dict[str, Any] | None = None


class Scheduler:
    def __init__(self, sweep: str, groups: list[list[Trial]], timeouts: TimeoutSpec, *,
                 on_start: Callable[[Trial, dict], None], on_end: Callable[[Outcome], None],
                 max_parallel: int | None = None):
        self.sweep, self.timeouts = sweep, timeouts
        self.on_start, self.on_end = on_start, on_end
        self.max_parallel = max_parallel or 10**9
        self.launches = [Launch(g[0].serving, list(g), placement.request_for(g[0].serving)) for g in groups]
        self.stopping = False
        self._seq = 0

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        import ray

        try:
            while any(x.phase != "done" for x in self.launches):
                if self.stopping:
                    raise KeyboardInterrupt
                self._admit(ray.nodes())
                active = [x for x in self.launches if x.ref is not None]
                if not active:
                    continue
                wait = max(0.0, min(x.deadline for x in active) - time.monotonic())
                ready, _ = ray.wait([x.ref for x in active], num_returns=1, timeout=min(wait, 1.0))
                for x in active:
                    if x.ref in ready:
                        self._advance(x)
                    elif time.monotonic() > x.deadline:
                        self._timeout(x)
        except KeyboardInterrupt:
            self._kill_all("driver_killed")
            raise

    def _admit(self, nodes: list[dict]) -> None:
        running = sum(1 for x in self.launches if x.phase not in ("queued", "done"))
        for x in self.launches:
            if x.phase != "queued":
                continue
            why = placement.check(x.req, nodes)
            if why:
                self._fail_all(x, Status.UNSCHEDULABLE, "unschedulable", why)
                continue
            if running >= self.max_parallel:
                continue
            self._seq += 1
            x.pg = placement.create(x.req, f"{placement.prefix(self.sweep)}{x.serving.serving_config_id}-{self._seq}",
                                    nodes)
            x.phase, x.ref = "placing", x.pg.ready()
            x.deadline = time.monotonic() + self.timeouts.placement_s
            running += 1

    def _advance(self, x: Launch) -> None:
        import ray
        from ray.exceptions import RayError

        try:
            value = ray.get(x.ref)
        except RayError as e:
            value = {"ok": False, "reason": "engine_died" if x.phase == "running" else "engine_start_error",
                     "error": f"{type(e).__name__}: {str(e)[:1500]}"}
        if x.phase == "placing":
            try:
                self._start_actor(x)
            except RunnerError as e:  # e.g. a lane that cannot be built
                self._fail_all(x, Status.FAILED, "engine_start_error", str(e))
        elif x.phase == "starting":
            if not value.get("ok"):
                self._fail_all(x, Status.FAILED, value["reason"], value.get("error", ""), value.get("log_tail", ""))
                return
            x.engine = value
            self._next(x)
        elif x.phase == "running":
            trial, x.current = x.current, None
            if value.get("ok"):
                self.on_end(Outcome(trial, Status.COMPLETED, result=value, engine=x.engine,
                                    started=x.current_started))
                self._next(x)
            else:
                self.on_end(Outcome(trial, Status.FAILED, value["reason"], value.get("error", ""),
                                    value.get("log_tail", ""), engine=x.engine, started=x.current_started))
                self._requeue_rest(x)

    def _start_actor(self, x: Launch) -> None:
        import os

        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from runner.actor import EngineActor

        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        env.update(x.req.env)
        runtime, lane_env = lanes.runtime_env(x.serving.lane)
        env.update(lane_env)
        if "py_executable" in runtime and not os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
            env.setdefault("PYTHONPATH", str(lanes.REPO))  # another venv: give it this package
        strategy = PlacementGroupSchedulingStrategy(x.pg, placement_group_bundle_index=0,
                                                    placement_group_capture_child_tasks=True)
        x.actor = ray.remote(EngineActor).options(
            scheduling_strategy=strategy, runtime_env={**runtime, "env_vars": env}, max_restarts=0,
            **x.req.actor_resources).remote(x.serving.model_dump(exclude={"serving_config_id"}), 0)
        x.phase, x.ref = "starting", x.actor.start.remote(self.timeouts.request_s)
        x.deadline = time.monotonic() + self.timeouts.engine_start_s

    def _next(self, x: Launch) -> None:
        if not x.pending or self.stopping:
            self._teardown(x)
            return
        x.current = x.pending.pop(0)
        x.current_started = time.time()
        self.on_start(x.current, x.engine or {})
        x.phase = "running"
        x.ref = x.actor.run.remote(x.current.load.model_dump(), self.timeouts.request_s)
        x.deadline = time.monotonic() + self.timeouts.trial_s

    def _timeout(self, x: Launch) -> None:
        if x.phase == "placing":
            self._fail_all(x, Status.FAILED, "placement_timeout",
                           f"placement group still pending after {self.timeouts.placement_s:g} s")
        elif x.phase == "starting":
            self._fail_all(x, Status.FAILED, "engine_start_timeout",
                           f"engine not ready after {self.timeouts.engine_start_s:g} s", self._tail(x))
        elif x.phase == "running":
            trial, x.current = x.current, None
            self.on_end(Outcome(trial, Status.FAILED, "trial_timeout",
                                f"load point not done after {self.timeouts.trial_s:g} s", self._tail(x),
                                engine=x.engine, started=x.current_started))
            self._requeue_rest(x)

    # -- endings --------------------------------------------------------------------------
    def _requeue_rest(self, x: Launch) -> None:
        rest, x.pending = x.pending, []
        self._teardown(x)
        if rest and not self.stopping:
            self.launches.append(Launch(x.serving, rest, x.req))

    def _fail_all(self, x: Launch, status: Status, reason: str, error: str, tail: str = "") -> None:
        trials = ([x.current] if x.current else []) + x.pending
        x.current, x.pending = None, []
        for t in trials:
            self.on_end(Outcome(t, status, reason, error, tail, engine=x.engine))
        self._teardown(x)

    def _kill_all(self, reason: str) -> None:
        for x in self.launches:
            if x.current is not None:
                t, x.current = x.current, None
                self.on_end(Outcome(t, Status.KILLED, reason, "the driver was stopped", engine=x.engine,
                                    started=x.current_started))
            x.pending = []
            self._teardown(x, graceful=False)  # `ray job stop` SIGKILLs 3 s after SIGTERM

    def _tail(self, x: Launch) -> str:
        import ray

        try:
            return ray.get(x.actor.log_tail.remote(), timeout=5) if x.actor else ""
        except Exception:
            return ""

    def _teardown(self, x: Launch, graceful: bool = True) -> None:
        """Stop the engine (best-effort), kill the actor, remove the group: always all three."""
        import ray
        from ray.util.placement_group import remove_placement_group

        if x.actor is not None:
            if graceful and x.phase != "starting":
                try:
                    ray.get(x.actor.stop.remote(), timeout=20)
                except Exception:
                    pass
            ray.kill(x.actor, no_restart=True)
        if x.pg is not None:
            try:
                remove_placement_group(x.pg)
            except Exception:
                pass
        x.actor = x.pg = x.ref = None
        x.phase, x.deadline = "done", math.inf
