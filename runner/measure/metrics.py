"""Request records → load-point aggregates, as defined in ``shared/METRICS.md``.

Definitions follow vLLM's ``vllm bench serve`` (``calculate_metrics`` in
``vllm/benchmarks/serve.py``), and the key names are its ``--save-result`` names, so that our
numbers can be set beside its own. Times in records are seconds on a monotonic clock;
reported latencies are milliseconds; throughputs are per second of ``duration_s``.

Differences from vLLM, on purpose: a statistic over an empty sample (e.g. TPOT when every
request produced one token) is omitted rather than reported as 0, and the peak output rate
counts the tokens each chunk carried rather than one per chunk (equal when a chunk carries
one token, the in-process default).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

#: Stored with every result as the parameter ``metrics.definition``.
DEFINITION = "vllm-bench-serve"


@dataclass
class RequestRecord:
    """One request as the load generator saw it. Times: seconds, monotonic clock.

    ``chunk_times[i]`` is when the i-th output chunk arrived and ``chunk_tokens[i]`` how many
    output tokens it carried (the engine's own count). ``intended`` is when the request was
    due to be sent (slot freed, or arrival time); ``st`` when it actually was.
    """

    index: int
    prompt_tokens: int
    intended: float
    st: float
    chunk_times: list[float] = field(default_factory=list)
    chunk_tokens: list[int] = field(default_factory=list)
    ok: bool = False
    error: str = ""
    finish_reason: str = ""
    replica: int = 0
    max_tokens: int = 0  # output tokens asked for (0: unknown)

    @property
    def output_tokens(self) -> int:
        return int(sum(self.chunk_tokens))

    @property
    def ttft(self) -> float:
        return self.chunk_times[0] - self.st

    @property
    def e2el(self) -> float:
        return self.chunk_times[-1] - self.st

    @property
    def itl(self) -> list[float]:
        t = self.chunk_times
        return [b - a for a, b in itertools.pairwise(t)]


def pkey(p: float) -> str:
    """vLLM's percentile key: 99 → 'p99', 99.9 → 'p99.9'."""
    return f"p{int(p)}" if float(p).is_integer() else f"p{p}"


def _stats(name: str, values_s: Sequence[float], percentiles: Sequence[float]) -> dict[str, float]:
    if not len(values_s):
        return {}
    a = np.asarray(values_s, dtype=float) * 1000.0
    out = {f"mean_{name}_ms": float(a.mean()), f"median_{name}_ms": float(np.median(a)),
           f"std_{name}_ms": float(a.std())}
    for p in percentiles:
        out[f"{pkey(p)}_{name}_ms"] = float(np.percentile(a, p))
    return out


def aggregate(records: Sequence[RequestRecord], duration_s: float, *,
              percentiles: Sequence[float] = (50, 90, 99), slo_ms: dict[str, float] | None = None,
              gpus: int = 1, price_per_gpu_hour: float | None = None) -> dict[str, float]:
    """Aggregate measured (non-warmup) records of one load point.

    ``duration_s`` runs from the first measured dispatch to the end of the last request.
    ``slo_ms`` maps any of ttft/tpot/e2el to a limit in ms; a request is good when all hold.
    ``gpus`` is TP × PP × DP. Cost is $/M tokens; omitted when no price is known.
    """
    done = [r for r in records if r.ok and r.chunk_times]
    ttfts = [r.ttft for r in done]
    e2els = [r.e2el for r in done]
    out_lens = [r.output_tokens for r in done]
    tpots = [(r.e2el - r.ttft) / (n - 1) for r, n in zip(done, out_lens) if n > 1]
    all_tpots = [(r.e2el - r.ttft) / (n - 1) if n > 1 else 0.0 for r, n in zip(done, out_lens)]
    itls = [g for r in done for g in r.itl]
    total_in = sum(r.prompt_tokens for r in done)
    total_out = sum(out_lens)
    dur = max(duration_s, 1e-9)

    m: dict[str, float] = {
        "duration": duration_s, "completed": len(done), "failed": len(records) - len(done),
        "total_input_tokens": total_in, "total_output_tokens": total_out,
        "request_throughput": len(done) / dur, "output_throughput": total_out / dur,
        "total_token_throughput": (total_in + total_out) / dur,
    }
    if slo_ms:
        per = {"ttft": ttfts, "tpot": all_tpots, "e2el": e2els}
        good = sum(all(per[k][i] * 1000.0 <= lim for k, lim in slo_ms.items()) for i in range(len(done)))
        m["request_goodput"] = good / dur
    for name, vals in (("ttft", ttfts), ("tpot", tpots), ("itl", itls), ("e2el", e2els)):
        m.update(_stats(name, vals, percentiles))
    m.update(_peaks(done))
    m["max_in_flight"] = float(_max_in_flight(done))
    if done:
        m["mean_input_len"] = total_in / len(done)
        m["mean_output_len"] = total_out / len(done)
        m["min_output_len"], m["max_output_len"] = float(min(out_lens)), float(max(out_lens))
    g = max(gpus, 1)
    m["tput_per_gpu"] = m["total_token_throughput"] / g
    m["output_tput_per_gpu"] = m["output_throughput"] / g
    if "median_tpot_ms" in m and m["median_tpot_ms"] > 0:
        m["interactivity"] = 1000.0 / m["median_tpot_ms"]
    if price_per_gpu_hour is not None:
        for key, per_gpu in (("total", m["tput_per_gpu"]), ("output", m["output_tput_per_gpu"])):
            if per_gpu > 0:
                m[f"cost_per_m_{key}_tokens_usd"] = price_per_gpu_hour * 1e6 / (3600.0 * per_gpu)
    return m


def _peaks(done: Sequence[RequestRecord]) -> dict[str, float]:
    """vLLM's 1-second buckets: peak output tokens/s and peak concurrent requests."""
    if not done:
        return {}
    t0 = min(r.st for r in done)
    n = int(np.ceil(max(r.st + r.e2el for r in done) - t0)) + 1
    tok, conc = np.zeros(n), np.zeros(n)
    for r in done:
        for t, k in zip(r.chunk_times, r.chunk_tokens):
            b = int(t - t0)
            if 0 <= b < n:
                tok[b] += k
        conc[int(r.st - t0): int(r.st + r.e2el - t0) + 1] += 1
    return {"max_output_tokens_per_s": float(tok.max()), "max_concurrent_requests": float(conc.max())}


def _max_in_flight(done: Sequence[RequestRecord]) -> int:
    """True peak of requests in flight at any instant (a sweep over start/end events)."""
    events = sorted([(r.st, 1) for r in done] + [(r.chunk_times[-1], -1) for r in done],
                    key=lambda e: (e[0], e[1]))
    cur = peak = 0
    for _, d in events:
        cur += d
        peak = max(peak, cur)
    return peak


def lag_stats(records: Sequence[RequestRecord], percentiles: Sequence[float] = (50, 90, 99)) -> dict:
    """Schedule lag (actual − intended send time), ms: shows a client-bound load generator."""
    lags = [max(0.0, r.st - r.intended) for r in records]
    return {k.replace("_lag_ms", "_schedule_lag_ms"): v for k, v in _stats("lag", lags, percentiles).items()}


def records_from_vllm_bench(result: dict) -> list[RequestRecord]:
    """``vllm bench serve --save-result --save-detailed`` JSON → our records, so its own
    per-request arrays go through ``aggregate`` (a cross-check of the definitions).

    Per request i: ``st = start_times[i]``; chunk times ``st + ttfts[i]``, then one per
    ``itls[i]`` gap (vLLM's latency is its last chunk, so ``e2el`` = ttft + Σ itl, equal to
    ``latencies[i]`` up to float rounding); the first chunk carries the tokens the gaps do not
    (``output_lens[i] − len(itls[i])``), every later chunk one. A request with an error is
    failed (no chunks).
    """
    out = []
    errors = result.get("errors") or [""] * len(result["ttfts"])
    for i, (st, ttft, itl, n_in, n_out, err) in enumerate(zip(
            result["start_times"], result["ttfts"], result["itls"], result["input_lens"], result["output_lens"],
            errors)):
        rec = RequestRecord(index=i, prompt_tokens=int(n_in), intended=float(st), st=float(st))
        if not err and n_out:
            times = [st + ttft]
            for gap in itl:
                times.append(times[-1] + gap)
            rec.chunk_times = times
            rec.chunk_tokens = [int(n_out) - len(itl)] + [1] * len(itl)
            rec.ok = True
        else:
            rec.error = str(err or "no output")
        out.append(rec)
    return out
