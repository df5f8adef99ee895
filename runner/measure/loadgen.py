"""The load generator: drives one engine with one load point and records every chunk.

Invariants:
- Times come from ``time.perf_counter()`` (monotonic), in seconds.
- ``st`` is taken right before ``generate`` is called, after the concurrency slot is held.
- Closed loop (``rate=None``): ``concurrency`` workers; a request is due when its slot frees.
  Open loop: arrivals at gamma-distributed gaps (shape ``burstiness``, mean 1/rate; 1 is
  Poisson, as ``vllm bench serve``), seeded, optionally capped at ``concurrency`` in flight;
  a request is due at max(its arrival, when it got a slot), so waiting for the cap is not lag.
- Warmup requests run first, at the same concurrency, and are never returned as measured.
- A request whose stream yields no chunk for ``request_timeout_s`` is aborted in the engine
  and recorded with ``error="request_timeout"``; the run never hangs on it, and no new request
  of that load point is sent after it (the load point has already failed).
- An engine that dies raises ``EngineDied``; anything else a request raises is recorded on
  that request only.
- While the load runs, engine stats and the event loop's own lag are sampled every
  ``sample_every_s``, so a stalled client shows up as loop lag, not as engine latency.
"""

from __future__ import annotations

import asyncio
import os
import resource
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from runner.engines import Engine
from runner.measure.metrics import RequestRecord

#: Test hook (fault injection): stop reading a stream after this many chunks, so the
#: request-timeout path is exercised with a real stalled consumer. Never set in production.
STALL_ENV = "RUNNER_TEST_STALL_AFTER_CHUNKS"

_timeout = getattr(asyncio, "timeout", None)  # Python >= 3.11


class EngineDied(RuntimeError):
    """The engine reported itself dead while serving."""


@dataclass
class LoadRun:
    records: list[RequestRecord]
    warmup: list[RequestRecord]
    duration_s: float
    samples: list[dict[str, float]] = field(default_factory=list)
    loop_lag_ms: list[float] = field(default_factory=list)
    cpu_frac: float = 0.0         # this process's CPU seconds / wall seconds while measuring
    achieved_rate: float = 0.0    # measured requests / (last send − first send), requests/s


async def _one(engine: Engine, index: int, prompt: list[int], max_tokens: int, *, ignore_eos: bool,
               temperature: float, intended: float, timeout_s: float, tag: str, stall_after: int = 0) -> RequestRecord:
    """One request, its chunks timed as they arrive.

    The inactivity timeout is a lazy watchdog, not a timeout per chunk: a chunk only stores its
    arrival time; one timer per request re-arms itself from the last arrival (at most once per
    ``timeout_s``) and, once no chunk came for ``timeout_s``, cancels this task, which is then
    recorded as ``request_timeout``. No task, future or timer is created per chunk.
    """
    rec = RequestRecord(index=index, prompt_tokens=len(prompt), intended=intended, st=0.0, max_tokens=max_tokens)
    rid = f"{tag}-{index}"
    loop = asyncio.get_running_loop()
    task = asyncio.current_task()
    cancelling = task.cancelling() if hasattr(task, "cancelling") else 0  # Python >= 3.11
    clock = time.perf_counter
    times, tokens = rec.chunk_times, rec.chunk_tokens
    expired = False

    def watchdog() -> None:
        nonlocal timer, expired
        idle = clock() - last
        if idle < timeout_s:
            timer = loop.call_later(timeout_s - idle, watchdog)
        else:
            expired = True
            task.cancel()

    rec.st = last = clock()
    stream = engine.generate(prompt, max_tokens, ignore_eos=ignore_eos, temperature=temperature,
                             request_id=rid)
    timer = loop.call_later(timeout_s, watchdog)
    try:
        try:
            async for d in stream:
                last = now = clock()
                if d.prompt_tokens:
                    rec.prompt_tokens = d.prompt_tokens
                if d.new_tokens > 0:
                    times.append(now)
                    tokens.append(d.new_tokens)
                if d.finished:
                    rec.finish_reason = d.finish_reason or ""
                    break
                if stall_after and len(times) >= stall_after:
                    await asyncio.sleep(timeout_s + 1)  # a consumer that stopped reading
                    raise asyncio.TimeoutError
        except asyncio.CancelledError:
            if not expired or _cancelled_elsewhere(task, cancelling):
                raise
            raise asyncio.TimeoutError from None
        finally:
            timer.cancel()
        rec.ok = bool(times)
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


def _cancelled_elsewhere(task: asyncio.Task, cancelling: int) -> bool:
    """After our watchdog's cancel: whether someone else cancelled the task too (Python >= 3.11
    counts cancel requests; on 3.10 the watchdog's is taken as the only one)."""
    uncancel = getattr(task, "uncancel", None)
    return uncancel is not None and uncancel() > cancelling


async def _quietly(coro: Any) -> None:
    """Await ``coro`` for at most 5 s, swallowing its errors (in this task: no task per call)."""
    try:
        if _timeout is None:  # Python 3.10
            await asyncio.wait_for(coro, 5)
        else:
            async with _timeout(5):
                await coro
    except Exception:
        pass


def _per_request(max_tokens: int | Sequence[int], n: int) -> list[int]:
    return [max_tokens] * n if isinstance(max_tokens, int) else list(max_tokens)


async def closed_loop(engine: Engine, prompts: list[list[int]], concurrency: int, max_tokens: int | Sequence[int], *,
                      ignore_eos: bool, temperature: float, timeout_s: float, tag: str,
                      first_index: int = 0, stall_after: int = 0) -> list[RequestRecord]:
    """Send every prompt, keeping at most ``concurrency`` in flight; records in prompt order."""
    todo = iter(enumerate(zip(prompts, _per_request(max_tokens, len(prompts))), start=first_index))
    out: list[RequestRecord] = []
    failed = asyncio.Event()

    async def worker() -> None:
        intended = time.perf_counter()
        for i, (p, mt) in todo:
            if failed.is_set():
                return
            rec = await _one(engine, i, p, mt, ignore_eos=ignore_eos, temperature=temperature,
                             intended=intended, timeout_s=timeout_s, tag=tag, stall_after=stall_after)
            out.append(rec)
            if rec.error == "request_timeout":
                failed.set()  # the load point has failed: in-flight requests drain, nothing new is sent
                return
            intended = time.perf_counter()

    await asyncio.gather(*(worker() for _ in range(max(1, min(concurrency, len(prompts))))))
    return sorted(out, key=lambda r: r.index)


def arrivals(n: int, rate: float, burstiness: float, seed: int) -> list[float]:
    """Send offsets in seconds: 0, then cumulative gamma gaps with mean 1/rate."""
    rng = np.random.default_rng(seed)
    gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=max(n - 1, 0))
    return [0.0, *np.cumsum(gaps).tolist()][:n]


async def open_loop(engine: Engine, prompts: list[list[int]], rate: float, burstiness: float,
                    cap: int | None, max_tokens: int | Sequence[int], *, seed: int, ignore_eos: bool,
                    temperature: float, timeout_s: float, tag: str, first_index: int = 0,
                    stall_after: int = 0) -> list[RequestRecord]:
    """Send prompts at their arrival times, at most ``cap`` in flight when set."""
    sem = asyncio.Semaphore(cap) if cap else None
    mts = _per_request(max_tokens, len(prompts))
    offsets = arrivals(len(prompts), rate, burstiness, seed)
    t0 = time.perf_counter()

    async def send(i: int, p: list[int], mt: int, due: float) -> RequestRecord:
        kw = {"ignore_eos": ignore_eos, "temperature": temperature, "timeout_s": timeout_s, "tag": tag,
              "stall_after": stall_after}
        if sem is None:
            return await _one(engine, i, p, mt, intended=due, **kw)
        async with sem:
            return await _one(engine, i, p, mt, intended=max(due, time.perf_counter()), **kw)

    tasks: list[asyncio.Task] = []
    for k, (p, mt) in enumerate(zip(prompts, mts)):
        if any(t.done() and t.result().error == "request_timeout" for t in tasks):
            break  # the load point has failed; send nothing new
        due = t0 + offsets[k]
        delay = due - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(send(first_index + k, p, mt, due)))
    return sorted(await asyncio.gather(*tasks), key=lambda r: r.index)


async def run(engine: Engine, prompts: list[list[int]], *, warmup: int, concurrency: int | None,
              max_tokens: int | Sequence[int], ignore_eos: bool, temperature: float, timeout_s: float, tag: str,
              rate: float | None = None, burstiness: float = 1.0, seed: int = 0,
              sample_every_s: float = 0.5) -> LoadRun:
    """Warm up with the first ``warmup`` prompts (closed loop), then measure the rest."""
    mts = _per_request(max_tokens, len(prompts))
    kw = {"ignore_eos": ignore_eos, "temperature": temperature, "timeout_s": timeout_s}
    warm = await closed_loop(engine, prompts[:warmup], concurrency or 1, mts[:warmup], tag=f"{tag}-w", **kw)
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

    stall = int(os.environ.get(STALL_ENV, "0") or 0)
    task = asyncio.create_task(sampler())
    cpu0, wall0 = _cpu(), time.perf_counter()
    try:
        if rate is None:
            recs = await closed_loop(engine, prompts[warmup:], concurrency or 1, mts[warmup:], tag=tag,
                                     first_index=warmup, stall_after=stall, **kw)
        else:
            recs = await open_loop(engine, prompts[warmup:], rate, burstiness, concurrency, mts[warmup:], seed=seed,
                                   tag=tag, first_index=warmup, stall_after=stall, **kw)
    finally:
        stop.set()
        await task
    cpu = (_cpu() - cpu0) / max(time.perf_counter() - wall0, 1e-9)
    ends = [r.chunk_times[-1] if r.chunk_times else r.st for r in recs]
    duration = (max(ends) - min(r.st for r in recs)) if recs else 0.0
    sends = sorted(r.st for r in recs)
    achieved = (len(sends) - 1) / (sends[-1] - sends[0]) if len(sends) > 1 and sends[-1] > sends[0] else 0.0
    return LoadRun(records=recs, warmup=warm, duration_s=duration, samples=samples, loop_lag_ms=lags,
                   cpu_frac=cpu, achieved_rate=achieved)


def _cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime
