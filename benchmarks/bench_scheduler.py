"""SIMULATION: the scheduler alone, on a fake cluster of 2 nodes × 8 logical GPUs (H100).

Every trial uses the ``simulated`` engine, which loads no model and only holds its placement
group for a known time (its tokens are timed sleeps). The mix is TP 1/2/4/8 with durations
of 10-30 s. Reported (a figure for the README, not a timed assert):
- makespan / lower bound, where the lower bound is max(total GPU-seconds / 16, longest trial);
- useful GPU utilisation = Σ GPUs × trial seconds / (16 × makespan);
- per-trial overhead: placement (group created → ready) and actor start (ready → engine ready);
- where the GPU-seconds went: held while placing, starting, measuring, stopping, or not held.

The fake nodes inherit ``PYTHONPATH`` from this process, as nodes with the package installed
would; a job-level ``runtime_env`` instead costs every actor ~0.5 s more to start here (Ray
then starts each worker through its setup_worker wrapper), which this figure would count.

What to expect: all durations are multiples of 10 s, so no GPU can finish 1,050 GPU-seconds on
16 GPUs before 70 s (16 × 60 < 1,050): the mix's own optimum is 1.067 × the lower bound. An
ideal longest-first list scheduler with overhead o per launch ends at 70 s (o = 0), 75.2 s
(o = 1.3 s) and 78 s (o = 2 s).

Two runs, one after the other: with Ray's defaults, and with ``RAY_enable_worker_prestart=1``
on the nodes (Ray starts worker processes ahead of lease requests; a cluster operator sets it
on ``ray start``), which takes ~0.4 s off each actor's start here.

Run: ``make bench-scheduler`` (or ``.venv/bin/python benchmarks/bench_scheduler.py``).
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from runner.cluster.scheduler import Outcome, Scheduler
from runner.plan.trial import LoadPoint, ServingConfig, Trial
from runner.sweep.spec import TimeoutSpec

TOKEN_S = 0.02
#: (TP, seconds) per trial: 1,050 GPU-seconds in all.
MIX = ([(8, 30), (8, 20)] + [(4, d) for d in (30, 20, 20, 10)] + [(2, d) for d in (30, 20, 20, 10, 10, 10)]
       + [(1, d) for d in (30, 20, 20, 20, 10, 10, 10, 10)])


def trials() -> list[list[Trial]]:
    out = []
    for i, (tp, secs) in enumerate(MIX):
        s = ServingConfig(engine="simulated", model=f"job{i:02d}", model_path="-", hardware="H100", tp=tp,
                          engine_args={"sim_token_s": TOKEN_S})
        lp = LoadPoint(input_len=1, output_len=int(secs / TOKEN_S), concurrency=1, num_prompts=1, warmup=0)
        out.append([Trial(serving=s, load=lp)])
    return out


def run(prestart: bool) -> float:
    """One scheduler run on a fresh fake cluster; prints its figures, returns makespan / lower bound.
    ``prestart``: the nodes' raylets run with ``RAY_enable_worker_prestart=1`` (Ray starts worker
    processes ahead of lease requests, so an actor often finds one already running)."""
    import ray
    from ray.cluster_utils import Cluster

    os.environ["RAY_enable_worker_prestart"] = "1" if prestart else "0"  # noqa: SIM112 (Ray's own spelling); inherited by the raylets
    cluster = Cluster(initialize_head=True, connect=False, head_node_args={"num_cpus": 0})
    for _ in range(2):
        cluster.add_node(num_cpus=16, num_gpus=8, labels={"ray.io/accelerator-type": "H100"})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False)
    spans: dict[str, list[float]] = {}

    def on_start(t: Trial, engine: dict) -> None:
        spans[t.trial_id] = [time.monotonic()]

    def on_end(o: Outcome) -> None:
        assert o.status.value == "COMPLETED", (o.reason, o.error)
        spans[o.trial.trial_id].append(time.monotonic())

    groups = trials()
    sched = Scheduler("bench", groups, TimeoutSpec(), on_start=on_start, on_end=on_end)
    t0 = time.monotonic()
    sched.run()
    makespan = time.monotonic() - t0
    gpu_s = sum(tp * secs for tp, secs in MIX)
    lower = max(gpu_s / 16, max(secs for _, secs in MIX))
    busy = sum(g[0].serving.tp * (spans[g[0].trial_id][1] - spans[g[0].trial_id][0]) for g in groups)
    timing = [x.timing for x in sched.history]
    place = [t["ready"] - t["placed"] for t in timing]
    start = [t["started"] - t["ready"] for t in timing]
    print(f"SIMULATION (engine holds resources only): {len(MIX)} trials, TP 1/2/4/8, 2 nodes x 8 GPUs, "
          f"worker prestart {'on' if prestart else 'off (Ray default)'}")
    print(f"makespan {makespan:.1f} s; lower bound {lower:.1f} s; makespan / lower bound = {makespan / lower:.3f}")
    print(f"useful GPU utilisation {gpu_s / (16 * makespan):.1%} (held incl. load-point overheads "
          f"{busy / (16 * makespan):.1%})")
    print(f"per-trial overhead: placement median {statistics.median(place):.2f} s (max {max(place):.2f}); "
          f"actor + engine start median {statistics.median(start):.2f} s (max {max(start):.2f})")
    # where the 16 × makespan GPU-seconds went
    held = {"placing": 0.0, "starting": 0.0, "measuring": 0.0, "stopping": 0.0}
    trial_of = {g[0].serving.serving_config_id: g[0].trial_id for g in groups}
    for x in sched.history:
        t, g, tid = x.timing, x.serving.gpus, trial_of[x.serving.serving_config_id]
        held["placing"] += g * (t["ready"] - t["placed"])
        held["starting"] += g * (t["started"] - t["ready"])
        held["measuring"] += g * (spans[tid][1] - t["started"])
        held["stopping"] += g * (t["removed"] - spans[tid][1])
    total = 16 * makespan
    parts = ", ".join(f"{k} {v / total:.1%}" for k, v in held.items())
    print(f"GPU-seconds: {parts}, no group {1 - sum(held.values()) / total:.1%}\n")
    ray.shutdown()
    cluster.shutdown()
    return makespan / lower


def main() -> None:
    os.environ.setdefault("RAY_TMPDIR", tempfile.mkdtemp(prefix="ray-bs-", dir="/tmp"))
    os.environ["PYTHONPATH"] = str(Path(__file__).parents[1])  # inherited by the nodes' workers
    ratios = {prestart: run(prestart) for prestart in (False, True)}
    print(f"makespan / lower bound: {ratios[False]:.3f} with Ray's defaults, {ratios[True]:.3f} with worker "
          f"prestart (target <= 1.15; the mix's optimum is 1.067)")


if __name__ == "__main__":
    main()
