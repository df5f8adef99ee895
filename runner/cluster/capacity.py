"""What the cluster can have: its live nodes, plus the nodes its autoscaler may still launch.

An autoscaling cluster whose GPU node types start at zero has no GPU node alive when a sweep
begins; a configuration is feasible when some node type can hold it, and its placement group
must be created so that the autoscaler sees the demand and launches the nodes.

Ray 2.60 does not tell a driver which node types its autoscaler may launch (measured on a head
with the ``fake_multinode`` provider, under autoscaler v1 and v2: ``state.get_cluster_config()``
returns ``None`` under both, since nothing in the open-source wheel calls the GCS
``ReportClusterConfig``; v1's ``__autoscaling_status`` and v2's ``ClusterStatus`` list live and
pending nodes only). So the node types come from, first found:

1. the sweep's ``cluster:`` section (``cluster.config``: a cluster-launcher file; and/or
   ``cluster.node_types``), see ``runner.sweep.nodetypes``;
2. ``~/ray_bootstrap_config.yaml``, the copy of the launcher config that ``ray up`` leaves on
   the head, where ``ray job submit`` entrypoints run;
3. none: only live nodes count (a fixed cluster), and an UNSCHEDULABLE reason says how to
   describe the node types; unless Ray's autoscaler v2 runs, which then decides itself
   (``runner.cluster.autoscaler``: the group is created, and v2 launches a node or lists it
   infeasible).

Each launchable node is a ``ray.nodes()``-shaped entry (``"Launchable": True``, NodeID
``launchable:<type>:<i>``), ``max_workers`` minus the live nodes of that type per type, so the
placement code packs onto live and launchable nodes alike. The v1 autoscaler picks node types by
resources alone and ignores ``bundle_label_selector`` (measured: a group selecting H100 made it
launch an H200 node), so ``placement.create`` also asks for ``accelerator_type:<T>`` when the
node types declare it, as ``ray_cluster.yaml``'s do.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.sweep import nodetypes

#: Where ``ray up`` leaves the cluster-launcher config on the head node.
BOOTSTRAP = "~/ray_bootstrap_config.yaml"


@dataclass(frozen=True)
class NodeTypes:
    """Launchable node types by name, and where they were read from (``""``: none known)."""

    types: dict[str, nodetypes.NodeTypeSpec] = field(default_factory=dict)
    source: str = ""
    max_workers: int | None = None  # the launcher's cluster-wide cap on worker nodes, when known

    def describe(self) -> str:
        if not self.types:
            return "no launchable node types known: only live nodes count"
        parts = [f"{name} (0..{t.max_workers}, {_shape(t)})" for name, t in sorted(self.types.items())]
        return f"launchable node types from {self.source}: " + ", ".join(parts)


def node_types(file: str, spec: nodetypes.ClusterSpec | None, bootstrap: str = BOOTSTRAP) -> NodeTypes:
    """The node types the runner counts for sweep ``file`` (see the module docstring for the order)."""
    if spec is not None and (spec.config or spec.node_types):
        src = " and ".join(x for x in (spec.config, "cluster.node_types" if spec.node_types else "") if x)
        types, cap = nodetypes.node_types(file, spec)
        return NodeTypes(types, src, cap)
    boot = Path(bootstrap).expanduser()
    if boot.is_file():
        try:
            types, cap = nodetypes.read_launcher_config(str(boot), str(boot))
            return NodeTypes(types, str(boot), cap)
        except Exception:  # a head's own file that is not a launcher config: count live nodes only
            return NodeTypes()
    return NodeTypes()


def launchable(types: NodeTypes, live: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes the autoscaler may still add: per type, ``max_workers`` minus the live nodes of that
    type (a live node is of a type when it carries the type's labels and its GPU count), within the
    launcher's cluster-wide ``max_workers``."""
    alive = [n for n in live if n.get("Alive")]
    room = None if types.max_workers is None else max(
        types.max_workers - sum(1 for n in alive if not _is_head(n)), 0)
    out: list[dict[str, Any]] = []
    for name, t in sorted(types.types.items()):
        have = sum(1 for n in alive if _is_type(n, t))
        headroom = max(t.max_workers - have, 0)
        # the cluster-wide cap bounds each type, not the types in name order: any one type can still
        # reach it (launches that together pass it wait for nodes, up to timeouts.placement_s)
        for i in range(headroom if room is None else min(headroom, room)):
            out.append({"NodeID": f"launchable:{name}:{i}", "Alive": True, "Launchable": True, "NodeType": name,
                        "Resources": nodetypes.node_shape(t), "Labels": dict(t.labels)})
    return out


def available(live_available: dict[str, dict[str, float]], extra: list[dict[str, Any]]) -> dict[str, dict]:
    """Ray's available resources per live node, plus every launchable node's whole shape."""
    out = {k: dict(v) for k, v in live_available.items()}
    out.update({n["NodeID"]: dict(n["Resources"]) for n in extra})
    return out


def _is_type(node: dict[str, Any], t: nodetypes.NodeTypeSpec) -> bool:
    labels = node.get("Labels") or {}
    res = node.get("Resources") or {}
    return all(labels.get(k) == v for k, v in t.labels.items()) and \
        float(res.get("GPU", 0)) == float(t.resources.get("GPU", 0)) and \
        all(k in res for k in t.resources if k.startswith("accelerator_type:"))


def _is_head(node: dict[str, Any]) -> bool:
    return "node:__internal_head__" in (node.get("Resources") or {})


def _shape(t: nodetypes.NodeTypeSpec) -> str:
    res = nodetypes.node_shape(t)
    label = next(iter(t.labels.values()), "")
    return f"{res.get('GPU', 0):g} GPU" + (f" {label}" if label else "") + f", {res.get('CPU', 0):g} CPU"
