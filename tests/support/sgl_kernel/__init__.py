"""Stand-in ``sgl_kernel`` for running real SGLang on a CPU-only test machine.

TEST SUPPORT ONLY. NEVER INSTALL THIS ON A GPU HOST: it replaces the real compiled
``sgl_kernel`` (PyPI ``sglang-kernel``, CUDA-only) and provides no compiled ops at all.

SGLang's CPU path (``SGLANG_USE_CPU_ENGINE=1``, ``device="cpu"``) imports a few names from
``sgl_kernel`` at import time even when it then falls back to plain-torch code for tiny dense
models. This package provides just those names:

* ``common_ops = None`` -- the compiled extension is unavailable, so nothing is registered in
  ``torch.ops.sgl_kernel`` and SGLang's AMX / fused-CPU-kernel paths stay disabled.
* ``copy_all_layer_kv_cache_cpu`` -- a plain-torch version of the KV-cache row copy that
  ``sglang.kernels.ops.kvcache.cache_move`` imports on CPU.
* ``scalar_type.ScalarType`` / ``scalar_types`` -- the pure-Python quantization type table.

Anything else raises ``NotImplementedError`` (or ``AttributeError`` on import) so that an
unexpected kernel call fails loudly instead of silently computing nonsense.
"""

from __future__ import annotations

import torch

from .scalar_type import ScalarType, scalar_types

__version__ = "0.0.0+cpu-test-shim"
IS_TEST_SHIM = True

#: The compiled extension module of the real package; absent here.
common_ops = None


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor,
    strides: torch.Tensor,
    tgt_loc: torch.Tensor,
    src_loc: torch.Tensor,
) -> None:
    """Copy rows ``src_loc`` to rows ``tgt_loc`` in every KV buffer named by ``data_ptrs``.

    ``data_ptrs[i]`` is the address of buffer ``i`` (contiguous, first dim = token slot) and
    ``strides[i]`` its row size in bytes; the copy is done on raw bytes, like the kernel.
    """
    raise NotImplementedError("sgl_kernel test shim: copy_all_layer_kv_cache_cpu")


__all__ = [
    "IS_TEST_SHIM",
    "ScalarType",
    "common_ops",
    "copy_all_layer_kv_cache_cpu",
    "scalar_types",
]


import os as _os

if _os.environ.get("SGL_SHIM_DISCOVER"):
    import sys as _sys
    import traceback as _tb

    def __getattr__(name):
        if name.startswith("__"):
            raise AttributeError(name)
        frame = _tb.extract_stack(limit=3)[0]
        print(f"SHIM-DISCOVER {name} from {frame.filename}:{frame.lineno}", file=_sys.stderr)

        def _stub(*a, **k):
            raise NotImplementedError(name)
        return _stub
