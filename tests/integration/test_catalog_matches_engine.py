"""configs/engines.yaml must list exactly the installed engine's argument names."""

from runner.engines import vllm as vllm_engine
from runner.sweep import catalog


def test_vllm_argument_catalogue_matches_installed_vllm():
    import vllm

    entry = catalog.engines()["vllm"]
    installed = set(vllm_engine.argument_names())
    listed = set(entry["args"]) | set(entry["reserved"])
    assert listed == installed, ("refresh with `python -m runner engine-args vllm --refresh`",
                                 sorted(listed ^ installed))
    assert vllm.__version__.startswith(str(entry["version"]))
    assert entry["choices"] == vllm_engine.argument_choices(), \
        "refresh with `python -m runner engine-args vllm --refresh`"
