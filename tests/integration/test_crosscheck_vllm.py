"""Our numbers against ``vllm bench serve`` on one real vLLM CPU server.

One ``vllm serve`` (the tiny model, loopback) is driven, at two concurrencies, by a sweep in
``api: endpoint`` mode (the client actor and SSE client that ``api: openai`` also uses) and by
``vllm bench serve --save-result --save-detailed``, with the same lengths, seed, concurrency,
prompt count, warm-up and text prompts (``prompt_format: text``, as vLLM sends them). vLLM runs
before and after ours (A-B-A) and ours must lie within the envelope of its two runs, widened
by the bounds: ``min(vllm) × (1 − b) <= ours <= max(vllm) × (1 + b)``, with b = 10 % for
output throughput and 15 % for median TPOT (the issue's bounds) and 20 % for median TTFT.

What the data said, on 2 cores shared by engine core, API server, client and Ray:
- a client that loses the CPU reads a stream late: its tokens arrive in one burst (median TPOT
  0.003 ms) or its first token late (TTFT 40-380 ms where 6-25 ms is usual). Before the server
  ran at ``nice -10`` with its engine core's OpenMP threads on core 0 and itself on core 1, that
  hit 3 of 40 vLLM runs and 2 of 20 of ours over 10 test runs, and two vLLM runs minutes apart
  then differed by 2×. In the next 3 test runs it hit 3 of 12 vLLM runs and none of 6 of ours,
  in the 3 after those one run of ours. Such a run
  (``_hit``) measures the client's scheduling, not the server: a hit vLLM run is repeated (up
  to 3 runs), and a hit run of ours fails the test.
- Even runs not hit swing: output throughput once halved (ours, c=8: 1,262 against 2,439 and
  2,512 tok/s) and once fell 20 % (vLLM, c=2) with TTFT and TPOT both normal: time lost between
  a client's requests. So this test is opt-in (``make crosscheck``, ``RUNNER_CROSSCHECK=1``)
  and not part of ``make test``: here it fails on the machine more often than on the
  definitions. Of its last 6 runs 1 passed.
- TTFT: in runs not hit ours was 10-18 % lower than vLLM's (6 comparisons), TPOT and throughput
  within a few %. Our client sends a request in less CPU time (``make bench-client``: 1.53×
  vLLM's requests per CPU-second), and on 2 shared cores that shows in TTFT; hence 20 %.
  With token-id prompts instead of text our TTFT was 21-26 % lower: the server's tokenization.

vLLM's own per-request arrays from its saved JSON also go through our ``aggregate``, and the
aggregates must equal its reported figures to 1e-6 (relative). That test is in ``make test``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from runner import metrics, session

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "tests" / "support" / "vllm_cli.py"
LEVELS = (2, 8)
IN, OUT, PER_LEVEL = 128, 64, 24  # num_prompts = 24 × concurrency: runs of ~2-4 s
PCTS = (50, 90, 99)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def vllm_server(tiny_model, tmp_path_factory):
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    # 2 cores, 3 busy processes (engine core, API server, client): the engine core's OpenMP
    # threads get core 0 to themselves and the API server starts on core 1, so the API server is
    # never starved into holding streamed tokens back (then sent in one burst) by the engine.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"}
    pin = ["taskset", "-c", "1"] if (os.cpu_count() or 1) >= 2 else []
    with open(log, "w") as f:
        proc = subprocess.Popen([*pin, "nice", "-n", os.environ.get("RUNNER_CROSSCHECK_NICE", "-10"), sys.executable,
                                 str(CLI), "serve", tiny_model, "--host", "127.0.0.1", "--port",
                                 str(port), "--served-model-name", "tiny-llama", "--max-model-len", "1024",
                                 "--enforce-eager", "--disable-uvicorn-access-log"],
                                stdout=f, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                with urllib.request.urlopen(url + "/v1/models", timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            assert proc.poll() is None, f"vllm serve exited:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"vllm serve not up in 300 s:\n{log.read_text()[-3000:]}"
            time.sleep(1)
        yield url
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # our own process group only
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _hit(r: dict) -> bool:
    """A run the client read late (see the module docstring): tokens arrived in bursts (median
    TPOT under 0.2 ms, below any decode step of this engine) or the first token waited over 15
    median decode steps at these light loads (clean runs here: at most 10)."""
    return r["median_tpot_ms"] < 0.2 or r["median_ttft_ms"] > 15 * r["median_tpot_ms"]


def _vllm_clean(url: str, model: str, c: int, out_dir: Path, tag: str, tries: int = 3) -> dict:
    """``vllm bench serve`` until a run is not hit (at most ``tries`` runs); the last one otherwise."""
    for i in range(tries):
        r = _vllm_bench(url, model, c, out_dir, f"{tag}{i}")
        if not _hit(r):
            break
    return r


def _vllm_bench(url: str, model: str, c: int, out_dir: Path, tag: str) -> dict:
    name = f"{tag}-c{c}.json"
    cmd = [sys.executable, str(CLI), "bench", "serve", "--backend", "vllm", "--base-url", url,
           "--endpoint", "/v1/completions", "--model", "tiny-llama", "--tokenizer", model,
           "--dataset-name", "random", "--random-input-len", str(IN), "--random-output-len", str(OUT),
           "--ignore-eos", "--num-prompts", str(PER_LEVEL * c), "--max-concurrency", str(c),
           "--request-rate", "inf", "--seed", "0", "--num-warmups", "2", "--disable-tqdm",
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", ",".join(map(str, PCTS)),
           "--save-result", "--save-detailed", "--result-dir", str(out_dir), "--result-filename", name]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, f"vllm bench serve failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return json.loads((out_dir / name).read_text())


SWEEP = f"""
name: it-crosscheck
engine: vllm
api: endpoint
endpoint: {{base_url: "$URL", model: tiny-llama}}
models:
  - id: tiny-llama
    path: $MODEL
hardware: cpu
workload:
  input_len: {IN}
  output_len: {OUT}
  concurrency: {list(LEVELS)}
  num_prompts: "{PER_LEVEL} * concurrency"
  warmup: 2
  seed: 0
  prompt_format: text     # as vllm bench serve sends them: the server tokenizes, inside TTFT
  percentiles: {list(PCTS)}
"""

KEYS = ("output_throughput", "median_ttft_ms", "median_tpot_ms")
BOUNDS = {"output_throughput": 0.10, "median_ttft_ms": 0.20, "median_tpot_ms": 0.15}


@pytest.mark.skipif(os.environ.get("RUNNER_CROSSCHECK") != "1",
                    reason="opt-in (make crosscheck): on 2 shared cores the clients' scheduling swings the "
                           "figures more than the bounds (see the module docstring)")
def test_endpoint_mode_agrees_with_vllm_bench_serve(vllm_server, ray_local, mlflow_env, write_sweep, tiny_model,
                                                    tmp_path):
    before = {c: _vllm_clean(vllm_server, tiny_model, c, tmp_path, "before") for c in LEVELS}
    out = io.StringIO()
    path = write_sweep(SWEEP.replace("$URL", vllm_server))
    assert session.run(path, out=out) == 0, out.getvalue()
    after = {c: _vllm_clean(vllm_server, tiny_model, c, tmp_path, "after") for c in LEVELS}

    client = MlflowClient(mlflow_env)
    exp = client.get_experiment_by_name("it-crosscheck")
    runs = {int(r.data.params["concurrency"]): r for r in
            client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'")}
    assert set(runs) == set(LEVELS)
    report, worst = [], {}
    for c in LEVELS:
        run = runs[c]
        assert run.data.tags["runner.status"] == "COMPLETED"
        assert run.data.params["api"] == "endpoint" and run.data.params["endpoint.base_url"] == vllm_server
        ours = run.data.metrics
        assert not _hit(ours), ("our client read late", c, ours["median_ttft_ms"], ours["median_tpot_ms"])
        assert ours["completed"] == PER_LEVEL * c and ours["mean_output_len"] == OUT
        assert abs(ours["mean_input_len"] / IN - 1) < 0.01  # text prompts: the server's own count
        for key in KEYS:
            lo, hi = sorted((before[c][key], after[c][key]))
            off = ours[key] / lo - 1 if ours[key] < lo else ours[key] / hi - 1 if ours[key] > hi else 0.0
            report.append(f"c={c} {key}: ours {ours[key]:.3f} vllm {before[c][key]:.3f}/{after[c][key]:.3f} "
                          f"(outside vLLM's range by {off:+.1%})")
            worst[key] = max(worst.get(key, 0.0), abs(off))
    print("\n".join(report))
    for key in KEYS:
        assert worst[key] <= BOUNDS[key], "\n".join(report)


def test_vllm_bench_arrays_through_our_aggregation(vllm_server, tiny_model, tmp_path):
    """vLLM's own per-request arrays → our records → ``aggregate`` == vLLM's reported figures."""
    for c in LEVELS:
        r = _vllm_bench(vllm_server, tiny_model, c, tmp_path, "arrays")
        ours = metrics.aggregate(metrics.records_from_vllm_bench(r), r["duration"], percentiles=PCTS)
        keys = ["completed", "total_input_tokens", "total_output_tokens", "request_throughput",
                "output_throughput", "total_token_throughput"]
        keys += [f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el")
                 for s in ("mean", "median", "std", *(metrics.pkey(p) for p in PCTS))]
        assert all(k in r for k in keys), sorted(set(keys) - set(r))
        for k in keys:
            assert ours[k] == pytest.approx(r[k], rel=1e-6, abs=1e-9), (c, k, ours[k], r[k])
        assert r["completed"] == PER_LEVEL * c and r["failed"] == 0
