"""Validity gates: when a measured load point is not a result (``shared/METRICS.md``).

A published harness once reported 2,089,681 tok/s from an engine that had run out of memory
and answered with zero tokens. Every gate here exists so that cannot happen: a load point
that fails one is INVALID and its throughput is never reported as a result.
"""

from __future__ import annotations

from collections.abc import Sequence

from runner.measure.metrics import RequestRecord
from runner.plan import LoadPoint


def check(records: Sequence[RequestRecord], load: LoadPoint, max_failure_rate: float) -> str | None:
    """``None`` when the load point is a valid result, else why it is not."""
    if not records:
        return "no measured requests"
    out = sum(r.output_tokens for r in records)
    if out == 0:
        return "no output tokens were produced"
    failed = [r for r in records if not r.ok]
    rate = len(failed) / len(records)
    if rate > max_failure_rate:
        first = failed[0].error or "unknown"
        return (f"failure rate {rate:.1%} > allowed {max_failure_rate:.1%} "
                f"({len(failed)}/{len(records)}; first error: {first})")
    if load.ignore_eos:
        wrong = [(r.max_tokens or load.output_len, r.output_tokens) for r in records
                 if r.ok and r.output_tokens != (r.max_tokens or load.output_len)]
        if wrong:
            return (f"ignore_eos: {len(wrong)} requests returned another length than asked "
                    f"(asked, got: {wrong[:5]})")
    return None
