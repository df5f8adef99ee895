"""SGLang across nodes: which GPUs each node's launcher drives, and the followers of rank 0.

SGLang 0.5.23 runs a replica that spans nodes as one launcher per node (``sglang.Engine``
with ``nnodes``, ``node_rank``, ``dist_init_addr``). Each launcher starts the schedulers of
its own node's TP/PP ranks (``engine._calculate_rank_ranges``) on local GPU ids ``0..g-1``,
so it must see exactly its node's ``g`` GPUs of the replica. Node rank 0 also runs the
tokenizer and serves; the others only run schedulers.

The runner's layout (``runner.cluster.placement``): one placement-group bundle ``{"GPU": g, "CPU": 1}``
per node, STRICT_SPREAD. The engine actor sits on bundle 0 and is node rank 0;
``NodeGroup.launch`` creates one ``SglangFollower`` actor per other bundle, pinned to it and
holding its ``g`` GPUs (Ray sets CUDA_VISIBLE_DEVICES for each launcher). Invariants:
- ``g = TP × PP / nnodes`` on every node, exactly (``gpus_per_node``); a shape that cannot be
  split that way over the cluster's nodes is never placed.
- node ranks: 0 is the bundle on the engine actor's node, then the other bundles in index
  order; every launcher gets the same ``nnodes`` and ``dist_init_addr`` = rank 0's node IP
  and a port that was free there (torch.distributed's rendezvous; SGLang's TCP store).
- all launchers start at once: each one's schedulers block in the rendezvous until every
  node has joined, so rank 0's ``sglang.Engine`` returns only when all nodes are up. A
  follower's ``sglang.Engine`` returns once its own schedulers are up
  (SGLANG_BLOCK_NONZERO_RANK_CHILDREN=0) and stays alive in the follower until ``stop``.
- teardown: rank 0 shuts down first (SIGKILL of its own children, so none of them can
  signal the engine actor), then the followers; a follower may already be gone by then
  (its scheduler's next collective fails, and SGLang's SIGQUIT handler kills the follower's
  whole process tree). Followers are owned by the engine actor: killing it kills them, and
  their schedulers die with them (SGLang sets PR_SET_PDEATHSIG).
- failures: a follower failing while rank 0 starts makes rank 0 fail at once with the
  follower's error (``_FollowerWatch``), leaving no process behind. A scheduler that fails on
  any node signals its launcher (SIGQUIT), and its peers fail their next collective; the
  engine actor has no SIGQUIT handler (SGLang installs one only in a main thread), so it
  dies and Ray reports ActorDiedError: the cause is in that node's worker log.
Times in seconds.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
from collections.abc import Mapping
from typing import Any, NamedTuple

#: How long rank 0 waits for its followers' ``start`` once its own engine is up (they share
#: its rendezvous, so they are up within moments), and for each follower's ``stop`` (under
#: the 20 s the driver gives the engine actor's ``stop``).
FOLLOWER_READY_S = 300.0
FOLLOWER_STOP_S = 15.0

#: Environment of a follower's ``sglang.Engine``: return once up instead of blocking forever.
FOLLOWER_ENV = {"SGLANG_BLOCK_NONZERO_RANK_CHILDREN": "0"}


class NodeLaunch(NamedTuple):
    """One SGLang launcher of a replica spanning nodes: its node rank, the bundle of the
    replica's placement group it runs in (alone on its node), and the GPUs it drives."""

    node_rank: int
    bundle_index: int
    gpus: int


def gpus_per_node(tp: int, pp: int, nnodes: int) -> int | None:
    """GPUs each of ``nnodes`` launchers drives for a TP × PP replica, or ``None`` if SGLang
    cannot split that shape over that many nodes.

    SGLang's rule (``engine._calculate_rank_ranges``): with ``nnodes <= pp`` each node holds
    ``pp / nnodes`` whole pipeline stages (full TP); with ``nnodes > pp`` each stage spans
    ``nnodes / pp`` nodes, each holding ``tp / (nnodes / pp)`` TP ranks. Either way every node
    drives ``tp × pp / nnodes`` GPUs, and the divisions must be exact: SGLang itself checks
    only ``tp × pp % nnodes == 0`` and silently assigns wrong ranks otherwise (e.g. TP=3,
    PP=2 over 3 nodes gives node 2 the non-existent stage 2).
    """
    if tp < 1 or pp < 1 or nnodes < 1:
        return None
    if nnodes <= pp:
        return tp * pp // nnodes if pp % nnodes == 0 else None
    return tp * pp // nnodes if nnodes % pp == 0 and tp % (nnodes // pp) == 0 else None


def split_nodes(tp: int, pp: int, node_gpus: list[float]) -> int | None:
    """The fewest nodes ``n >= 2`` over which SGLang can split a TP × PP replica such that at
    least ``n`` of the nodes (their GPU totals in ``node_gpus``) hold ``tp × pp / n`` GPUs each;
    ``None`` if there is no such split on these nodes. ``n = tp × pp`` (one GPU per node) is
    always a valid split, so ``None`` means there are too few nodes with enough GPUs."""
    for n in range(2, tp * pp + 1):
        per = gpus_per_node(tp, pp, n)
        if per is not None and sum(1 for g in node_gpus if g >= per) >= n:
            return n
    return None


def node_layout(bundles_to_node: Mapping[int, str], tp: int, pp: int, *,
                rank0_bundle: int = 0) -> list[NodeLaunch]:
    """Launchers for a replica whose placement group has one bundle per node, rank order.

    ``bundles_to_node``: bundle index → node id (Ray's ``placement_group_table(pg)
    ["bundles_to_node_id"]``). Node rank 0 is ``rank0_bundle`` (the engine actor's bundle);
    the other bundles follow in index order. Raises ``ValueError`` if a bundle is unplaced,
    if two bundles share a node (a launcher must own all of its node's GPUs of the replica),
    or if SGLang cannot split TP × PP evenly over that many nodes.
    """
    where = {int(b): n for b, n in bundles_to_node.items()}
    bundles = sorted(where)
    if not bundles:
        raise ValueError("sglang multi-node: the placement group has no bundles")
    if rank0_bundle not in where:
        raise ValueError(f"sglang multi-node: rank-0 bundle {rank0_bundle} is not in the group {bundles}")
    if not all(where.values()):
        raise ValueError(f"sglang multi-node: bundle(s) not placed on a node yet: {where}")
    if len(set(where.values())) != len(bundles):
        raise ValueError("sglang multi-node: needs one bundle per node (one launcher per node owns that node's "
                         f"GPUs), but bundles share nodes: {where}")
    per = gpus_per_node(tp, pp, len(bundles))
    if per is None:
        raise ValueError(f"sglang multi-node: TP={tp} x PP={pp} cannot be split evenly over {len(bundles)} nodes")
    order = [rank0_bundle] + [b for b in bundles if b != rank0_bundle]
    return [NodeLaunch(rank, b, per) for rank, b in enumerate(order)]


def launcher_args(layout: list[NodeLaunch], dist_init_addr: str) -> list[dict[str, Any]]:
    """SGLang's multi-node arguments of each launcher, in node-rank order."""
    return [{"nnodes": len(layout), "node_rank": launch.node_rank, "dist_init_addr": dist_init_addr}
            for launch in layout]


def host_port(ip: str, port: int) -> str:
    """``ip:port``, with an IPv6 address in brackets."""
    return f"[{ip}]:{port}" if ":" in ip else f"{ip}:{port}"


def _bindable(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        try:
            s.bind(("0.0.0.0", port))
        except OSError:
            return False
    return True


def _ephemeral_low() -> int:
    try:
        with open("/proc/sys/net/ipv4/ip_local_port_range") as f:
            return int(f.read().split()[0])
    except (OSError, ValueError, IndexError):
        return 32768


def free_port_below_ephemeral() -> int:
    """A free TCP port in 22000-29999, below the ephemeral range, as SGLang 0.5.23 chooses its own
    ``nccl_port`` (``utils/network.py`` get_free_port_below_ephemeral: 64 random candidates, each
    test-bound on 0.0.0.0): an OS-assigned ephemeral port may be handed to some outgoing connection
    before the rendezvous binds it. Falls back to an OS-assigned port when none is free."""
    import random

    hi = min(29999, _ephemeral_low() - 1)
    for port in random.sample(range(22000, hi + 1), min(64, max(hi - 21999, 0))):
        if _bindable(port):
            return port
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


#: Ports SGLang 0.5.23 derives from ``port`` (``server_args.py`` PortArgs.init_new): with DP attention
#: on one node, ``port + 233`` (ZMQ_TCP_PORT_DELTA) is the distributed-init port and the next six
#: (tokenizer, detokenizer, rpc, metrics, scheduler input, load collector) follow it.
SGLANG_PORT_SPAN = 233 + 7


def free_port_range(span: int = SGLANG_PORT_SPAN, tries: int = 64) -> int:
    """A port ``p`` such that ``p`` and ``p + span - 1`` … are free: ``p`` and every port SGLang derives
    from it (checked by binding each), so two engines on one node never share one. In 30000-59999."""
    import random

    for _ in range(tries):
        p = random.randrange(30000, 60000 - span)
        if all(_bindable(q) for q in (p, *range(p + 233, p + span))):
            return p
    raise RuntimeError(f"no free range of {span} ports found in 30000-59999")



def placed() -> dict[str, Any]:
    """Where the calling Ray worker runs and which GPUs it holds."""
    import ray

    ctx = ray.get_runtime_context()
    return {"node_id": ctx.get_node_id(), "actor_id": ctx.get_actor_id(), "ip": ray.util.get_node_ip_address(),
            "hostname": socket.gethostname(), "pid": os.getpid(),
            "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "gpu_ids": [str(g) for g in ray.get_gpu_ids()]}


def resolved(engine: Any) -> dict[str, Any]:
    """The multi-node arguments SGLang actually runs with (its ServerArgs), not what was asked."""
    args = getattr(engine, "server_args", None)
    return {k: getattr(args, k, None) for k in ("nnodes", "node_rank", "dist_init_addr", "tp_size", "pp_size")}


def follower_options(pg: Any, bundle_index: int) -> dict[str, Any]:
    """Ray actor options of the follower on ``bundle_index``: pinned to that bundle, holding
    all of its GPUs (so Ray sets CUDA_VISIBLE_DEVICES to them) and its CPU, never restarted."""
    from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    spec = pg.bundle_specs[bundle_index]
    return {"scheduling_strategy": PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=bundle_index),
            "num_gpus": float(spec.get("GPU", 0)), "num_cpus": float(spec.get("CPU", 0)),
            "max_restarts": 0, "max_task_retries": 0}


class SglangFollower:
    """SGLang's launcher for one node of rank >= 1: a Ray actor (created by rank 0's
    ``NodeGroup.launch``, pinned to its node's bundle) whose engine runs that node's
    schedulers and serves nothing (rank 0 does). Its process owns nothing but the engine."""

    def __init__(self) -> None:
        self._engine: Any = None

    def start(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Launch this node's part of the replica; return once its schedulers are up."""
        import sglang

        os.environ.update(FOLLOWER_ENV)  # read by SGLang when the engine launches
        self._engine = sglang.Engine(**kwargs)
        return {**placed(), **resolved(self._engine), "child_pids": list(self._engine.get_all_child_pids() or [])}

    def stop(self) -> None:
        if self._engine is not None:
            engine, self._engine = self._engine, None
            engine.shutdown()  # SIGKILLs every descendant of this actor's process: its schedulers


def kill_own_children(wait_s: float = 0.0) -> None:
    """SIGKILL every descendant of this process (an engine actor owns nothing but SGLang's
    processes); wait up to ``wait_s`` for them to exit."""
    import psutil

    children = psutil.Process().children(recursive=True)
    for child in children:
        with contextlib.suppress(psutil.Error):
            child.kill()
    if wait_s > 0:
        psutil.wait_procs(children, timeout=wait_s)


class _FollowerWatch:
    """While rank 0's launcher blocks in SGLang's rendezvous, watch the followers' ``start``
    calls from a thread. Once one fails, record why and keep killing rank 0's child processes
    (this actor owns no others) until ``close``: rank 0's ``sglang.Engine`` then fails at once
    (it sees its schedulers die), instead of waiting out the rendezvous timeout."""

    def __init__(self, refs: list[Any]):
        self.error: str | None = None
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(list(refs),), daemon=True, name="sglang-followers")
        self._thread.start()

    def _run(self, pending: list[Any]) -> None:
        import ray

        while pending and self.error is None and not self._done.is_set():
            ready, pending = ray.wait(pending, num_returns=1, timeout=0.5)
            for ref in ready:
                try:
                    ray.get(ref)
                except Exception as e:
                    self.error = f"{type(e).__name__}: {str(e)[:1500]}"
        while self.error is not None and not self._done.is_set():
            kill_own_children()
            self._done.wait(0.5)

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)


class NodeGroup:
    """The followers of one replica spanning nodes, run from its rank-0 engine actor."""

    def __init__(self) -> None:
        self.layout: list[NodeLaunch] = []
        self._followers: list[tuple[Any, Any]] = []  # (follower actor, its start ref)
        self._watch: _FollowerWatch | None = None

    def launch(self, tp: int, pp: int, kwargs: dict[str, Any]) -> dict[str, Any]:
        """Start one follower per other node of the calling actor's placement group (their
        ``start`` calls stay in flight: they block in the rendezvous until rank 0 joins it);
        return rank 0's engine arguments. Must run in the engine actor, inside the group."""
        import ray
        from ray.util import placement_group_table
        from ray.util.placement_group import get_current_placement_group

        pg = get_current_placement_group()
        if pg is None:
            raise RuntimeError("sglang multi-node: the engine actor is not in a placement group")
        table = {int(b): n for b, n in (placement_group_table(pg).get("bundles_to_node_id") or {}).items()}
        here = ray.get_runtime_context().get_node_id()
        mine = [b for b, n in table.items() if n == here]
        if len(mine) != 1:
            raise RuntimeError(f"sglang multi-node: the engine actor's node {here} holds {len(mine)} bundles of its "
                               f"group (needs exactly 1): {table}")
        layout = node_layout(table, tp, pp, rank0_bundle=mine[0])
        specs = pg.bundle_specs
        for launch in layout:
            have = specs[launch.bundle_index].get("GPU", 0)
            if have and have < launch.gpus:
                raise RuntimeError(f"sglang multi-node: bundle {launch.bundle_index} holds {have:g} GPU(s), "
                                   f"node rank {launch.node_rank} drives {launch.gpus}")
        args = launcher_args(layout, host_port(ray.util.get_node_ip_address(), free_port_below_ephemeral()))
        self.layout = layout
        cls = ray.remote(SglangFollower)  # inherits the engine actor's runtime env (the lane)
        for launch, own in zip(layout[1:], args[1:]):
            follower = cls.options(**follower_options(pg, launch.bundle_index)).remote()
            self._followers.append((follower, follower.start.remote({**kwargs, **own})))
        self._watch = _FollowerWatch([ref for _, ref in self._followers])
        return {**kwargs, **args[0]}

    @property
    def failure(self) -> str | None:
        """Why a follower failed while rank 0 was starting, if one did."""
        return self._watch.error if self._watch is not None else None

    async def ready(self) -> list[dict[str, Any]]:
        """Once rank 0's engine is up: every follower's placement and resolved arguments."""
        infos = await asyncio.wait_for(asyncio.gather(*(ref for _, ref in self._followers)), FOLLOWER_READY_S)
        self._close_watch()
        return list(infos)

    def _close_watch(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    async def stop(self, graceful: bool = True) -> None:
        """Stop (if ``graceful``) and kill every follower; never raises."""
        import ray

        self._close_watch()
        followers, self._followers = self._followers, []
        if graceful and followers:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(asyncio.gather(*(f.stop.remote() for f, _ in followers),
                                                      return_exceptions=True), FOLLOWER_STOP_S)
        for f, _ in followers:
            with contextlib.suppress(Exception):
                ray.kill(f, no_restart=True)
