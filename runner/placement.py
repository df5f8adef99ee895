"""Serving configurations → Ray placement-group requests, and feasibility against the cluster.

Invariants:
- One replica = one placement group. GPU hardware asks for ``{"GPU": n, "CPU": 1}`` in one
  STRICT_PACK bundle on a node whose ``label_key`` label equals the catalogue's ``label``
  (or that has the resource ``accelerator_type:<label>``); CPU hardware asks for
  ``{"CPU": cpus_per_device × TP × PP}`` and no label.
- ``check()`` decides from ``ray.nodes()`` alone, before anything is reserved: a request that
  no alive node can ever hold gets a reason naming what is missing.
- Group names start with ``prefix(sweep)``, so a restarted driver can find and remove orphans.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from runner import catalog
from runner.trial import ServingConfig

LABEL_KEY = "ray.io/accelerator-type"


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

    @property
    def devices(self) -> int:
        return int(sum(b.get("GPU", 0) for b in self.bundles)) if self.kind == "gpu" else 0


def request_for(config: ServingConfig, label_key: str = LABEL_KEY) -> Request:
    hw = catalog.hardware()[config.hardware]
    n = config.gpus_per_replica
    env = {str(k): str(v) for k, v in (hw.get("env") or {}).items()}
    if hw["kind"] == "cpu":
        cpus = float(hw.get("cpus_per_device", 1) * n)
        if n > 1:  # one NUMA node here: the default binding asserts for TP > 1
            env.setdefault("VLLM_CPU_OMP_THREADS_BIND", "|".join(str(i) for i in range(n)))
        return Request(config.hardware, "cpu", [{"CPU": cpus}], "STRICT_PACK",
                       actor_resources={"num_cpus": cpus}, env=env)
    return Request(config.hardware, "gpu", [{"GPU": float(n), "CPU": 1.0}], "STRICT_PACK",
                   label=hw.get("label", config.hardware), label_key=label_key,
                   actor_resources={"num_gpus": float(n), "num_cpus": 1.0}, env=env)


def _node_matches(node: dict[str, Any], req: Request) -> bool:
    if req.label is None:
        return True
    labels = node.get("Labels") or {}
    res = node.get("Resources") or {}
    return labels.get(req.label_key) == req.label or f"accelerator_type:{req.label}" in res


def check(req: Request, nodes: list[dict[str, Any]]) -> str | None:
    """``None`` if some alive node can hold a bundle, else the reason it never can."""
    alive = [n for n in nodes if n.get("Alive")]
    typed = [n for n in alive if _node_matches(n, req)]
    if not typed:
        return (f"no alive node has {req.label_key}={req.label} (or resource "
                f"accelerator_type:{req.label}); nodes: {_describe(alive)}")
    need = req.bundles[0]
    for n in typed:
        res = n.get("Resources") or {}
        if all(res.get(k, 0) >= v for k, v in need.items()):
            return None
    kind = "GPU" if req.kind == "gpu" else "CPU"
    most = max((n.get("Resources") or {}).get(kind, 0) for n in typed)
    return (f"needs {need.get(kind, 0):g} {kind} on one {req.hardware} node; the largest has {most:g}")


def _describe(nodes: list[dict[str, Any]]) -> str:
    out = []
    for n in nodes:
        label = (n.get("Labels") or {}).get(LABEL_KEY, "-")
        res = n.get("Resources") or {}
        out.append(f"{label}:{res.get('GPU', 0):g}gpu/{res.get('CPU', 0):g}cpu")
    return ", ".join(out) or "none"


def prefix(sweep: str) -> str:
    return f"runner:{sweep}:"


def create(req: Request, name: str, nodes: list[dict[str, Any]]) -> Any:
    """Create the placement group (pending until the cluster has room).

    The GPU type is enforced by a bundle label selector when the matching nodes carry the
    label, else by a sliver of the ``accelerator_type:<label>`` resource.
    """
    from ray.util.placement_group import placement_group

    bundles = [dict(b) for b in req.bundles]
    kwargs: dict[str, Any] = {"strategy": req.strategy, "name": name}
    if req.label is not None:
        labelled = any((n.get("Labels") or {}).get(req.label_key) == req.label for n in nodes if n.get("Alive"))
        if labelled:
            kwargs["bundle_label_selector"] = [{req.label_key: req.label}] * len(bundles)
        else:
            for b in bundles:
                b[f"accelerator_type:{req.label}"] = 0.001
    return placement_group(bundles=bundles, **kwargs)


def remove_orphans(sweep: str) -> int:
    """Remove live groups whose name carries this sweep's prefix; return how many."""
    from ray._raylet import PlacementGroupID
    from ray.util import placement_group_table
    from ray.util.placement_group import PlacementGroup, remove_placement_group

    removed = 0
    for pg_id, info in placement_group_table().items():
        if info.get("name", "").startswith(prefix(sweep)) and info.get("state") != "REMOVED":
            remove_placement_group(PlacementGroup(PlacementGroupID.from_hex(pg_id)))
            removed += 1
    return removed
