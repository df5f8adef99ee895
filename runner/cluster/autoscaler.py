"""What Ray's autoscaler itself says about a waiting placement group.

Ray 2.60 has two autoscalers. v1 (``ray start --autoscaling-config``'s default) exposes only a
status text in the GCS key-value store. v2 (the default of ``ray up`` since Ray 2.50, and
KubeRay's with ``autoscalerOptions.version: v2``) answers the GCS ``GetClusterStatus`` call
with ``autoscaling_state.infeasible_gang_resource_requests``: the placement groups it cannot
place on the nodes it has plus the nodes it may still launch. Each entry's ``details`` is
``"<placement group id hex>:<strategy>|<state>"`` (``gcs_autoscaler_state_manager.cc``; the
``ray.autoscaler.v2.sdk.get_cluster_status`` parser drops these entries, so the reply is read
raw here).

Measured here with the ``fake_multinode`` provider: v2 lists a group as infeasible within
about a second when no node type can hold it, but also while the cluster is merely full (every
type at ``max_workers``, nodes busy), and keeps listing it for a while after room frees. So a
listing alone never fails a launch. ``Verdict.never`` asks for three things at once: v2 lists
the group, Ray's own scheduler says no live node could ever hold it (``INFEASIBLE``, not
``NO_RESOURCES``: room on live nodes would come back), and no other launch of this driver holds
resources that could free up; and it must have held for ``HOLD_S`` seconds.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

#: How long v2's verdict (with the other two conditions) must hold before a launch is given up.
HOLD_S = 5.0
#: How often the autoscaler state is read while groups wait, in seconds.
POLL_S = 2.0


def infeasible_groups(gcs_address: str, timeout_s: float = 5.0) -> set[str] | None:
    """Hex ids of the placement groups autoscaler v2 lists as infeasible; ``None`` when no v2
    autoscaler reports (v1, none, or the call failed)."""
    try:
        from ray._raylet import GcsClient
        from ray.core.generated.autoscaler_pb2 import GetClusterStatusReply

        reply = GetClusterStatusReply()
        reply.ParseFromString(GcsClient(address=gcs_address).get_cluster_status(timeout_s=timeout_s))
    except Exception:
        return None
    state = reply.autoscaling_state
    if not state.autoscaler_state_version:  # v2 never reported: v1 or no autoscaler at all
        return None
    return {g.details.split(":", 1)[0] for g in state.infeasible_gang_resource_requests if g.details}


def never_on_live_nodes(pg: Any) -> bool:
    """Ray's own scheduler says no live node could ever hold placement group ``pg`` (``INFEASIBLE``)."""
    from ray.util import placement_group_table

    try:
        entry = placement_group_table(pg)
    except Exception:
        return False
    return (entry.get("stats") or {}).get("scheduling_state") == "INFEASIBLE"


@dataclass
class Verdict:
    """Per waiting launch: since when all three conditions of ``never`` have held (monotonic s)."""

    since: dict[int, float] = field(default_factory=dict)
    last_poll: float = float("-inf")
    listed: set[str] | None = None
    given_up: bool = False

    def poll(self, gcs_address: str, now: float | None = None) -> None:
        """Refresh v2's listing at most every ``POLL_S`` seconds; after a call that took longer than
        a second without an answer (an old GCS, a network problem), never again in this run, so the
        scheduler's loop is not slowed by it."""
        now = time.monotonic() if now is None else now
        if now - self.last_poll >= POLL_S and not self.given_up:
            t0 = time.monotonic()
            self.listed = infeasible_groups(gcs_address)
            self.last_poll = now
            self.given_up = self.listed is None and time.monotonic() - t0 > 1.0

    def never(self, key: int, pgs: list[Any], others_hold: bool, now: float | None = None) -> bool:
        """True once the launch ``key``'s placement groups ``pgs`` have been unplaceable (all three
        conditions of the module docstring) for ``HOLD_S`` seconds."""
        now = time.monotonic() if now is None else now
        stuck = [pg for pg in pgs if self.listed is not None and pg.id.hex() in self.listed]
        bad = not others_hold and bool(stuck) and any(never_on_live_nodes(pg) for pg in stuck)
        if not bad:
            self.since.pop(key, None)
            return False
        return now - self.since.setdefault(key, now) >= HOLD_S

    @property
    def active(self) -> bool:
        """Whether a v2 autoscaler answered the last poll."""
        return self.listed is not None
