"""Which serving configurations run now; launching, advancing and reaping their actors.

The scheduler is a single-threaded event loop in the driver over ``ray.wait``. Each serving
configuration is a ``Launch`` of DP replicas (one placement group and engine actor each)
that moves queued → placing → starting → running → done; every phase has a deadline from
the sweep's ``timeouts``. Invariants:
- every trial handed in gets exactly one ``on_end`` call, with one status and, unless it
  completed, one reason from ``runner.plan.trial.FAILURE_REASONS``;
- a launch's actors are killed and its groups removed on every path out (success, error,
  timeout, SIGTERM);
- when an engine dies or a load point times out, the launch's remaining trials are queued
  again as a fresh launch, so one bad trial does not take its siblings down.

Admission: launches are considered longest first by an estimate of their length (decode
steps: Σ over load points of ⌈prompts / concurrency⌉ × output length), then widest first,
and one is started only when all its replicas fit the cluster's *available* resources now,
so groups do not sit pending behind each other. Groups created but not yet ready count as
taken (Ray's availability leaves them out until they are placed); if one of them finds no room
(the view was stale, or someone else took it), nothing new starts until it is placed, so what
frees up goes to it. Others backfill around a waiting launch
until it has waited ``starvation_s``; then nothing new starts until it does, so a large
shape cannot starve. (Longest-first list scheduling is within 4/3 of optimal; in
benchmarks/bench_scheduler.py it beat widest-first by 10 %.)
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Callable
from typing import Any

from runner.cluster import apimode, autoscaler, capacity, lanes, placement, reaper
from runner.cluster.launch import Launch, Outcome
from runner.cluster.replicas import merge
from runner.core import RunnerError
from runner.measure import loadgen
from runner.plan import Status, Trial
from runner.sweep import TimeoutSpec, catalog

NICENESS_ENV = "RAY_worker_niceness"  #: Ray's worker nice value, set in an actor's env (see _start_clients)
#: Driver environment variables forwarded to engine actors when set (never logged).
PASSTHROUGH_ENV = ("HF_HUB_OFFLINE", "HF_HOME", "HF_TOKEN", "HUGGING_FACE_HUB_TOKEN",
                   "TRANSFORMERS_OFFLINE", "VLLM_CPU_KVCACHE_SPACE", "VLLM_CPU_OMP_THREADS_BIND",
                   loadgen.STALL_ENV)


class Scheduler:
    def __init__(self, sweep: str, groups: list[list[Trial]], timeouts: TimeoutSpec, *,
                 on_start: Callable[[Trial, dict], None], on_end: Callable[[Outcome], None],
                 max_parallel: int | None = None, label_key: str = placement.LABEL_KEY,
                 starvation_s: float = 120.0, env: dict[str, str] | None = None,
                 node_types: capacity.NodeTypes | None = None, driver: str = "0" * 12):
        self.sweep, self.timeouts, self.label_key, self.driver = sweep, timeouts, label_key, driver  # in group names
        self.node_types = node_types or capacity.NodeTypes()  # what an autoscaler may still launch
        self.env = dict(env or {})  # the sweep's own engine environment (network settings), over the lane's
        self.on_start, self.on_end = on_start, on_end
        self.max_parallel, self.starvation_s = max_parallel or 10**9, starvation_s
        self.launches = [Launch(g[0].serving, list(g)) for g in groups]
        self.history: list[Launch] = []  # launches that reached a running engine, for overhead figures
        self.stopping = False
        self._seq = 0
        self.verdict = autoscaler.Verdict()  # autoscaler v2's word on groups that wait

    # -- the loop -------------------------------------------------------------------------
    def run(self) -> None:
        import ray

        try:
            while any(x.phase != "done" for x in self.launches):
                if self.stopping:
                    raise KeyboardInterrupt
                self._admit()
                self._give_up_infeasible()
                active = [x for x in self.launches if x.waiting]
                if not active:
                    time.sleep(0.2)
                    continue
                wait = max(0.0, min(x.deadline for x in active) - time.monotonic())
                pending = [r for x in active for r in x.waiting]
                # poll faster while launches wait for room: freed groups show up in availability late
                poll = 0.1 if any(x.phase == "queued" for x in self.launches) else 1.0
                ready, _ = ray.wait(pending, num_returns=1, timeout=min(wait, poll))
                for x in active:
                    x.waiting.difference_update(ready)
                    if not x.waiting:
                        self._advance(x)
                    elif time.monotonic() > x.deadline:
                        self._timeout(x)
        except KeyboardInterrupt:
            self._kill_all("driver_killed")
            raise

    def _admit(self) -> None:
        import ray
        from ray._private import state

        queued = [x for x in self.launches if x.phase == "queued"]
        if not queued:
            return
        live = ray.nodes()
        extra = capacity.launchable(self.node_types, live)  # not there yet: placing on them scales up
        nodes = live + extra
        for x in queued:
            if not x.reqs:
                req = apimode.request(x.serving, nodes, self.label_key)
                x.reqs = [req] * x.serving.dp
            why = placement.check(x.reqs, nodes)
            if why and not self.node_types.types and len(x.reqs[0].bundles) == 1 and x.reqs[0].label:
                self.verdict.poll(_gcs_address())  # no node type known: with autoscaler v2, it decides
                x.unknown_fit = self.verdict.active
                why = None if x.unknown_fit else why
            if why:
                hint = "" if self.node_types.types else (
                    "; on an autoscaling cluster, name the node types it may launch in the sweep's `cluster:` "
                    "section (a cluster-launcher file or node_types), then run again")
                self._fail_all(x, Status.UNSCHEDULABLE, "unschedulable", why + hint)
        running = sum(1 for x in self.launches if x.phase not in ("queued", "done"))
        available = capacity.available(state.available_resources_per_node(), extra)
        for x in self.launches:  # created but not ready: Ray's availability does not count them yet
            if x.phase == "placing" and not x.unknown_fit and not placement.retake(x.reqs, x.layouts, nodes,
                                                                                  available):
                return  # a group really waits for room: what frees up is its, first
        now = time.monotonic()
        queued = sorted((x for x in self.launches if x.phase == "queued"),
                        key=lambda x: (-x.est_steps, -x.devices, x.queued_at))
        for x in queued:
            if running >= self.max_parallel:
                return
            layouts: list[list[str]] = []
            if x.unknown_fit:  # one at a time, so v2's verdict on it is not about the others' demand
                if not any(y.unknown_fit and y.phase == "placing" for y in self.launches):
                    self._place(x, nodes, [[] for _ in x.reqs])
                    running += 1
                continue
            if not placement.reserve(x.reqs, nodes, available, layouts):  # taken now, before the next
                if now - x.queued_at > self.starvation_s:
                    return  # hold smaller launches back until this one fits
                continue
            self._place(x, nodes, layouts)
            running += 1

    def _place(self, x: Launch, nodes: list[dict], layouts: list[list[str]]) -> None:
        self._seq += 1
        x.layouts = layouts
        base = placement.group_name(self.sweep, self.driver, f"{x.serving.serving_config_id}-{self._seq}")
        x.pgs = [placement.create(r, f"{base}-r{i}", nodes, lay, by_label=x.unknown_fit)
                 for i, (r, lay) in enumerate(zip(x.reqs, layouts))]
        x.timing["placed"] = time.monotonic()
        x.timing["placed_at"] = time.time()  # wall clock, for intervals compared across launches
        self._wait(x, "placing", [pg.ready() for pg in x.pgs], self.timeouts.placement_s)

    def _give_up_infeasible(self) -> None:
        """UNSCHEDULABLE for a waiting launch that autoscaler v2 says no node type can hold, while
        nothing else of this driver holds or waits for room (``runner.cluster.autoscaler``)."""
        placing = [x for x in self.launches if x.phase == "placing"]
        if not placing:
            return
        self.verdict.poll(_gcs_address())
        for x in placing:
            others = any(y is not x and y.phase in ("placing", "starting", "running") for y in self.launches)
            if self.verdict.never(id(x), x.pgs, others):
                shape = ", ".join(f"{b}" for b in x.reqs[0].bundles)
                self._fail_all(x, Status.UNSCHEDULABLE, "unschedulable",
                               f"Ray's autoscaler (v2) lists its placement group ({x.reqs[0].strategy} {shape}"
                               f" x {len(x.reqs)}) as infeasible and no live node can hold it: no node type it "
                               "may launch fits; live nodes: "
                               + placement.describe_nodes([n for n in ray_nodes() if n.get("Alive")]))

    def _wait(self, x: Launch, phase: str, refs: list[Any], timeout_s: float) -> None:
        x.phase, x.refs, x.waiting = phase, refs, set(refs)
        x.deadline = time.monotonic() + timeout_s

    def _advance(self, x: Launch) -> None:
        import ray
        from ray.exceptions import RayError

        values = []
        for ref in x.refs:
            try:
                values.append(ray.get(ref))
            except RayError as e:
                values.append({"ok": False, "reason": "engine_died" if x.phase == "running" else "engine_start_error",
                               "error": f"{type(e).__name__}: {str(e)[:1500]}"})
        bad = next((v for v in values if isinstance(v, dict) and not v.get("ok")), None)
        x.timing[{"placing": "ready", "starting": "started"}.get(x.phase, "ran")] = time.monotonic()
        if x.phase == "placing":
            if bad:  # a group Ray dropped before it was ready (removed by another driver of this sweep?)
                self._fail_all(x, Status.FAILED, "placement_lost", bad.get("error", ""))
                return
            placed = placement.bundle_nodes_by_index(x.pgs)
            split = next(filter(None, (placement.split_groups(r, t) for r, t in zip(x.reqs, placed))), None)
            if split:  # never measured as if valid: a TP group across nodes is another configuration
                self._fail_all(x, Status.FAILED, "placement_split", split)
                return
            try:
                self._start_actors(x)
            except RunnerError as e:  # e.g. a lane that cannot be built
                self._fail_all(x, Status.FAILED, "engine_start_error", str(e))
        elif x.phase == "starting":
            if bad:
                self._fail_all(x, Status.FAILED, bad["reason"], bad.get("error", ""), bad.get("log_tail", ""))
                return
            if x.serving.api == "openai" and not x.clients:  # engines serve; now their clients
                x.starts = values
                self._start_clients(x, [v["url"] for v in values])
                return
            clients = values if x.clients else []
            values = x.starts or values
            self.history.append(x)
            x.engine = {**values[0], "bundle_nodes": placement.bundle_nodes(x.pgs), "timing": {
                        "placement_s": x.timing["ready"] - x.timing["placed"],
                        "actor_start_s": x.timing["started"] - x.timing["ready"],
                        "placed_at": x.timing["placed_at"]},
                        "replicas": [{k: v.get(k) for k in ("node_id", "hostname", "pid", "cuda_visible_devices",
                                                            "gpu_ids", "start_s")} for v in values]}
            if clients:
                x.engine["api"] = x.serving.api
                x.engine["clients"] = [{k: v.get(k) for k in ("node_id", "hostname", "pid", "versions")}
                                       for v in clients]
                x.engine["server_urls"] = [c.get("versions", {}).get("base_url", "") for c in clients]
            self._next(x)
        elif x.phase == "running":
            trial, x.current = x.current, None
            if bad:
                self.on_end(Outcome(trial, Status.FAILED, bad["reason"], bad.get("error", ""),
                                    bad.get("log_tail", ""), engine=x.engine, started=x.current_started))
                self._requeue_rest(x)
                return
            self.on_end(Outcome(trial, Status.COMPLETED, result=merge(values), engine=x.engine,
                                started=x.current_started))
            self._next(x)

    def _start_actors(self, x: Launch) -> None:
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from runner.cluster.actor import EngineActor

        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        env.update(x.reqs[0].env)
        runtime, lane_env = lanes.runtime_env(x.serving.lane)
        env.update(lane_env)
        env.update(self.env)  # inherited by the engine's own Ray workers and followers on other nodes
        if "py_executable" in runtime and not os.environ.get("RAY_JOB_CONFIG_JSON_ENV_VAR"):
            env.setdefault("PYTHONPATH", str(lanes.REPO))  # another venv: give it this package
        if x.serving.api == "endpoint":
            self._start_clients(x, [str((x.serving.endpoint or {})["base_url"])] * len(x.pgs))
            return
        cls = ray.remote(EngineActor)
        config = x.serving.model_dump(exclude={"serving_config_id"})
        for i, (pg, req) in enumerate(zip(x.pgs, x.reqs)):
            strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=0,
                                                        placement_group_capture_child_tasks=True)
            rt = {**runtime, "env_vars": env} if env else runtime  # no env: pooled workers can be reused
            host = apimode.serve_host(req) if x.serving.api == "openai" else None
            x.actors.append(cls.options(scheduling_strategy=strategy, runtime_env=rt or None,
                                        max_restarts=0, **req.actor_resources).remote(config, i, req.spans_nodes,
                                                                                      host))
            x.places.append(x.actors[-1].where.remote())  # before start: answered even if start hangs
        version = catalog.engines().get(x.serving.engine, {}).get("version")
        self._wait(x, "starting", [a.start.remote(self.timeouts.request_s, version) for a in x.actors],
                   self.timeouts.engine_start_s)

    def _start_clients(self, x: Launch, urls: list[str]) -> None:
        """One client actor per replica, in the last bundle of its group, in the driver's own
        environment (no engine lane: it imports no engine); phase ``starting`` again.

        Ray runs its workers at nice 15 (``RAY_worker_niceness``, applied by the worker itself,
        so 0 in the actor's env keeps it at 0 without privilege; Ray's job manager does the same
        for its supervisor, ``job_manager.py``). A client at 15 against a server at 0 that keeps
        a core busy read streams seconds late on 2 cores (loop lag 1.5-1.9 s, TTFT +18 %)."""
        import ray
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        from runner.cluster.actor import ClientActor

        env = {k: os.environ[k] for k in PASSTHROUGH_ENV if k in os.environ}
        key_env = (x.serving.endpoint or {}).get("api_key_env")
        if key_env and key_env in os.environ:
            env[key_env] = os.environ[key_env]
        env[NICENESS_ENV] = "0"  # Ray starts workers at nice 15; the server it measures runs at the user's 0
        cls = ray.remote(ClientActor)
        config = x.serving.model_dump(exclude={"serving_config_id"})
        for i, (pg, req, url) in enumerate(zip(x.pgs, x.reqs, urls)):
            strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=apimode.client_bundle(req))
            x.clients.append(cls.options(scheduling_strategy=strategy, runtime_env={"env_vars": env} if env else None,
                                         max_restarts=0, num_cpus=apimode.CLIENT_CPUS).remote(config, i, url))
        self._wait(x, "starting", [c.start.remote(self.timeouts.request_s) for c in x.clients],
                   self.timeouts.engine_start_s)

    def _next(self, x: Launch) -> None:
        if not x.pending or self.stopping:
            self._teardown(x)
            return
        x.current = x.pending.pop(0)
        x.current_started = time.time()
        self.on_start(x.current, x.engine or {})
        drivers = x.clients or x.actors
        load = x.current.load.model_dump()
        self._wait(x, "running", [a.run.remote(load, self.timeouts.request_s, len(drivers)) for a in drivers],
                   self.timeouts.trial_s)

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
            self.launches.append(Launch(x.serving, rest, x.reqs))

    def _fail_all(self, x: Launch, status: Status, reason: str, error: str, tail: str = "") -> None:
        trials = ([x.current] if x.current else []) + x.pending
        x.current, x.pending = None, []
        for t in trials:
            self.on_end(Outcome(t, status, reason, error, tail, engine=x.engine))
        self._teardown(x)

    def _kill_all(self, reason: str) -> None:
        for x in self.launches:  # every record first: `ray job stop` SIGKILLs the driver 3 s after SIGTERM
            if x.current is not None:
                t, x.current = x.current, None
                self.on_end(Outcome(t, Status.KILLED, reason, "the driver was stopped", engine=x.engine,
                                    started=x.current_started))
            x.pending = []
        for x in self.launches:  # then the engines: their trees are killed, not waited for
            self._teardown(x, graceful=False)

    def _tail(self, x: Launch) -> str:
        import ray

        try:
            return ray.get(x.actors[0].log_tail.remote(), timeout=5) if x.actors else ""
        except Exception:
            return ""

    def _teardown(self, x: Launch, graceful: bool = True) -> None:
        """Stop the engines (best-effort), kill the actors, remove the groups: always all three."""
        import ray
        from ray.util.placement_group import remove_placement_group

        for group in (x.clients, x.actors):  # clients first: they hold connections to the servers
            if graceful and x.phase != "starting" and group:
                try:
                    ray.get([a.stop.remote() for a in group], timeout=20)
                except Exception:
                    pass
        if x.places:  # the engines' process trees are gone before the groups are: nothing holds their devices
            reaper.reap(_answers(x.places, 5.0 if graceful else 0.5), wait=graceful)
        for group in (x.clients, x.actors):
            for a in group:
                ray.kill(a, no_restart=True)
        for pg in x.pgs:
            try:
                remove_placement_group(pg)
            except Exception:
                pass
        if x.pgs:
            x.timing["removed"] = time.monotonic()
        x.actors, x.clients, x.starts, x.pgs, x.refs, x.places, x.waiting = [], [], [], [], [], [], set()
        x.phase, x.deadline = "done", math.inf


def _gcs_address() -> str:
    import ray

    return ray.get_runtime_context().gcs_address


def ray_nodes() -> list[dict[str, Any]]:
    import ray

    return ray.nodes()


def _answers(refs: list[Any], timeout_s: float = 5.0) -> list[dict[str, Any] | None]:
    """Each ref's value, or ``None`` for one that failed or did not answer in time."""
    import ray

    out = []
    for ref in refs:
        try:
            out.append(ray.get(ref, timeout=timeout_s))
        except Exception:
            out.append(None)
    return out
