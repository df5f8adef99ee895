"""The results of a load point's DP replicas as one result, on one clock."""

from __future__ import annotations

from typing import Any


def merge(values: list[dict[str, Any]]) -> dict[str, Any]:
    """Merge the replicas' results of one load point onto one clock.

    Each replica reports ``clock_offset`` = wall time − its monotonic time at one instant;
    shifting every time by it puts all replicas on wall-clock seconds (exact on one host,
    NTP-accurate across hosts). Duration is first measured send to last chunk over all.
    """
    if len(values) == 1:
        return values[0]
    records = []
    for v in values:
        off = v.get("clock_offset", 0.0)
        for r in v["records"]:
            records.append({**r, "st": r["st"] + off, "intended": r["intended"] + off,
                            "chunk_times": [t + off for t in r["chunk_times"]]})
    ends = [r["chunk_times"][-1] if r["chunk_times"] else r["st"] for r in records]
    duration = (max(ends) - min(r["st"] for r in records)) if records else 0.0
    return {"ok": True, "duration_s": duration, "records": records, "replicas": len(values),
            "warmup_count": sum(v.get("warmup_count", 0) for v in values), "samples": values[0].get("samples", []),
            "loop_lag_ms": [x for v in values for x in v.get("loop_lag_ms", [])], "stats": values[0].get("stats", {}),
            "client_cpu_frac": max(v.get("client_cpu_frac", 0.0) for v in values),
            **({"client_niceness": max(v["client_niceness"] for v in values if "client_niceness" in v)}
               if any("client_niceness" in v for v in values) else {}),
            "achieved_rate": sum(v.get("achieved_rate", 0.0) for v in values),
            **({"connection_retries": sum(v.get("connection_retries", 0) for v in values)}
               if any("connection_retries" in v for v in values) else {}),
            "dataset_hash": values[0].get("dataset_hash", "")}
