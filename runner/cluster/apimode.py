"""API modes: which actors a serving configuration needs and where they sit.

- ``engine`` (default): the engine actor drives the load through the engine's in-process
  async API; no serialisation, no HTTP. Its placement group is ``runner.cluster.placement``'s.
- ``openai``: the engine actor also serves the engine's own OpenAI-compatible HTTP API
  in-process (``Engine.serve_openai``), and a separate *client actor* streams SSE from it.
  The client gets one extra bundle ``{"CPU": CLIENT_CPUS}`` at the end of the replica's
  group, so it never competes with the engine for the engine's CPUs and, in a STRICT_PACK
  group, sits on the engine's node (the server then binds loopback only).
- ``endpoint``: no engine is started; a client actor in a group of one CPU bundle (any node,
  no GPU, no hardware label) drives an OpenAI-compatible server the runner does not own. The
  sweep's hardware and shape then only describe that server (for per-GPU figures and cost).

Invariant: in every mode the load is driven by exactly one actor per DP replica, through the
same ``runner.measure.loadgen``, so all modes produce records of one form.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from runner.cluster import placement
from runner.plan import ServingConfig

#: CPUs reserved for one client actor (its event loop is single-threaded).
CLIENT_CPUS = 1.0


def request(config: ServingConfig, nodes: list[dict[str, Any]], label_key: str = placement.LABEL_KEY
            ) -> placement.Request:
    """What one replica of ``config`` needs from the cluster in its API mode."""
    if config.api == "endpoint":
        return placement.Request("any node", "cpu", [{"CPU": CLIENT_CPUS}], "STRICT_PACK",
                                 actor_resources={"num_cpus": CLIENT_CPUS})
    req = placement.request_for(config, nodes, label_key)
    if config.api == "openai":
        return replace(req, bundles=[*req.bundles, {"CPU": CLIENT_CPUS}])
    return req


def client_bundle(req: placement.Request) -> int:
    """Index of the client actor's bundle in a replica's group (the last one)."""
    return len(req.bundles) - 1


#: ``serve_host`` value meaning "this engine actor's own node address", resolved inside the actor.
NODE_ADDRESS = "node-address"


def serve_host(req: placement.Request) -> str:
    """Where the engine actor's HTTP server listens: loopback when its client shares the node
    (STRICT_PACK), else ``NODE_ADDRESS``: the engine actor's own node IP, which only the actor can
    know (the driver's node is not the engine's on a real cluster; see ``bind_host``)."""
    return "127.0.0.1" if not req.spans_nodes else NODE_ADDRESS


def bind_host(host: str) -> str:
    """``serve_host``'s answer as an address to bind, resolved where it is called (in the actor)."""
    if host != NODE_ADDRESS:
        return host
    import ray

    return ray.util.get_node_ip_address()


def served_name(config: ServingConfig) -> str:
    """The model name the client asks for: the endpoint's, ``served_model_name``, or the model id."""
    if config.endpoint and config.endpoint.get("model"):
        return str(config.endpoint["model"])
    name = config.engine_args.get("served_model_name")
    if isinstance(name, list) and name:
        name = name[0]
    return str(name or config.model)
