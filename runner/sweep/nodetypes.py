"""The node types an autoscaling cluster may still launch, as a sweep file describes them.

An autoscaling cluster starts with few nodes (GPU node types often at zero); feasibility must
count what it *can* have. Ray reports its node types where it can (see
``runner.cluster.capacity``); where it cannot, the sweep says them in a ``cluster:`` section:

```yaml
cluster:
  config: ray_cluster.yaml        # a cluster-launcher file: its available_node_types
  node_types:                     # and/or listed here (the same keys; these win by name)
    h100: {resources: {GPU: 8, "accelerator_type:H100": 1},
           labels: {ray.io/accelerator-type: H100}, max_workers: 4}
```

Invariants: a node type's ``resources`` are what one node of it offers (GPU counts are whole
numbers of devices); ``max_workers`` is how many nodes of it may exist at once, live ones
included. A resource a type does not list is not assumed: the cluster launcher fills ``CPU``
and ``memory`` in from the instance type, so a type without ``CPU`` is taken to have
``DEFAULT_CPUS_PER_GPU`` per GPU (at least one), which the runner's bundles (one CPU per
engine actor) never approach on a GPU instance.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from runner.core import SweepSpecError

#: CPUs assumed per GPU for a node type whose ``resources`` leave CPU to the provider.
DEFAULT_CPUS_PER_GPU = 8


class NodeTypeSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)  # a launcher file's node_config etc.: see FIELDS

    resources: dict[str, Annotated[float, Field(ge=0)]] = Field(default_factory=dict)
    labels: dict[str, str] = Field(default_factory=dict)
    min_workers: int = Field(default=0, ge=0)
    max_workers: int = Field(default=0, ge=0)


class ClusterSpec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    config: str | None = Field(default=None, description="A Ray cluster-launcher YAML whose available_node_types "
                                                         "the autoscaler may launch.")
    node_types: dict[str, NodeTypeSpec] = Field(default_factory=dict,
                                                description="Node types the autoscaler may launch, by name.")


def node_types(file: str, spec: ClusterSpec | None) -> tuple[dict[str, NodeTypeSpec], int | None]:
    """Launchable node types by name (the launcher file's, then the sweep's own, which win), and the
    launcher file's cluster-wide ``max_workers`` when it sets one.

    The launcher file's head type is left out (it is the head: it already runs). Raises
    ``SweepSpecError`` naming ``cluster.config`` when the file cannot be read as a launcher config.
    """
    if spec is None:
        return {}, None
    out, cap = read_launcher_config(file, spec.config) if spec.config else ({}, None)
    return {**out, **spec.node_types}, cap


def _read(file: str, path: str) -> dict[str, Any]:
    p = Path(path).expanduser()
    if not p.is_absolute() and not p.exists() and (Path(file).parent / p).exists():
        p = Path(file).parent / p
    try:
        raw = yaml.safe_load(p.read_text())
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as e:
        raise SweepSpecError(file, "cluster.config", path, f"a readable Ray cluster-launcher YAML ({e})",
                             "check the path (relative to the working directory or the sweep file)") from None
    return raw if isinstance(raw, dict) else {}


def read_launcher_config(file: str, path: str) -> tuple[dict[str, NodeTypeSpec], int | None]:
    """``available_node_types`` of a cluster-launcher YAML, minus its ``head_node_type``, and its
    cluster-wide ``max_workers`` (worker nodes at most) when it sets one; one read of the file."""
    raw = _read(file, path)
    types = raw.get("available_node_types")
    if not isinstance(types, dict) or not types:
        raise SweepSpecError(file, "cluster.config", path, "a cluster-launcher YAML with available_node_types")
    head = raw.get("head_node_type")
    value = raw.get("max_workers")
    cap = int(value) if isinstance(value, int) and value >= 0 else None
    out = {}
    for name, entry in types.items():
        if name == head:
            continue
        fields = {k: v for k, v in (entry or {}).items() if k in NodeTypeSpec.model_fields}
        if "max_workers" not in fields and cap is not None:  # as Ray's fill_node_type_min_max_workers
            fields["max_workers"] = cap
        try:
            out[str(name)] = NodeTypeSpec.model_validate(fields)
        except ValidationError as e:
            err = e.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise SweepSpecError(file, f"cluster.config: available_node_types.{name}.{where}",
                                 err.get("input"), err["msg"]) from None
    return out, cap


def node_shape(t: NodeTypeSpec) -> dict[str, Any]:
    """One node of type ``t`` as the resources a scheduler counts (CPU filled in when left out)."""
    res = {k: float(v) for k, v in t.resources.items()}
    if "CPU" not in res:
        res["CPU"] = float(max(1, int(res.get("GPU", 0)) * DEFAULT_CPUS_PER_GPU))
    return res
