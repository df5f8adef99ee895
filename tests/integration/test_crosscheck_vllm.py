"""Our numbers against ``vllm bench serve`` on one real vLLM CPU server, and the modes that
reach a server over HTTP.

One ``vllm serve`` (the tiny model, loopback) is driven, at two concurrencies, by a sweep in
``api: endpoint`` mode (the client actor and SSE client that ``api: openai`` also uses) and by
``vllm bench serve --save-result --save-detailed``, with the same lengths, seed, concurrency,
prompt count and warm-up. vLLM runs before and after ours (A-B-A) and ours is compared with
the envelope of its two runs, which absorbs vLLM's own run-to-run spread on the shared machine.
Bounds (the issue's): output throughput within 10 %, median TTFT and TPOT within 15 % of that
envelope: ``min(vllm) × (1 − b) <= ours <= max(vllm) × (1 + b)``. Data that led to the
envelope: vLLM against itself, minutes apart on one server, differed by up to 26 % in output
throughput at c=2 and 40 % in median TTFT at c=8 (2 cores shared by engine core, API server
and client), more than the bounds themselves. Prompts are text (``prompt_format: text``), as
vLLM sends them; with token ids our TTFT was 21-26 % lower, the server's tokenization.

vLLM's own per-request arrays from its saved JSON go through our ``aggregate``, and the
aggregates must equal its reported figures to 1e-6 (relative). That test always runs.

The agreement test is opt-in (``make crosscheck``, ``RUNNER_CROSSCHECK=1``): on this 2-core
machine ``vllm serve`` alternates between streaming each token and holding a request's tokens
back to send them in one burst (median TPOT 0.003 ms, TTFT ≈ E2EL) when its API server loses
the CPU to the engine core and the client. Over 10 test runs on an otherwise idle machine that
state hit 3 of vLLM's 40 runs and 2 of our 20, and more runs were partly hit (TTFT 40-360 ms at
c=2-8 where 8-25 ms is usual); two vLLM runs minutes apart then differ by 2x. A hard gate here
fails on the machine, not on the definitions. Runs untouched by it agreed within the bounds
(README, "Measured figures").
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
        proc = subprocess.Popen([*pin, sys.executable, str(CLI), "serve", tiny_model, "--host", "127.0.0.1", "--port",
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
BOUNDS = {"output_throughput": 0.10, "median_ttft_ms": 0.15, "median_tpot_ms": 0.15}


@pytest.mark.skipif(os.environ.get("RUNNER_CROSSCHECK") != "1",
                    reason="opt-in (make crosscheck): on 2 shared cores the server's own state swings more than "
                           "the bounds between two vLLM runs (see the module docstring)")
def test_endpoint_mode_agrees_with_vllm_bench_serve(vllm_server, ray_local, mlflow_env, write_sweep, tiny_model,
                                                    tmp_path):
    before = {c: _vllm_bench(vllm_server, tiny_model, c, tmp_path, "before") for c in LEVELS}
    out = io.StringIO()
    path = write_sweep(SWEEP.replace("$URL", vllm_server))
    assert session.run(path, out=out) == 0, out.getvalue()
    after = {c: _vllm_bench(vllm_server, tiny_model, c, tmp_path, "after") for c in LEVELS}

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
