"""The autoscaler-v2 verdict gives a launch up only when all three conditions hold, for HOLD_S seconds.

The Ray calls (v2's listing, Ray's scheduling state of a group) are replaced by their answers here;
the integration test (``test_autoscaling.py``, v2 head) reads them from a real autoscaler.
"""

from dataclasses import dataclass

from runner.cluster import autoscaler


@dataclass
class PG:
    hexid: str

    @property
    def id(self):
        return self

    def hex(self):
        return self.hexid


def test_never_needs_the_listing_ray_s_own_infeasible_state_no_other_launch_and_time(monkeypatch):
    state = {"a": "INFEASIBLE", "b": "NO_RESOURCES"}
    monkeypatch.setattr(autoscaler, "never_on_live_nodes", lambda pg: state[pg.hex()] == "INFEASIBLE")
    monkeypatch.setattr(autoscaler, "infeasible_groups", lambda addr: {"a", "b"})
    v = autoscaler.Verdict()
    v.poll("x", now=0.0)
    assert v.active
    a, b = [PG("a")], [PG("b")]
    assert not v.never(1, a, others_hold=False, now=0.0)                   # just listed: not yet
    assert v.never(1, a, others_hold=False, now=autoscaler.HOLD_S)          # held long enough
    # room on live nodes may come back (NO_RESOURCES), or other launches may free it
    assert not v.never(2, b, others_hold=False, now=0.0) and not v.never(2, b, others_hold=False, now=99)
    assert not v.never(3, a, others_hold=True, now=0.0) and not v.never(3, a, others_hold=True, now=99)
    # the hold restarts when a condition lapses
    assert not v.never(4, a, others_hold=False, now=0.0)
    assert not v.never(4, a, others_hold=True, now=3.0)
    assert not v.never(4, a, others_hold=False, now=4.0)
    assert not v.never(4, a, others_hold=False, now=4.0 + autoscaler.HOLD_S - 0.1)
    assert v.never(4, a, others_hold=False, now=4.0 + autoscaler.HOLD_S)


def test_without_a_v2_autoscaler_nothing_is_ever_given_up(monkeypatch):
    monkeypatch.setattr(autoscaler, "infeasible_groups", lambda addr: None)
    monkeypatch.setattr(autoscaler, "never_on_live_nodes", lambda pg: True)
    v = autoscaler.Verdict()
    v.poll("x", now=0.0)
    assert not v.active and not v.never(1, [PG("a")], others_hold=False, now=1e9)


def test_polls_at_most_every_poll_s(monkeypatch):
    calls = []
    monkeypatch.setattr(autoscaler, "infeasible_groups", lambda addr: calls.append(addr) or set())
    v = autoscaler.Verdict()
    for t in (0.0, 0.5, 1.9, autoscaler.POLL_S, autoscaler.POLL_S + 0.1):
        v.poll("x", now=t)
    assert len(calls) == 2
