"""The installed engine against the version its argument catalogue was built from."""

import pytest

from runner.engines import VersionDrift, version_drift
from runner.engines.vllm import installed_version
from runner.sweep import catalog


def test_the_installed_vllm_is_the_catalogues():
    assert installed_version().split("+")[0] == str(catalog.engines()["vllm"]["version"])
    assert version_drift("vllm", catalog.engines()["vllm"]["version"], {"max_num_seqs": 8}) is None
    assert version_drift("vllm", None, {"no_such_arg": 1}) is None  # no catalogue version: nothing to compare


def test_another_version_is_named_with_ours_and_a_missing_argument_fails_before_the_start():
    have = installed_version().split("+")[0]
    note = version_drift("vllm", "0.33.0", {"max_num_seqs": 8, "enforce_eager": True})
    assert note == (f"vllm {have} is installed here; the engine-argument catalogue is vllm 0.33.0's "
                    f"(every argument of the sweep exists in {have})")
    with pytest.raises(VersionDrift) as e:
        version_drift("vllm", "0.33.0", {"max_num_seqs": 8, "made_up_in_033": 1})
    msg = str(e.value)
    assert f"vllm {have} is installed" in msg and "vllm 0.33.0's" in msg and "made_up_in_033" in msg
    assert "pip install '.[vllm]'" in msg and "max_num_seqs" not in msg
    assert version_drift("simulated", "9.9", {"x": 1}) is None  # an engine without a version of its own
