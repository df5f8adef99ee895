"""IN-PROCESS AGAINST THE HTTP STACK: output throughput of ``api: engine`` against ``api: openai``.

A figure for the README, measured side by side, never a timed assert. Each round is one real
sweep (tiny Llama on vLLM CPU, local Ray, SQLite MLflow in a temp dir) with
``api: [engine, openai]`` and the same workload at each concurrency; both API modes run in the
same round, one after the other (their engine launches cannot overlap on 2 cores), and the
rounds alternate which mode goes first. The summary prints, per concurrency, the median over
rounds of each mode's output tok/s, median TTFT and median TPOT, and the median of the
per-round ratios openai / engine.

Run: ``make bench-api`` (or ``.venv/bin/python benchmarks/bench_api.py --rounds 3``).
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SWEEP = """
name: bench-api-{round}
engine: vllm
api: {apis}
models:
  - id: tiny-llama
    path: {model}
    engine_args: {{max_model_len: 1024}}
hardware: cpu
engine_args: {{enforce_eager: true}}
workload:
  input_len: {input_len}
  output_len: {output_len}
  concurrency: {concurrency}
  num_prompts: "{per} * concurrency"
  warmup: 4
  seed: {round}
"""
KEYS = ("output_throughput", "median_ttft_ms", "median_tpot_ms")


def main(a: argparse.Namespace) -> None:
    from mlflow.tracking import MlflowClient

    from runner import session, tinymodel
    from runner.cluster import connect

    model = tinymodel.build(ROOT / "models" / "tiny-llama")
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    os.environ["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="ray-bapi-", dir="/tmp")
    os.environ["MLFLOW_TRACKING_URI"] = uri = f"sqlite:///{tmp / 'mlflow.db'}"
    os.environ["RUNNER_SPOOL"] = str(tmp / "spool")
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    connect()
    got: dict[tuple[int, str, int], dict[str, float]] = {}
    for rnd in range(a.rounds):
        apis = ["engine", "openai"] if rnd % 2 == 0 else ["openai", "engine"]
        path = tmp / f"round-{rnd}.yaml"
        path.write_text(SWEEP.format(round=rnd, apis=apis, model=model, input_len=a.input_len,
                                     output_len=a.output_len, concurrency=a.concurrency, per=a.per))
        out = io.StringIO()
        code = session.run(str(path), out=out)
        if code:
            sys.exit(f"round {rnd} failed:\n{out.getvalue()[-3000:]}")
        client = MlflowClient(uri)
        exp = client.get_experiment_by_name(f"bench-api-{rnd}")
        for r in client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'"):
            got[rnd, r.data.params["api"], int(r.data.params["concurrency"])] = r.data.metrics
        print(f"round {rnd + 1}/{a.rounds} done ({' then '.join(apis)})", flush=True)
    print(f"\ntiny Llama, vLLM CPU, {a.input_len}/{a.output_len} tokens, {a.per} × concurrency prompts, "
          f"{a.rounds} rounds; medians over rounds")
    print(f"{'conc':>5}  {'api':<8}{'out tok/s':>11}{'TTFT p50 ms':>13}{'TPOT p50 ms':>13}")
    for c in a.concurrency:
        for api in ("engine", "openai"):
            med = {k: statistics.median(got[rnd, api, c][k] for rnd in range(a.rounds)) for k in KEYS}
            print(f"{c:>5}  {api:<8}{med[KEYS[0]]:>11,.0f}{med[KEYS[1]]:>13.1f}{med[KEYS[2]]:>13.2f}")
        per = [got[rnd, "openai", c]["output_throughput"] / got[rnd, "engine", c]["output_throughput"]
               for rnd in range(a.rounds)]
        print(f"{'':>5}  openai / engine output tok/s: {statistics.median(per):.2f}x "
              f"(per round: {', '.join(f'{x:.2f}' for x in per)})")


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--output-len", type=int, default=64)
    p.add_argument("--per", type=int, default=8, help="prompts per unit of concurrency")
    return p.parse_args(argv)


if __name__ == "__main__":
    main(_args(sys.argv[1:]))
