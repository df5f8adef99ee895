"""The aggregate against values computed by hand from constructed request records."""

import math

import pytest

from runner.measure.metrics import RequestRecord, aggregate, lag_stats, pkey


def rec(i, st, chunks, tokens=None, prompt=10, ok=True, intended=None):
    return RequestRecord(index=i, prompt_tokens=prompt, intended=st if intended is None else intended, st=st,
                         chunk_times=list(chunks), chunk_tokens=list(tokens or [1] * len(chunks)), ok=ok)


# Request A: sent at 0.0, chunks at 0.1, 0.2, 0.4 (3 tokens)  → TTFT 100 ms, E2EL 400 ms, TPOT 150 ms,
#            ITL 100, 200 ms.
# Request B: sent at 0.5, chunks at 0.8, 0.9 (tokens 1 and 3) → TTFT 300 ms, E2EL 400 ms,
#            output 4 tokens → TPOT (400-300)/3 = 33.333 ms, ITL 100 ms (one sample per chunk).
# Request C: failed, no chunks.
A = rec(0, 0.0, [0.1, 0.2, 0.4])
B = rec(1, 0.5, [0.8, 0.9], tokens=[1, 3], prompt=20)
C = rec(2, 0.2, [], ok=False)


def test_hand_computed_aggregate():
    m = aggregate([A, B, C], duration_s=0.9, percentiles=[50, 99], gpus=2, price_per_gpu_hour=3.6)
    assert m["completed"] == 2 and m["failed"] == 1
    assert m["total_input_tokens"] == 30 and m["total_output_tokens"] == 7
    assert m["request_throughput"] == pytest.approx(2 / 0.9)
    assert m["output_throughput"] == pytest.approx(7 / 0.9)
    assert m["total_token_throughput"] == pytest.approx(37 / 0.9)
    assert m["mean_ttft_ms"] == pytest.approx(200.0)
    assert m["median_ttft_ms"] == pytest.approx(200.0)
    assert m["std_ttft_ms"] == pytest.approx(100.0)          # population std of (100, 300)
    assert m["p99_ttft_ms"] == pytest.approx(100 + 0.99 * 200)  # linear interpolation
    assert m["mean_tpot_ms"] == pytest.approx((150 + 100 / 3) / 2)
    itls = [100.0, 200.0, 100.0]                              # pooled over requests
    assert m["mean_itl_ms"] == pytest.approx(sum(itls) / 3)
    assert m["median_itl_ms"] == pytest.approx(100.0)
    assert m["p50_itl_ms"] == pytest.approx(100.0)
    assert m["mean_e2el_ms"] == pytest.approx(400.0)
    assert m["tput_per_gpu"] == pytest.approx(37 / 0.9 / 2)
    assert m["output_tput_per_gpu"] == pytest.approx(7 / 0.9 / 2)
    assert m["interactivity"] == pytest.approx(1000 / m["median_tpot_ms"])
    # $/M tokens = price × 1e6 / (3600 × tok/s per GPU)
    assert m["cost_per_m_total_tokens_usd"] == pytest.approx(3.6 * 1e6 / (3600 * 37 / 0.9 / 2))
    assert m["cost_per_m_output_tokens_usd"] == pytest.approx(3.6 * 1e6 / (3600 * 7 / 0.9 / 2))
    assert m["mean_input_len"] == 15 and m["mean_output_len"] == 3.5
    # peaks: 1-s buckets from t0=0.0: all 7 tokens land in second 0; both requests overlap second 0
    assert m["max_output_tokens_per_s"] == 7 and m["max_concurrent_requests"] == 2
    assert m["max_in_flight"] == 1                            # A ends at 0.4, B starts at 0.5


def test_goodput_counts_requests_meeting_every_slo():
    m = aggregate([A, B], 1.0, slo_ms={"ttft": 200})
    assert m["request_goodput"] == pytest.approx(1.0)         # only A (100 ms) meets TTFT ≤ 200
    m = aggregate([A, B], 1.0, slo_ms={"ttft": 400, "tpot": 100})
    assert m["request_goodput"] == pytest.approx(1.0)         # A's TPOT 150 fails, B passes both


def test_single_token_requests_have_no_tpot_but_count_in_throughput():
    one = rec(0, 0.0, [0.05])
    m = aggregate([one], 1.0)
    assert "mean_tpot_ms" not in m and "interactivity" not in m
    assert m["output_throughput"] == 1 and "mean_itl_ms" not in m


def test_nothing_completed_gives_zero_throughput_and_no_latency():
    m = aggregate([C], 1.0)
    assert m["completed"] == 0 and m["output_throughput"] == 0
    assert not any(k.endswith("_ttft_ms") for k in m)


def test_no_price_means_no_cost():
    assert not any(k.startswith("cost") for k in aggregate([A], 1.0, price_per_gpu_hour=None))


def test_percentile_keys_follow_vllm():
    assert pkey(99) == "p99" and pkey(99.9) == "p99.9" and pkey(50.0) == "p50"


def test_schedule_lag():
    late = rec(0, 1.0, [1.1], intended=0.9)
    s = lag_stats([late, rec(1, 2.0, [2.1])], [50])
    assert s["mean_schedule_lag_ms"] == pytest.approx(50.0)
    assert math.isclose(s["p50_schedule_lag_ms"], 50.0)
