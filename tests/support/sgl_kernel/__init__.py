"""Stand-in ``sgl_kernel`` for running real SGLang on a CPU-only test machine.

TEST SUPPORT ONLY -- NEVER PUT THIS ON A GPU HOST (or any production host). It takes the
place of the real compiled ``sgl_kernel`` (PyPI ``sglang-kernel``, which is CUDA-only and
cannot load without ``libcuda.so.1``) and provides *no* compiled ops.

SGLang 0.5.23's CPU path (``SGLANG_USE_CPU_ENGINE=1`` with ``device="cpu"``) imports a few
names from ``sgl_kernel`` at module import time and otherwise falls back to plain-torch code
for small dense models. This package provides exactly those names, found by trial:

* ``common_ops = None``: the compiled extension is absent, so nothing is registered under
  ``torch.ops.sgl_kernel``; SGLang therefore reports no Intel-AMX backend and keeps its
  native (plain torch) layers, attention and KV-cache writes.
* ``assign_req_to_token_pool_cpu`` and ``copy_all_layer_kv_cache_cpu``: small plain-torch
  versions of two KV bookkeeping kernels (imported unconditionally on CPU).
* ``scalar_type.ScalarType`` / ``scalar_types``: the pure-Python quantization type table.
* the speculative-decoding CPU kernels (``build_tree_kernel_efficient_cpu``,
  ``verify_tree_greedy_cpu``, ``assign_draft_cache_locs_contiguous_cpu``,
  ``assign_extend_cache_locs_cpu``, ``fill_accept_out_cache_loc_cpu``,
  ``fill_bonus_tokens_cpu``): imported on CPU but only called for speculative decoding,
  which this shim does not support; they raise ``NotImplementedError``.

Any other name is missing on purpose, so an unexpected kernel fails loudly at import
instead of silently computing something else.
"""

from __future__ import annotations

import ctypes

import torch

from .scalar_type import ScalarType, scalar_types

__version__ = "0.0.0+cpu.test.shim"

#: Marker so tests and the lane build can tell the shim from the real package.
IS_TEST_SHIM = True

#: The real package's compiled extension module; unavailable here.
common_ops = None


def assign_req_to_token_pool_cpu(
    req_pool_indices: torch.Tensor,
    req_to_token: torch.Tensor,
    start_offset: torch.Tensor,
    end_offset: torch.Tensor,
    out_cache_loc: torch.Tensor,
    pool_len: int,
) -> None:
    """For request ``i``: ``req_to_token[req_pool_indices[i], start[i]:end[i]]`` takes the
    next ``end[i] - start[i]`` entries of ``out_cache_loc`` (packed request after request)."""
    del pool_len  # implied by req_to_token.shape[1]
    starts = start_offset.tolist()
    ends = end_offset.tolist()
    rows = req_pool_indices.tolist()
    pos = 0
    for row, start, end in zip(rows, starts, ends):
        n = end - start
        if n > 0:
            req_to_token[row, start:end] = out_cache_loc[pos:pos + n].to(req_to_token.dtype)
        pos += n


def copy_all_layer_kv_cache_cpu(
    data_ptrs: torch.Tensor,
    strides: torch.Tensor,
    tgt_loc: torch.Tensor,
    src_loc: torch.Tensor,
) -> None:
    """Copy token rows ``src_loc`` to rows ``tgt_loc`` in every buffer of ``data_ptrs``.

    ``data_ptrs[i]`` is the base address of a contiguous KV buffer whose first dimension is
    the token slot, and ``strides[i]`` its row size in bytes. All source rows are read
    before any target row is written, like the kernel, so overlapping moves are safe.
    """
    if tgt_loc.numel() == 0:
        return
    src = src_loc.to(torch.int64)
    tgt = tgt_loc.to(torch.int64)
    rows = int(max(int(src.max()), int(tgt.max()))) + 1
    for ptr, stride in zip(data_ptrs.tolist(), strides.tolist()):
        raw = (ctypes.c_uint8 * (rows * stride)).from_address(ptr)
        view = torch.frombuffer(raw, dtype=torch.uint8).view(rows, stride)
        view[tgt] = view[src]


def _unsupported(name: str):
    def kernel(*args, **kwargs):
        raise NotImplementedError(
            f"sgl_kernel test shim: {name} is not available (speculative decoding on CPU "
            "needs the real compiled sgl_kernel)"
        )

    kernel.__name__ = name
    return kernel


build_tree_kernel_efficient_cpu = _unsupported("build_tree_kernel_efficient_cpu")
verify_tree_greedy_cpu = _unsupported("verify_tree_greedy_cpu")
assign_draft_cache_locs_contiguous_cpu = _unsupported("assign_draft_cache_locs_contiguous_cpu")
assign_extend_cache_locs_cpu = _unsupported("assign_extend_cache_locs_cpu")
fill_accept_out_cache_loc_cpu = _unsupported("fill_accept_out_cache_loc_cpu")
fill_bonus_tokens_cpu = _unsupported("fill_bonus_tokens_cpu")

__all__ = [
    "IS_TEST_SHIM",
    "ScalarType",
    "assign_draft_cache_locs_contiguous_cpu",
    "assign_extend_cache_locs_cpu",
    "assign_req_to_token_pool_cpu",
    "build_tree_kernel_efficient_cpu",
    "common_ops",
    "copy_all_layer_kv_cache_cpu",
    "fill_accept_out_cache_loc_cpu",
    "fill_bonus_tokens_cpu",
    "scalar_types",
    "verify_tree_greedy_cpu",
]
