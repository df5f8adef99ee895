"""Placement-group names carry the sweep and the driver, so orphan cleanup can tell whose a group is."""

from runner.cluster import placement


def test_a_group_name_carries_its_sweep_and_driver():
    name = placement.group_name("demo", "0123456789ab", "a3492d5f37a0c700-1-r0")
    assert name == "runner:demo:0123456789ab:a3492d5f37a0c700-1-r0"
    assert name.startswith(placement.prefix("demo"))
    assert placement.driver_of("demo", name) == "0123456789ab"


def test_other_sweeps_and_names_without_a_driver_are_no_ones_to_remove():
    name = placement.group_name("demo", "0123456789ab", "x-1-r0")
    assert placement.driver_of("dem", name) is None            # a prefix of the sweep name is another sweep
    assert placement.driver_of("demo-2", placement.group_name("demo", "0123456789ab", "x")) is None
    assert placement.driver_of("demo", "runner:demo:a3492d5f37a0c700-1-r0") is None   # before drivers were named
    assert placement.driver_of("demo", "runner:demo:0123456789ab:x:y") is None
    assert placement.driver_of("demo", "my-own-group") is None
