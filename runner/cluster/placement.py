"""Serving configurations → Ray placement-group requests; feasibility and fit against the cluster.

One engine replica = one placement group. For a replica of ``n = TP × PP`` devices:
- GPU hardware, ``n`` fits one node of the type → one bundle ``{"GPU": n, "CPU": 1}``,
  STRICT_PACK; the engine actor holds all ``n`` GPUs, so Ray sets its CUDA_VISIBLE_DEVICES.
- GPU hardware, ``n`` larger than any node → ``n`` bundles of ``{"GPU": 1}`` (the first also
  ``"CPU": 1``), PACK across nodes: the layout vLLM's Ray executor reuses from the caller's
  group. The actor holds no GPU; its child tasks (the engine's workers) are captured.
- the same for engine ``sglang`` → one bundle ``{"GPU": g, "CPU": 1}`` per node, STRICT_SPREAD,
  over the fewest nodes ``n`` SGLang can split TP × PP across with ``g = TP × PP / n`` GPUs on
  each (``sglang_nodes.split_nodes``; the cluster must have ``n`` nodes of the type with at
  least ``g`` GPUs): SGLang runs one launcher per node, which must see all of that node's GPUs
  of the replica. The engine actor holds bundle 0's ``g`` GPUs (node rank 0) and starts one
  follower per other bundle. ``Request.reason`` says why a request can never be placed.
- CPU hardware → one bundle ``{"CPU": cpus_per_device × n}``, STRICT_PACK.
The GPU type is a node label (``label_key``, default ``ray.io/accelerator-type``) or the
resource ``accelerator_type:<label>``. Invariants: ``check`` decides from node *totals* alone
(can this ever fit, all DP replicas at once?), ``fits_now`` from current availability; group
names are ``runner:<sweep>:<driver id>:<launch>-r<i>`` (``group_name``), so a later driver removes
only the groups of drivers whose lease is not live (``remove_orphans``), never a live one's.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from runner.plan import ServingConfig
from runner.sweep import catalog

LABEL_KEY = "ray.io/accelerator-type"
NODE_ID_LABEL = "ray.io/node-id"  # every Ray 2.60 node carries it (ray.util.placement_group.NODE_ID_LABEL_KEY)


@dataclass(frozen=True)
class Request:
    """What one engine replica needs from the cluster."""

    hardware: str
    kind: str
    bundles: list[dict[str, float]]
    strategy: str
    label: str | None = None
    label_key: str = LABEL_KEY
    actor_resources: dict[str, float] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)
    reason: str | None = None  # set when the shape can never be placed whatever the cluster
    group: int = 1  # consecutive bundles that must share a node (vLLM across nodes: one TP group)

    @property
    def devices(self) -> int:
        return int(sum(b.get("GPU", 0) for b in self.bundles))

    @property
    def spans_nodes(self) -> bool:
        return self.strategy != "STRICT_PACK"


def _matches(node: dict[str, Any], label: str | None, label_key: str) -> bool:
    if label is None:
        return True
    return (node.get("Labels") or {}).get(label_key) == label or \
        f"accelerator_type:{label}" in (node.get("Resources") or {})


def typed_nodes(nodes: list[dict[str, Any]], label: str | None, label_key: str = LABEL_KEY) -> list[dict]:
    """Alive nodes of the type (``label``); for a request of no type (CPU hardware, a client), every
    live node and only the launchable nodes without GPUs: a CPU bundle never makes the autoscaler
    launch a GPU node."""
    return [n for n in nodes if n.get("Alive") and _matches(n, label, label_key)
            and not (label is None and n.get("Launchable") and (n.get("Resources") or {}).get("GPU", 0) > 0)]


def request_for(config: ServingConfig, nodes: list[dict[str, Any]], label_key: str = LABEL_KEY) -> Request:
    hw = catalog.hardware()[config.hardware]
    n = config.gpus_per_replica
    env = {str(k): str(v) for k, v in (hw.get("env") or {}).items()}
    if hw["kind"] == "cpu":
        cpus = float(hw.get("cpus_per_device", 1) * n)
        if n > 1:  # one NUMA node here: the default binding asserts for TP > 1
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "|".join(str(i) for i in range(n)))
        return Request(config.hardware, "cpu", [{"CPU": cpus}], "STRICT_PACK",
                       actor_resources={"num_cpus": cpus}, env=env)
    label = hw.get("label", config.hardware)
    most = max((t.get("Resources", {}).get("GPU", 0) for t in typed_nodes(nodes, label, label_key)), default=0)
    if n <= max(most, 1):
        return Request(config.hardware, "gpu", [{"GPU": float(n), "CPU": 1.0}], "STRICT_PACK", label, label_key,
                       {"num_gpus": float(n), "num_cpus": 1.0}, env)
    if config.engine == "sglang":
        sizes = [float((t.get("Resources") or {}).get("GPU", 0)) for t in typed_nodes(nodes, label, label_key)]
        return _sglang_across_nodes(config, label, label_key, sizes, env)
    bundles = [{"GPU": 1.0, "CPU": 1.0}] + [{"GPU": 1.0} for _ in range(n - 1)]
    return Request(config.hardware, "gpu", bundles, "PACK", label, label_key, {"num_cpus": 1.0}, env,
                   group=tp_unit(config.tp, most))


def tp_unit(tp: int, node_gpus: float) -> int:
    """Bundles of a vLLM replica spanning nodes that must share a node: the whole TP group when a
    node of the type holds it (PP stages then split across nodes, never a TP group); when TP is
    larger than every node (GB200 NVL72's NVLink spans nodes), the largest slice of it that divides
    TP and fits a node, so each node holds whole slices of consecutive ranks."""
    if node_gpus <= 0:
        return 1
    return next(u for u in range(min(tp, int(node_gpus)), 0, -1) if tp % u == 0)


def _sglang_across_nodes(config: ServingConfig, label: str, label_key: str, node_gpus: list[float],
                         env: dict[str, str]) -> Request:
    """One bundle per node holding that node's GPUs of the replica (SGLang: one launcher per node).

    ``node_gpus``: GPU totals of the alive nodes of the type. The split is the fewest nodes
    these nodes can hold; if none, the fewest nodes of the largest size, which ``check`` then
    reports as too few nodes (a larger cluster of the same nodes could run it).
    """
    from runner.engines import sglang_nodes

    n = config.gpus_per_replica
    most = max(node_gpus, default=0.0)
    nnodes = sglang_nodes.split_nodes(config.tp, config.pp, node_gpus) or \
        sglang_nodes.split_nodes(config.tp, config.pp, [most] * n)
    if nnodes is None:  # no node of the type holds even one GPU
        return Request(config.hardware, "gpu", [{"GPU": float(n), "CPU": 1.0}], "STRICT_SPREAD", label, label_key,
                       {"num_cpus": 1.0}, env,
                       reason=f"sglang needs nodes with at least 1 {config.hardware} GPU for TP={config.tp} x "
                              f"PP={config.pp} (one launcher per node), but the largest has {most:g}")
    g = float(n // nnodes)
    return Request(config.hardware, "gpu", [{"GPU": g, "CPU": 1.0} for _ in range(nnodes)], "STRICT_SPREAD",
                   label, label_key, {"num_gpus": g, "num_cpus": 1.0}, env)


def pack(reqs: list[Request], capacity: dict[str, dict[str, float]],
         layouts: list[list[str]] | None = None) -> bool:
    """First-fit decreasing of every bundle onto node capacities (mutated); STRICT_PACK groups
    whole, STRICT_SPREAD bundles each on a node of their own, and a spanning group's bundles in
    units of ``req.group`` that each land on one node (vLLM: a TP group never spans nodes).
    ``layouts``, when given, receives each request's node id per bundle, in ``reqs`` order."""
    chosen: dict[int, list[str]] = {}
    for i, req in sorted(enumerate(reqs), key=lambda ir: -sum(b.get("GPU", b.get("CPU", 0)) for b in ir[1].bundles)):
        if req.reason:
            return False
        nodes = list(capacity)
        where: list[str] = []
        if req.spans_nodes:
            used: set[str] = set()
            g = max(req.group, 1)
            for start in range(0, len(req.bundles), g):
                unit = req.bundles[start:start + g]
                need = {r: sum(b.get(r, 0) for b in unit) for b in unit for r in b}
                spot = next((k for k in nodes if k not in used
                             and all(capacity[k].get(r, 0) >= v for r, v in need.items())), None)
                if spot is None:
                    return False
                if req.strategy == "STRICT_SPREAD":
                    used.add(spot)
                for r, v in need.items():
                    capacity[spot][r] -= v
                where += [spot] * len(unit)
        else:
            need = {r: sum(b.get(r, 0) for b in req.bundles) for b in req.bundles for r in b}
            spot = next((k for k in nodes if all(capacity[k].get(r, 0) >= v for r, v in need.items())), None)
            if spot is None:
                return False
            for r, v in need.items():
                capacity[spot][r] -= v
            where = [spot] * len(req.bundles)
        chosen[i] = where
    if layouts is not None:
        layouts.extend(chosen[i] for i in range(len(reqs)))
    return True


def check(reqs: list[Request], nodes: list[dict[str, Any]]) -> str | None:
    """``None`` if all replicas can ever be placed at once, else a reason naming what is missing."""
    req = reqs[0]
    alive = [n for n in nodes if n.get("Alive")]
    typed = typed_nodes(alive, req.label, req.label_key)
    if not typed:
        return (f"no node has {req.label_key}={req.label} (or resource accelerator_type:{req.label}), alive or "
                f"launchable; nodes: {describe_nodes(alive)}")
    if req.reason:
        return req.reason
    kind = "GPU" if req.kind == "gpu" else "CPU"
    cap = {n["NodeID"]: dict(n.get("Resources") or {}) for n in typed}
    if pack(reqs, cap):
        return None
    per = max(sum(b.get(kind, 0) for b in r.bundles) for r in reqs)
    total = sum((n.get("Resources") or {}).get(kind, 0) for n in typed)
    most = max((n.get("Resources") or {}).get(kind, 0) for n in typed)
    if req.strategy == "STRICT_SPREAD":
        where = (f"as {len(req.bundles)} bundles of {req.bundles[0].get(kind, 0):g} {kind} on {len(req.bundles)} "
                 "separate nodes (SGLang: one launcher per node, equal GPUs on each)")
    else:
        where = "on one node" if not req.spans_nodes else "across nodes"
    more = sum(1 for n in typed if n.get("Launchable"))
    return (f"needs {len(reqs)} replica(s) × {per:g} {kind} of {req.hardware} {where}; the cluster has "
            f"{len(typed)} such node(s){f' ({len(typed) - more} live, {more} launchable)' if more else ''}, "
            f"{total:g} {kind} in all, at most {most:g} per node")


def fits_now(reqs: list[Request], nodes: list[dict[str, Any]], available: dict[str, dict[str, float]]) -> bool:
    """Whether all replicas fit the cluster's currently available resources (``available`` unchanged)."""
    return reserve(reqs, nodes, dict(available))  # reserve replaces the entries it takes, never edits them


def reserve(reqs: list[Request], nodes: list[dict[str, Any]], available: dict[str, dict[str, float]],
            layouts: list[list[str]] | None = None) -> bool:
    """Take all replicas out of ``available`` (mutated), on nodes of their type only; if they do
    not all fit, ``available`` is left unchanged and the answer is False. ``layouts`` receives the
    node id chosen for each bundle of each replica."""
    req = reqs[0]
    ids = {n["NodeID"] for n in typed_nodes(nodes, req.label, req.label_key)}
    cap = {k: dict(v) for k, v in available.items() if k in ids}
    chosen: list[list[str]] = []
    if not pack(reqs, cap, chosen):
        return False
    available.update(cap)
    if layouts is not None:
        layouts[:] = chosen
    return True


def retake(reqs: list[Request], layouts: list[list[str]], nodes: list[dict[str, Any]],
           available: dict[str, dict[str, float]]) -> bool:
    """Take a created but not yet ready launch's resources out of ``available`` again (mutated only
    when all fit): bundles pinned to live nodes (``create``) exactly there, the rest as ``reserve``
    packs them, so admission's model of the cluster matches where Ray must put the group."""
    live = {n["NodeID"] for n in nodes if n.get("Alive") and not n.get("Launchable")}
    cap = {k: dict(v) for k, v in available.items()}
    rest: list[Request] = []
    for i, req in enumerate(reqs):
        lay = layouts[i] if i < len(layouts) else []
        if not (req.group > 1 and req.spans_nodes and len(lay) == len(req.bundles) and set(lay) & live):
            rest.append(req)
            continue
        for b, node in zip(req.bundles, lay):
            if node not in live:
                continue
            if node not in cap or any(cap[node].get(r, 0) < v for r, v in b.items()):
                return False
            for r, v in b.items():
                cap[node][r] -= v
        unpinned = [b for b, node in zip(req.bundles, lay) if node not in live]  # whole units (pack kept them so)
        if unpinned:
            rest.append(replace(req, bundles=unpinned))
    if rest and not reserve(rest, nodes, cap):
        return False
    available.update(cap)
    return True


def split_groups(req: Request, bundle_nodes: dict[int, str], engine_node: str | None = None) -> str | None:
    """``None`` when every TP group of a placed spanning group lies on one node, else why not.

    vLLM 0.32/0.33's Ray executor (``ray_utils.get_bundles_sorted_by_node``) ranks the GPU
    bundles of the caller's group with the engine's own node first, then the other nodes by node
    id, in bundle order within a node; ``parallel_state`` makes each ``tp`` consecutive ranks one
    TP group. So the groups are whole exactly when every node holds a multiple of ``tp`` bundles.
    ``bundle_nodes``: Ray's ``bundles_to_node_id``; ``engine_node``: bundle 0's node by default.
    """
    if req.group <= 1 or not req.spans_nodes or req.strategy != "PACK":
        return None
    gpu = {k: n for k, n in bundle_nodes.items() if k < len(req.bundles) and req.bundles[k].get("GPU", 0) > 0}
    if not gpu:  # a group Ray no longer knows (removed): nothing to check
        return None
    counts: dict[str, int] = {}
    for k in sorted(gpu):  # GPU bundles only, as vLLM ranks them (api openai adds a CPU bundle for its client)
        counts[gpu[k]] = counts.get(gpu[k], 0) + 1
    first = engine_node or gpu[min(gpu)]
    order = [first, *sorted(n for n in counts if n != first)]
    bad = [f"{n[:12]}: {counts[n]}" for n in order if counts[n] % req.group]
    if not bad:
        return None
    return (f"the group's {len(gpu)} GPU bundles landed {', '.join(f'{n[:12]}: {counts[n]}' for n in order)} "
            f"per node; TP={req.group} needs a multiple of {req.group} on each node, or a TP group would span "
            f"nodes ({', '.join(bad)})")


def describe_nodes(nodes: list[dict[str, Any]]) -> str:
    """Each node as `<label>:<GPUs>gpu/<CPUs>cpu`, launchable ones with their type."""
    out = []
    for n in nodes:
        label = (n.get("Labels") or {}).get(LABEL_KEY, "-")
        res = n.get("Resources") or {}
        kind = f" (launchable type {n['NodeType']})" if n.get("Launchable") else ""
        out.append(f"{label}:{res.get('GPU', 0):g}gpu/{res.get('CPU', 0):g}cpu{kind}")
    return ", ".join(out) or "none"


def prefix(sweep: str) -> str:
    return f"runner:{sweep}:"


def group_name(sweep: str, driver: str, launch: str) -> str:
    """The name of a group a driver creates; ``launch`` names the launch and replica."""
    return f"{prefix(sweep)}{driver}:{launch}"


def driver_of(sweep: str, name: str) -> str | None:
    """The driver id a group name of ``sweep`` carries; ``None`` for another sweep's group or a name
    without one (made before group names carried drivers: whose it is cannot be known)."""
    m = re.fullmatch(r"runner:(?P<sweep>[^:]+):(?P<driver>[0-9a-f]{12}):[^:]+", name)
    return m["driver"] if m and m["sweep"] == sweep else None


def create(req: Request, name: str, nodes: list[dict[str, Any]], layout: list[str] | None = None, *,
           by_label: bool = False) -> Any:
    """Create the placement group (pending until the cluster has room).

    The GPU type is enforced by a bundle label selector when the matching nodes carry the
    label, else by a sliver of the ``accelerator_type:<label>`` resource. The strategy is the
    request's own (STRICT_SPREAD for SGLang across nodes: one bundle per node). A spanning group
    whose bundles come in units (``req.group``: vLLM's TP groups) is pinned to the live nodes the
    admission chose (``layout``, by Ray's ``ray.io/node-id`` label), since PACK alone is best effort
    and may split a unit; bundles on launchable nodes are not pinned (their ids do not exist yet),
    and every spanning group is checked once placed (``split_groups``). ``by_label``: no node of
    the type is known, and autoscaler v2 (which honours label selectors) decides: the label alone,
    as Ray labels GPU nodes with it itself (``resource_and_label_spec._get_default_labels``).
    """
    from ray.util.placement_group import placement_group

    if req.reason:
        raise ValueError(f"cannot place {req.hardware}: {req.reason}")
    bundles = [dict(b) for b in req.bundles]
    kwargs: dict[str, Any] = {"strategy": req.strategy, "name": name}
    if req.label is not None:
        typed = typed_nodes(nodes, req.label, req.label_key)  # live and launchable
        resource = f"accelerator_type:{req.label}"
        labelled = by_label or any((n.get("Labels") or {}).get(req.label_key) == req.label for n in typed)
        if labelled:
            kwargs["bundle_label_selector"] = [{req.label_key: req.label} for _ in bundles]
        # the resource too when every node of the type declares it: the v1 autoscaler picks node types by
        # resources alone (it ignores label selectors), and it costs nothing on nodes that have it
        if not by_label and (not labelled or all(resource in (n.get("Resources") or {}) for n in typed)):
            for b in bundles:
                b[resource] = 0.001
    live = {n["NodeID"] for n in nodes if n.get("Alive") and not n.get("Launchable")}
    if req.group > 1 and req.spans_nodes and layout and len(layout) == len(bundles) and set(layout) & live:
        selectors = kwargs.get("bundle_label_selector") or [{} for _ in bundles]
        kwargs["bundle_label_selector"] = [{**sel, NODE_ID_LABEL: node} if node in live else sel
                                           for sel, node in zip(selectors, layout)]  # launchable: no id yet
    return placement_group(bundles=bundles, **kwargs)


def remove_orphans(sweep: str, *, live: Callable[[str], bool]) -> int:
    """Remove the groups of ``sweep`` whose name carries the id of a driver ``live`` says is not
    live (its lease expired or was released); return how many. ``live`` is asked once per driver;
    the caller's own id must answer True."""
    from ray._raylet import PlacementGroupID
    from ray.util import placement_group_table
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    removed, answers = 0, {}
    for pg_id, info in placement_group_table().items():
        driver = driver_of(sweep, info.get("name", ""))
        if driver is None or info.get("state") == "REMOVED":
            continue
        if driver not in answers:
            answers[driver] = live(driver)
        if not answers[driver]:
            remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
            removed += 1
    return removed


def bundle_nodes_by_index(pgs: list[Any]) -> list[dict[int, str]]:
    from ray.util import placement_group_table

    return [{int(k): v for k, v in (placement_group_table(pg).get("bundles_to_node_id") or {}).items()} for pg in pgs]


def bundle_nodes(pgs: list[Any]) -> list[list[str]]:
    """Per replica, the node id of each bundle of its group (shows a group spanning nodes)."""
    from ray.util import placement_group_table

    out = []
    for pg in pgs:
        table = placement_group_table(pg).get("bundles_to_node_id") or {}
        out.append([table[k] for k in sorted(table)])
    return out
