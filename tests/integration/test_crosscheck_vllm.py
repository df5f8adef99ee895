"""Our numbers against ``vllm bench serve`` on one real vLLM CPU server.

One ``vllm serve`` (loopback) is driven, at two concurrencies, by a sweep in ``api: endpoint``
mode (the client actor and SSE client that ``api: openai`` also uses) and by ``vllm bench serve
--save-result --save-detailed``, with the same lengths, seed, concurrency, prompt count,
warm-up and text prompts (``prompt_format: text``, as vLLM sends them). At each level vLLM runs
before and after ours (A-B-A) and ours must lie within the range of its two runs widened by the issue's
bounds: ``min(vllm) × (1 − b) <= ours <= max(vllm) × (1 + b)``, b = 10 % for output
throughput and 15 % for median TTFT and median TPOT, or vLLM's own spread at that level
(``max(vllm) / min(vllm) − 1``) when a busy machine makes that larger: no comparison is finer
than the reference's noise in the same run. Prefix caching is off, so no run finds
an earlier run's prompts cached, and one unrecorded run warms the server up first.

The server holds a slower model than the tiny one (``GEOMETRY``: ~94 M parameters, a decode step
of ~20 ms on one core), because the test measures the clients, and they must not be starved.
With the tiny model (~2 ms a step) the API server streamed 1-3k tokens/s on 2 cores shared with
the engine core, the client and Ray, and a client that lost the CPU read a stream late (all its
tokens in one burst, median TPOT 0.003 ms, or TTFT 40-380 ms where 6-25 ms was usual), vLLM's
client as often as ours: 1 of 6 runs passed, and the test was opt-in (and 1 of 4 with the
priority fix below). With this model 8 runs of 8 passed and no run read late; the worst distance
outside vLLM's range was 8.3 % (throughput), 7.4 % (TTFT), 8.9 % (TPOT), and 4.5, 7.4, 1.0 % in
the 3 runs since the A-B-A moved inside each level and the warm-up run came in. A CI run then
failed with our client starved by the engine's processes, which had inherited the API server's
higher priority (see ``vllm_server``); since only the API server's threads get it, 3 runs of 3
passed (worst 3.8 %, 8.1 %, 4.1 %) with our client at 1.2-1.9 % of a core and 1-3 ms of loop
lag. A later CI run failed again (TTFT +18 %, loop lag 1.5-1.9 s): Ray starts every worker at
nice 15, so our client actor lost the CPU to the server at 0 where ``vllm bench serve`` (nice 0)
did not; client actors now run at nice 0 (``RAY_worker_niceness``), and the test checks it.

vLLM's own per-request arrays from its saved JSON also go through our ``aggregate``, and the
aggregates must equal its reported figures to 1e-6 (relative).
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

from runner import session
from runner.measure import metrics

ROOT = Path(__file__).resolve().parents[2]
CLI = ROOT / "tests" / "support" / "vllm_cli.py"
LEVELS = (2, 8)
IN, OUT, PER_LEVEL = 128, 64, 16  # num_prompts = 16 × concurrency: runs of ~20-25 s
PCTS = (50, 90, 99)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: A slower model than the tiny one (see the module docstring): ~94 M parameters, built locally.
GEOMETRY = {"hidden_size": 1024, "intermediate_size": 2816, "num_hidden_layers": 8, "num_attention_heads": 16,
            "num_key_value_heads": 4}


@pytest.fixture(scope="module")
def xcheck_model() -> str:
    from runner.tinymodel import build

    return str(build(ROOT / "models" / "xcheck-llama", geometry=GEOMETRY))


@pytest.fixture(scope="module")
def vllm_server(xcheck_model, tmp_path_factory):
    """(base URL, the warm-up run's saved result) of one ``vllm serve`` on loopback."""
    port = _free_port()
    log = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    # 2 cores for the engine's two processes (the worker computes on core 0; the engine core
    # busy-waits on it, sched_yield in a loop, at up to a whole core), the API server and a client.
    # Only the API server's threads run at a higher priority (``_prioritise``): started under
    # ``nice -10``, the engine's processes inherited it, and a client at nice 0 then got ~1/10 of
    # a core against the spinning engine core: in one CI run our client process used 0.5 % of a
    # core (1.2-1.9 % when not starved), its event loop lagged 2.1 s (1-3 ms), streams were read
    # seconds late and 4 requests met connections the server had closed after 5 s keep-alive.
    env = {**os.environ, "VLLM_CPU_KVCACHE_SPACE": "1", "HF_HUB_OFFLINE": "1", "VLLM_CPU_OMP_THREADS_BIND": "0"}
    with open(log, "w") as f:
        proc = subprocess.Popen([sys.executable, str(CLI), "serve", xcheck_model, "--host", "127.0.0.1", "--port",
                                 str(port), "--served-model-name", "xcheck-llama", "--max-model-len", "1024",
                                 "--enforce-eager", "--disable-uvicorn-access-log",
                                 "--no-enable-prefix-caching"],
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
        _prioritise(proc.pid)
        # not compared (a fresh server's first run is slower); its arrays feed the aggregation test
        yield url, _vllm_bench(url, xcheck_model, 8, log.parent, "warm-up")
    finally:
        os.killpg(proc.pid, signal.SIGTERM)  # our own process group only
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _prioritise(pid: int) -> None:
    """Nice -10 for every thread of process ``pid`` (not its children): on Linux a nice value is
    per thread, and threads started later inherit it from the thread that starts them. Without
    the privilege to raise it (not root), the server runs unraised, as ``nice`` would leave it."""
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            os.setpriority(os.PRIO_PROCESS, int(task.name), -10)
        except PermissionError:
            return
        except ProcessLookupError:
            continue  # a thread that has just ended


def _vllm_bench(url: str, model: str, c: int, out_dir: Path, tag: str) -> dict:
    name = f"{tag}-c{c}.json"
    cmd = [sys.executable, str(CLI), "bench", "serve", "--backend", "vllm", "--base-url", url,
           "--endpoint", "/v1/completions", "--model", "xcheck-llama", "--tokenizer", model,
           "--dataset-name", "random", "--random-input-len", str(IN), "--random-output-len", str(OUT),
           "--ignore-eos", "--num-prompts", str(PER_LEVEL * c), "--max-concurrency", str(c),
           "--request-rate", "inf", "--seed", "0", "--num-warmups", "2", "--disable-tqdm",
           "--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", ",".join(map(str, PCTS)),
           "--save-result", "--save-detailed", "--result-dir", str(out_dir), "--result-filename", name]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert p.returncode == 0, f"vllm bench serve failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
    return json.loads((out_dir / name).read_text())


def _sweep(url: str, model: str, c: int) -> str:
    return f"""
name: it-crosscheck-c{c}
engine: vllm
api: endpoint
endpoint: {{base_url: "{url}", model: xcheck-llama}}
models:
  - id: xcheck-llama
    path: {model}
hardware: cpu
workload:
  input_len: {IN}
  output_len: {OUT}
  concurrency: {c}
  num_prompts: {PER_LEVEL * c}
  warmup: 2
  seed: 0
  prompt_format: text     # as vllm bench serve sends them: the server tokenizes, inside TTFT
  percentiles: {list(PCTS)}
"""


KEYS = ("output_throughput", "median_ttft_ms", "median_tpot_ms")
BOUNDS = {"output_throughput": 0.10, "median_ttft_ms": 0.15, "median_tpot_ms": 0.15}


def test_endpoint_mode_agrees_with_vllm_bench_serve(vllm_server, ray_local, mlflow_env, write_sweep, xcheck_model,
                                                    tmp_path):
    url, _ = vllm_server
    before, after, runs = {}, {}, {}
    client = MlflowClient(mlflow_env)
    for c in LEVELS:  # A-B-A per level: the machine's speed drifts over minutes
        before[c] = _vllm_bench(url, xcheck_model, c, tmp_path, "before")
        out = io.StringIO()
        assert session.run(write_sweep(_sweep(url, xcheck_model, c), f"c{c}.yaml"), out=out) == 0, \
            out.getvalue()
        after[c] = _vllm_bench(url, xcheck_model, c, tmp_path, "after")
        exp = client.get_experiment_by_name(f"it-crosscheck-c{c}")
        [runs[c]] = client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'")
    report, worst = [], {}
    for c in LEVELS:
        run = runs[c]
        assert run.data.tags["runner.status"] == "COMPLETED" and int(run.data.params["concurrency"]) == c
        assert run.data.params["api"] == "endpoint" and run.data.params["endpoint.base_url"] == url
        ours = run.data.metrics
        assert ours["completed"] == PER_LEVEL * c and ours["mean_output_len"] == OUT
        assert abs(ours["mean_input_len"] / IN - 1) < 0.01  # text prompts: the server's own count
        for key in KEYS:
            lo, hi = sorted((before[c][key], after[c][key]))
            off = ours[key] / lo - 1 if ours[key] < lo else ours[key] / hi - 1 if ours[key] > hi else 0.0
            # no comparison is finer than the reference's own noise: the bound is the issue's, or the
            # spread between vLLM's own two runs at this level when the machine made that larger
            bound = max(BOUNDS[key], hi / lo - 1)
            report.append(f"c={c} {key}: ours {ours[key]:.3f} vllm {before[c][key]:.3f}/{after[c][key]:.3f} "
                          f"(outside vLLM's range by {off:+.1%}; bound {bound:.1%})")
            worst[key] = max(worst.get(key, 0.0), abs(off) - bound)
        # a starved client reads late: these say whether ours was (loop lag, its process's CPU share)
        assert ours["client_niceness"] == 0, "our client ran at Ray's worker niceness, not the user's 0"
        report.append(f"c={c} our client: nice {ours['client_niceness']:.0f}, "
                      f"max loop lag {ours['max_loop_lag_ms']:.0f} ms, "
                      f"CPU {ours['client_cpu_frac']:.1%} of a core, {ours['connection_retries']:.0f} requests "
                      f"sent again after a stale connection")
    print("\n".join(report))
    for key in KEYS:
        assert worst[key] <= 0, "\n".join(report)


def test_vllm_bench_arrays_through_our_aggregation(vllm_server, xcheck_model, tmp_path):
    """vLLM's own per-request arrays → our records → ``aggregate`` == vLLM's reported figures,
    at two concurrencies (8: the warm-up run)."""
    url, warm = vllm_server
    for c, r in ((8, warm), (2, _vllm_bench(url, xcheck_model, 2, tmp_path, "arrays"))):
        ours = metrics.aggregate(metrics.records_from_vllm_bench(r), r["duration"], percentiles=PCTS)
        keys = ["completed", "total_input_tokens", "total_output_tokens", "request_throughput",
                "output_throughput", "total_token_throughput"]
        keys += [f"{s}_{m}_ms" for m in ("ttft", "tpot", "itl", "e2el")
                 for s in ("mean", "median", "std", *(metrics.pkey(p) for p in PCTS))]
        assert all(k in r for k in keys), sorted(set(keys) - set(r))
        for k in keys:
            assert ours[k] == pytest.approx(r[k], rel=1e-6, abs=1e-9), (c, k, ours[k], r[k])
        assert r["completed"] == PER_LEVEL * c and r["failed"] == 0


def test_a_request_on_a_connection_the_server_closed_is_sent_again(vllm_server):
    """The keep-alive race of the starved CI run, made certain: the client's event loop is blocked
    past the server's keep-alive (uvicorn's 5 s under ``vllm serve``), so the pooled connection the
    next request goes out on is already closed. Bare aiohttp fails that request (the race is real);
    ours sends it once more, streams every token and counts the second send."""
    import asyncio

    import aiohttp

    from runner.engines.openai_http import OpenAIHttpEngine

    url, _ = vllm_server
    stall = 5 + 1  # vLLM's VLLM_HTTP_TIMEOUT_KEEP_ALIVE default, and a second more
    body = {"model": "xcheck-llama", "prompt": [11, 12, 13], "max_tokens": 4, "ignore_eos": True}

    async def bare() -> None:
        async with aiohttp.ClientSession() as s:
            for _ in range(2):
                async with s.post(url + "/v1/completions", json=body) as r:
                    assert r.status == 200
                    await r.read()
                time.sleep(stall)  # the loop blocked: a client descheduled, as in that run

    with pytest.raises(aiohttp.ServerDisconnectedError):
        asyncio.run(bare())

    async def ours() -> tuple[list[int], int]:
        engine = OpenAIHttpEngine(url, "xcheck-llama", poll_s=0)
        await engine.start()
        try:
            got = []
            for i in range(2):
                if i:
                    time.sleep(stall)
                got.append(sum([d.new_tokens async for d in engine.generate(
                    [11, 12, 13], 4, ignore_eos=True, temperature=0.0, request_id=f"stale-{i}")]))
            return got, engine.connection_retries
        finally:
            await engine.stop()

    assert asyncio.run(ours()) == ([4, 4], 1)
