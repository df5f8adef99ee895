"""The Ray actor that holds one engine replica and runs load points against it.

Invariants: the engine's lifetime is the actor's lifetime; the driver kills the actor to
free its devices, whatever state the engine is in. The actor never writes to MLflow: it
returns plain dicts (records as columns) and the driver records them. Engine libraries
are imported here, inside methods, never in the driver.
"""

from __future__ import annotations

import glob
import os
import platform
import socket
import time
import traceback
from typing import Any

from runner.cluster import apimode
from runner.engines import MODULES, VersionDrift, load_engine, version_drift
from runner.measure import dataset, loadgen
from runner.plan import LoadPoint, ServingConfig

#: The sanity request: a short prompt that must come back with exactly this many tokens.
SANITY_INPUT, SANITY_OUTPUT = 16, 8


class EngineActor:
    """Created as a Ray async actor by ``runner.cluster.scheduler``; one per engine replica."""

    def __init__(self, config: dict[str, Any], replica: int = 0, multi_node: bool = False,
                 serve_host: str | None = None):
        self.config = ServingConfig.model_validate(config)
        self.replica, self.multi_node = replica, multi_node
        self.serve_host = serve_host  # api openai: where this engine's HTTP server listens
        self.engine = None

    def _engine(self) -> Any:
        return load_engine(self.config.engine)

    def where(self) -> dict[str, Any]:
        """Where this replica runs and which devices it holds."""
        import psutil
        import ray

        ctx = ray.get_runtime_context()
        env = (ctx.runtime_env or {}).get("env_vars") or {}
        return {"node_id": ctx.get_node_id(), "hostname": socket.gethostname(), "pid": os.getpid(),
                "create_time": psutil.Process().create_time(),  # with the pid: this very process
                "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES"),
                "gpu_ids": [str(g) for g in ray.get_gpu_ids()],
                "env_names": sorted(k for k in env if k in os.environ)}  # names only: values may be secret

    async def start(self, request_timeout_s: float, catalogue_version: str | None = None) -> dict[str, Any]:
        """Start the engine and send the sanity request; return timing, versions, placement.

        ``catalogue_version``: the engine version the sweep's arguments were checked against; an
        installed engine of another version is named in ``version_note``, or, when it lacks an
        argument the sweep gives, fails the start before the engine loads (both versions named).
        """
        t0 = time.perf_counter()
        try:  # a broken engine install fails version_drift like the start itself: classified the same
            note = version_drift(self.config.engine, catalogue_version, self.config.engine_args) \
                if self.config.engine in MODULES else None
            self.engine = self._engine()
            await self.engine.start(self.config, multi_node=self.multi_node)
        except VersionDrift as e:  # before the engine loaded: the message names both versions
            return {"ok": False, "reason": "engine_start_error.bad_argument", "error": str(e), "log_tail": ""}
        except Exception as e:
            return {"ok": False, "reason": classify_start_error(e), "error": _short(e),
                    "log_tail": log_tail(80) + "\n\n" + _tail(traceback.format_exc())}
        start_s = time.perf_counter() - t0
        vocab_size, special = self.engine.vocab()
        prompt = dataset.random_token_prompts(1, SANITY_INPUT, vocab_size, special, seed=0, salt="sanity")
        recs = await loadgen.closed_loop(self.engine, prompt, 1, SANITY_OUTPUT, ignore_eos=True,
                                         temperature=0.0, timeout_s=request_timeout_s, tag="sanity")
        got = recs[0].output_tokens
        info = {"start_s": start_s, "versions": self.engine.versions(), "system": system_info(),
                **self.where(), **({"version_note": note} if note else {}), "child_pids": _descendants()}
        try:  # the engine's own KV capacity, beside the planner's prediction; diagnostic only
            tokens = getattr(self.engine, "kv_capacity_tokens", lambda: None)()
        except Exception:
            tokens = None
        if tokens:
            info["kv_capacity_tokens"] = tokens
        facts = getattr(self.engine, "placement_facts", None)
        if facts is not None:
            info.update(facts())
        launchers = getattr(self.engine, "launchers", None)
        if launchers:  # an engine spanning nodes with one launcher per node (SGLang): where each one runs
            info["launchers"] = launchers
        if not recs[0].ok or got != SANITY_OUTPUT:
            return {"ok": False, "reason": "sanity_check_failed", **info,
                    "error": f"sanity request asked for {SANITY_OUTPUT} tokens, got {got} "
                             f"({recs[0].error or recs[0].finish_reason})"}
        if self.serve_host is not None:  # api openai: the engine's own HTTP server, in this process
            serve = getattr(self.engine, "serve_openai", None)
            if serve is None:
                return {"ok": False, "reason": "engine_start_error.bad_argument", **info,
                        "error": f"engine {self.config.engine} cannot serve its OpenAI API in-process (api: openai)"}
            try:
                info["url"] = await serve(self.config, apimode.bind_host(self.serve_host))
            except Exception as e:
                return {"ok": False, "reason": "engine_start_error", **info, "error": _short(e),
                        "log_tail": log_tail(80) + "\n\n" + _tail(traceback.format_exc())}
        return {"ok": True, **info}

    async def run(self, load: dict[str, Any], request_timeout_s: float, replicas: int = 1) -> dict[str, Any]:
        """Run this replica's share of one load point; return records plus engine samples.

        With DP = ``replicas``, replica i takes measured prompts i, i+n, i+2n…, an even share
        of the concurrency (the first ``c mod n`` replicas one more) and 1/n of the request
        rate (splitting a Poisson stream gives Poisson streams), so each engine holds its
        share of the requests in flight: least-outstanding balancing. Every replica warms
        up on its own engine.
        """
        lp = LoadPoint.model_validate(load)
        vocab_size, special = self.engine.vocab()
        try:
            data = dataset.build(lp.warmup + lp.num_prompts, lp.input_len, lp.output_len, lp.dataset,
                                 vocab_size=vocab_size, special_ids=special, seed=lp.seed,
                                 salt=(lp.concurrency, lp.request_rate), encode=self.engine.encode)
        except (ValueError, OSError, KeyError) as e:
            return {"ok": False, "reason": "invalid_result", "error": f"dataset: {e}"}
        i, n = self.replica, max(replicas, 1)
        w = lp.warmup
        prompts = data.ids[:w] + data.ids[w:][i::n]
        out_lens = data.output_lens[:w] + data.output_lens[w:][i::n]
        share = None if lp.concurrency is None else lp.concurrency // n + (1 if i < lp.concurrency % n else 0)
        rate = None if lp.request_rate is None else lp.request_rate / n
        if lp.prompt_format == "text":  # HTTP clients only (spec-checked); converted off the clock
            try:
                self.engine.prepare_text(prompts)
            except (ValueError, OSError) as e:
                return {"ok": False, "reason": "invalid_result", "error": f"text prompts: {e}"}
        offset = time.time() - time.perf_counter()
        if len(prompts) == w or share == 0:
            return {"ok": True, "replica": i, "duration_s": 0.0, "records": [], "warmup_count": 0,
                    "clock_offset": offset, "samples": [], "loop_lag_ms": [], "dataset_hash": data.digest}
        retries = getattr(self.engine, "connection_retries", None)  # HTTP clients only
        try:
            res = await loadgen.run(self.engine, prompts, warmup=w, concurrency=share, max_tokens=out_lens,
                                    ignore_eos=lp.ignore_eos, temperature=lp.temperature, timeout_s=request_timeout_s,
                                    tag=f"r{i}", rate=rate, burstiness=lp.burstiness, seed=lp.seed + i)
        except loadgen.EngineDied as e:
            return {"ok": False, "reason": "engine_died", "error": _short(e), "log_tail": log_tail()}
        for r in res.records:
            r.replica = i
        return {"ok": True, "replica": i, "duration_s": res.duration_s, "clock_offset": offset,
                "records": [r.__dict__ for r in res.records], "warmup_count": len(res.warmup),
                "samples": res.samples, "loop_lag_ms": res.loop_lag_ms, "stats": self.engine.stats(),
                "client_cpu_frac": res.cpu_frac, "client_niceness": os.getpriority(os.PRIO_PROCESS, 0),
                "achieved_rate": res.achieved_rate, "dataset_hash": data.digest,
                **({} if retries is None else {"connection_retries": self.engine.connection_retries - retries})}

    async def stop(self) -> None:
        if self.engine is not None:
            await self.engine.stop()
            self.engine = None

    def log_tail(self, lines: int = 60) -> str:
        return log_tail(lines)


class ClientActor(EngineActor):
    """Drives the load over HTTP (``runner.engines.openai_http``) against an OpenAI-compatible
    server: the engine actor's own (api ``openai``) or one the runner does not own (``endpoint``).

    Same ``start`` (a sanity request, now through the server) and ``run`` as the engine actor,
    so records are identical in form; it holds only its CPU bundle and imports no engine.
    """

    def __init__(self, config: dict[str, Any], replica: int, url: str):
        super().__init__(config, replica)
        self.url = url

    def _engine(self) -> Any:
        from runner.cluster.apimode import served_name
        from runner.engines import OpenAIHttpEngine

        env = (self.config.endpoint or {}).get("api_key_env", "OPENAI_API_KEY")
        return OpenAIHttpEngine(base_url=self.url, model=served_name(self.config), api_key_env=env)


#: Start errors of the out-of-memory class (a retry on a less loaded device may cure them), as the
#: engines word them: vLLM 0.32/0.33 ``v1/worker/utils.py`` request_memory ("Free memory on device …
#: on startup is less than desired GPU memory utilization", a ValueError), ``kv_cache_utils.py`` /
#: 0.33 ``kv_cache_planning.py`` (no memory for the cache blocks; KV cache for max_model_len larger
#: than what is available); SGLang 0.5.23 ``pool_configurator.py`` ("Not enough memory. Please try to
#: increase --mem-fraction-static") and ``kv_cache_configurator.py`` ("Loaded weights leave no GPU
#: memory for the KV cache"); CUDA's own "out of memory".
OOM_MARKERS = ("out of memory", "outofmemory", "insufficient memory", "less than desired gpu memory utilization",
               "exceed the desired gpu memory utilization", "no available memory for the cache blocks",
               "larger than the available kv cache memory", "not enough memory. please try to increase",
               "leave no gpu memory for the kv cache")


def classify_start_error(e: BaseException, tail: str | None = None) -> str:
    """Map an engine start exception to a failure reason (``runner.plan.trial.FAILURE_REASONS``);
    ``tail``: the engine's log tail (default: this worker's own)."""
    text = f"{type(e).__name__}: {e}".lower() + (log_tail(200) if tail is None else tail).lower()
    if any(m in text for m in OOM_MARKERS):
        return "engine_start_error.oom"
    if any(s in text for s in ("no such file", "does not appear to have", "repository not found",
                               "is not a local folder", "can't load the configuration", "not found")):
        return "engine_start_error.missing_model"
    if isinstance(e, (TypeError, ValueError)) or "unexpected keyword" in text or "invalid" in text:
        return "engine_start_error.bad_argument"
    return "engine_start_error"


def _descendants() -> list[int]:
    """This process's descendants (the engine's own processes), for the record and the teardown test."""
    import psutil

    try:
        return [c.pid for c in psutil.Process().children(recursive=True)]
    except psutil.Error:
        return []


def log_tail(lines: int = 60) -> str:
    """The last lines of this worker's Ray log files (the engine's child processes write there too)."""
    try:
        import ray

        logs = ray._private.worker.global_worker.node.get_logs_dir_path()
        paths = sorted(glob.glob(os.path.join(logs, f"worker-*-{os.getpid()}.*")))
        text = ""
        for p in paths:
            if p.endswith((".out", ".err")):
                with open(p, errors="replace") as f:
                    text += f.read()[-40000:]
    except Exception as e:  # the tail is diagnostic; never let it mask the real error
        return f"(no log tail: {e})"
    return _tail(text, lines)


def _tail(text: str, lines: int = 60) -> str:
    return "\n".join(text.splitlines()[-lines:])


def _short(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}"[:2000]


def system_info() -> dict[str, Any]:
    """Host facts for provenance; no environment variables (they may hold secrets)."""
    info: dict[str, Any] = {"python": platform.python_version(), "platform": platform.platform(),
                            "machine": platform.machine(), "cpu_count": os.cpu_count()}
    try:
        with open("/proc/cpuinfo") as f:
            models = (ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name"))
            info["cpu_model"] = next(models, "")
        with open("/proc/meminfo") as f:
            info["mem_total_gb"] = round(int(f.readline().split()[1]) / 2**20, 1)
    except OSError:
        pass
    return info
