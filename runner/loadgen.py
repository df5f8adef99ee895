"""The load generator: drives one engine with one load point and records every chunk.

Invariants:
- Times come from ``time.perf_counter()`` (monotonic), in seconds.
- ``st`` is taken right before ``generate`` is called, after the concurrency slot is held.
- Warmup requests run first, at the same concurrency, and are never returned as measured.
- A request whose stream yields no chunk for ``request_timeout_s`` is aborted in the engine
  and recorded with ``error="request_timeout"``; the run never hangs on it.
- An engine that dies raises ``EngineDied``; anything else a request raises is recorded on
  that request only.
- While the load runs, engine stats and the event loop's own lag are sampled every
  ``sample_every_s``, so a stalled client shows up as loop lag, not as engine latency.
"""

from __future__ import annotations

import asyncio
import os
import time
from dataclasses import dataclass, field
from typing import Any

from runner.engines.base import Engine
from runner.metrics import RequestRecord

#: Test hook (fault injection): stop reading a stream after this many chunks, so the
#: request-timeout path is exercised with a real stalled consumer. Never set in production.
STALL_ENV = "RUNNER_TEST_STALL_AFTER_CHUNKS"


class EngineDied(RuntimeError):
    """The engine reported itself dead while serving."""


@dataclass
class LoadRun:
    records: list[RequestRecord]
    warmup: list[RequestRecord]
    duration_s: float
    samples: list[dict[str, float]] = field(default_factory=list)
    loop_lag_ms: list[float] = field(default_factory=list)


async def _one(engine: Engine, index: int, prompt: list[int], max_tokens: int, *, ignore_eos: bool,
               temperature: float, intended: float, timeout_s: float, tag: str, stall_after: int = 0) -> RequestRecord:
    rec = RequestRecord(index=index, prompt_tokens=len(prompt), intended=intended, st=0.0)
    rid = f"{tag}-{index}"
    rec.st = time.perf_counter()
    stream = engine.generate(prompt, max_tokens, ignore_eos=ignore_eos, temperature=temperature,
                             request_id=rid)
    try:
        while True:
            if stall_after and len(rec.chunk_times) >= stall_after:
                await asyncio.sleep(timeout_s + 1)  # a consumer that stopped reading
                raise asyncio.TimeoutError
            try:
                d = await asyncio.wait_for(stream.__anext__(), timeout_s)
            except StopAsyncIteration:
                break
            now = time.perf_counter()
            if d.prompt_tokens:
                rec.prompt_tokens = d.prompt_tokens
            if d.new_tokens > 0:
                rec.chunk_times.append(now)
                rec.chunk_tokens.append(d.new_tokens)
            if d.finished:
                rec.finish_reason = d.finish_reason or ""
                break
        rec.ok = bool(rec.chunk_times)
        if not rec.ok:
            rec.error = "no output tokens"
    except asyncio.TimeoutError:
        rec.error = "request_timeout"
        await _quietly(engine.abort(rid))
    except Exception as e:
        if type(e).__name__ == "EngineDeadError":
            raise EngineDied(str(e)) from e
        rec.error = f"{type(e).__name__}: {e}"[:500]
    finally:
        await _quietly(stream.aclose())
    return rec


async def _quietly(coro: Any) -> None:
    try:
        await asyncio.wait_for(coro, 5)
    except Exception:
        pass


async def closed_loop(engine: Engine, prompts: list[list[int]], concurrency: int, max_tokens: int, *,
                      ignore_eos: bool, temperature: float, timeout_s: float, tag: str,
                      first_index: int = 0, stall_after: int = 0) -> list[RequestRecord]:
    """Send every prompt, keeping at most ``concurrency`` in flight; records in prompt order."""
    it = iter(enumerate(prompts, start=first_index))
    out: list[RequestRecord] = []

    async def worker() -> None:
        intended = time.perf_counter()
        for i, p in it:
            out.append(await _one(engine, i, p, max_tokens, ignore_eos=ignore_eos,
                                  temperature=temperature, intended=intended, timeout_s=timeout_s, tag=tag,
                                  stall_after=stall_after))
            intended = time.perf_counter()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(prompts))))))
    return sorted(out, key=lambda r: r.index)


async def run(engine: Engine, prompts: list[list[int]], *, warmup: int, concurrency: int,
              max_tokens: int, ignore_eos: bool, temperature: float, timeout_s: float, tag: str,
              sample_every_s: float = 0.5) -> LoadRun:
    """Warm up with the first ``warmup`` prompts, then measure the rest."""
    kw = {"ignore_eos": ignore_eos, "temperature": temperature, "timeout_s": timeout_s}
    warm = await closed_loop(engine, prompts[:warmup], concurrency, max_tokens, tag=f"{tag}-w", **kw)
    samples: list[dict[str, float]] = []
    lags: list[float] = []
    stop = asyncio.Event()

    async def sampler() -> None:
        t0 = last = time.perf_counter()
        while not stop.is_set():
            await asyncio.sleep(sample_every_s)
            now = time.perf_counter()
            lags.append(max(0.0, (now - last - sample_every_s) * 1000.0))
            last = now
            samples.append({"t": now - t0, **engine.stats()})

    task = asyncio.create_task(sampler())
    try:
        recs = await closed_loop(engine, prompts[warmup:], concurrency, max_tokens, tag=tag, first_index=warmup,
                                 stall_after=int(os.environ.get(STALL_ENV, "0") or 0), **kw)
    finally:
        stop.set()
        await task
    ends = [r.chunk_times[-1] if r.chunk_times else r.st for r in recs]
    duration = (max(ends) - min(r.st for r in recs)) if recs else 0.0
    return LoadRun(records=recs, warmup=warm, duration_s=duration, samples=samples, loop_lag_ms=lags)
