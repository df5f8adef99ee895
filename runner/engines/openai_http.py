"""Any OpenAI-compatible server (``vllm serve``, SGLang, TGI, a hosted API) behind ``Engine``.

The server is already running; ``start`` only opens an aiohttp session (aiohttp, not httpx: its
C HTTP parser and ``StreamReader`` make it the faster streaming client, and it is what
``vllm bench serve`` uses) and checks that ``GET /v1/models`` answers. Requests go to
``POST /v1/completions`` with the prompt as a list of token ids (vLLM and SGLang accept that),
streamed as server-sent events. The connection pool is unlimited (``limit=0``): the load
generator alone decides how many requests are in flight. Proxy variables and ``~/.netrc`` are
ignored unless ``trust_env=True`` (aiohttp then looks both up in a thread for every request).

Where it comes from: the constructor's ``base_url``/``model``, or, when built bare by
``load_engine``, the serving config at ``start``: ``engine_args["base_url"]`` and
``engine_args.get("served_model_name", config.model)``, with ``config.model_path`` as the
local tokenizer directory.

Token counting (``Delta.new_tokens``): the server's own count. We ask for
``stream_options.continuous_usage_stats``, so each chunk carries the running
``usage.completion_tokens``, and a chunk's tokens are the increase of that count (exact when
the server coalesces several tokens into one chunk). A chunk without that count (a server that
ignores continuous usage) counts as one token when it has ``choices``, empty text included,
exactly as ``vllm bench serve`` counts chunks; the total can then fall short of the final usage
when chunks carried several tokens. A chunk whose count did not grow (e.g. a finish-reason-only
chunk) yields ``new_tokens=0``, which the load generator does not time as an output chunk. The
trailing usage-only chunk (``choices: []``) is never a token chunk; at end of stream one
``Delta(0, finished=True)`` carries ``prompt_tokens`` and the finish reason.

SSE parsing follows the spec: events end at a blank line; lines end in LF, CRLF or CR (also when
split across reads); ``data`` lines of one event are joined with LF; one space after the colon
is dropped; comments (``:``) and other fields (``event``, ``id``, ``retry``) are ignored; a final
event without its blank line is still read at EOF. ``[DONE]`` ends the data; the stream is then
read to EOF so the connection goes back to the pool. An ``{"error": …}`` event, an HTTP error or
a non-streamed answer raises ``EndpointError``.

Vocabulary: the API does not expose the tokenizer, so the runner passes ``vocab_size`` and
``special_ids`` (read from the model's tokenizer files where it has them); when they are omitted
and the model (or ``config.model_path``) is a local directory holding ``tokenizer.json`` (the
tiny test model), they are read from that file (``tokenizer_vocab``). ``encode`` uses that local
tokenizer too.

Prompts go as token ids (exact lengths; the server does not tokenize) unless the load point
asks for ``prompt_format: text``: then ``prepare_text`` (called by the actor before the load
point, off the clock) decodes each prompt with the local tokenizer and re-encodes it, trimming
or topping up until the re-encoding has the prompt's length (at most 10 tries, as ``vllm bench
serve``'s random dataset does; the last try is kept, so a few prompts may be a token off), and
``generate`` sends that text: the server tokenizes it, inside the measured TTFT, as in the
published HTTP benchmarks. The realised input length is the server's ``usage.prompt_tokens``.

Stats: if ``GET /metrics`` answers, a background task scrapes the Prometheus text every
``poll_s`` for vLLM's KV-cache usage and running/waiting requests (the same keys as
``VllmEngine.stats``); otherwise ``stats()`` is empty.

Abort: closing the response closes its connection; the server sees the disconnect and aborts.

Stale connections: a pooled keep-alive connection can be closed by the server just as a request
goes out on it (uvicorn, under ``vllm serve``, closes one idle for 5 s; a client descheduled for
longer than that sends on connections its event loop has not yet seen closed). The request then
fails before any response byte (``ServerDisconnectedError``) and is sent once more on another
connection, as RFC 9112 §9.3.1 allows for requests known to be idempotent: a completion request
changes nothing on the server, and the server closed the connection without answering it. Its
clock keeps running from the first send (TTFT includes the lost attempt), and
``connection_retries`` counts these second sends. aiohttp does the same, for idempotent methods
only. A second failure, or one after the response began, fails the request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import json.scanner
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from runner.engines.base import Delta, cancel

#: Prometheus gauge → our stats key (vLLM's names; summed over engines, KV usage averaged).
GAUGES = {"vllm:kv_cache_usage_perc": "kv_cache_usage", "vllm:num_requests_running": "num_running_reqs",
          "vllm:num_requests_waiting": "num_waiting_reqs",
          # counters since the server started, as VllmEngine.stats counts since the engine started
          "vllm:num_preemptions_total": "preemptions", "vllm:prefix_cache_queries_total": "prefix_cache_queries",
          "vllm:prefix_cache_hits_total": "prefix_cache_hits"}

_loads = json.loads
_scan = json.scanner.make_scanner(json.JSONDecoder())  # the C scanner: json.loads minus its wrappers
_DONE = b"[DONE]"


class EndpointError(RuntimeError):
    """The server answered with an HTTP error or an error event."""


def tokenizer_vocab(model_dir: str | Path) -> tuple[int, list[int]] | None:
    """(vocabulary size, special ids) from ``model_dir/tokenizer.json``, or None if absent."""
    path = Path(model_dir) / "tokenizer.json"
    if not path.is_file():
        return None
    tok = json.loads(path.read_text())
    vocab = (tok.get("model") or {}).get("vocab") or {}
    ids = list(vocab.values()) if isinstance(vocab, dict) else list(range(len(vocab)))  # Unigram: a list
    added = tok.get("added_tokens") or []
    size = max([len(vocab) - 1, *ids, *(a["id"] for a in added)]) + 1
    return size, sorted(a["id"] for a in added if a.get("special"))


def same_length_text(tok: Any, ids: list[int], tries: int = 10) -> tuple[str, bool]:
    """(text, exact): text that ``tok`` (a ``tokenizers.Tokenizer``) encodes to ``len(ids)``
    tokens if one was found within ``tries`` decode/re-encode rounds (re-encoded ids trimmed, or
    topped up from ``ids``), else the last try's text, with ``exact`` False."""
    target, cur, text = len(ids), list(ids), ""
    for _ in range(tries):
        text = tok.decode(cur, skip_special_tokens=False)
        again = tok.encode(text, add_special_tokens=False).ids
        if len(again) == target:
            return text, True
        cur = again[:target] if len(again) > target else again + ids[:target - len(again)]
    return text, False


def parse_metrics(text: str) -> dict[str, float]:
    """The ``GAUGES`` from Prometheus exposition text (summed over engines, KV usage averaged),
    plus ``prefix_cache_hit_rate`` = hits / queries once there were queries."""
    sums: dict[str, list[float]] = {}
    for line in text.splitlines():
        name = line.split("{", 1)[0].split(" ", 1)[0]
        if name in GAUGES:
            with contextlib.suppress(ValueError, IndexError):
                sums.setdefault(GAUGES[name], []).append(float(line.rsplit(" ", 1)[1]))
    out = {k: (sum(v) / len(v) if k == "kv_cache_usage" else sum(v)) for k, v in sums.items()}
    if out.get("prefix_cache_queries"):
        out["prefix_cache_hit_rate"] = out.get("prefix_cache_hits", 0.0) / out["prefix_cache_queries"]
    return out


def event_data(event: bytes) -> bytes | None:
    """The data of one SSE event (its lines, LF-separated, without the blank line that ended it):
    ``data`` lines joined with LF, or None when it has none (comments, other fields only)."""
    data = None
    for line in event.split(b"\n"):
        name, colon, value = line.partition(b":")
        if name != b"data":
            continue  # comment (empty name), other field, or blank
        if colon and value[:1] == b" ":
            value = value[1:]
        data = value if data is None else data + b"\n" + value
    return data


class SSEBuffer:
    """Bytes in, complete events' data out (see ``event_data``); carries partial events across reads."""

    __slots__ = ("_buf",)

    def __init__(self) -> None:
        self._buf = b""

    def feed(self, block: bytes) -> list[bytes]:
        data = self._buf + block if self._buf else block
        held = b""
        if b"\r" in data:
            if data[-1:] == b"\r":  # may be the first half of a CRLF split across reads
                data, held = data[:-1], b"\r"
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        events = data.split(b"\n\n")
        self._buf = events.pop() + held
        out = []
        for ev in events:
            if ev[:5] == b"data:" and b"\n" not in ev:  # the usual event: one data line
                out.append(ev[6:] if ev[5:6] == b" " else ev[5:])
            elif (d := event_data(ev)) is not None:
                out.append(d)
        return out

    def close(self) -> list[bytes]:
        """At EOF: the last event even without its terminating blank line."""
        rest, self._buf = self._buf.replace(b"\r", b"\n"), b""
        if not rest.strip():
            return []
        d = event_data(rest.rstrip(b"\n"))
        return [] if d is None else [d]


class OpenAIHttpEngine:
    name = "openai-endpoint"

    def __init__(self, base_url: str | None = None, model: str | None = None,
                 api_key_env: str = "OPENAI_API_KEY", *, vocab_size: int | None = None,
                 special_ids: list[int] | None = None, poll_s: float = 0.5, trust_env: bool = False) -> None:
        self.base_url = base_url.rstrip("/") if base_url else None
        self.model = model
        self._api_key_env = api_key_env
        self._headers: dict[str, str] = {}
        self._vocab = (vocab_size, list(special_ids or [])) if vocab_size else None
        self._tokenizer_dir: str | None = model
        self._poll_s, self._trust_env = poll_s, trust_env
        self._session: Any = None
        self._url = ""
        self._model_json = ""
        self._inflight: dict[str, Any] = {}
        self._stats: dict[str, float] = {}
        self._poller: asyncio.Task | None = None
        self._server_version = ""
        self._tokenizer: Any = None
        self._texts: dict[tuple[int, ...], str] = {}  # token ids → the JSON string sent instead (text prompts)
        self._stale: tuple[type[BaseException], ...] = ()  # a pooled connection closed before any answer
        self.connection_retries = 0  # requests sent a second time after a stale connection (since start)

    async def start(self, config: Any = None, *, multi_node: bool = False) -> None:
        import aiohttp

        if config is not None:
            args = getattr(config, "engine_args", {}) or {}
            self.base_url = self.base_url or str(args.get("base_url", "")).rstrip("/") or None
            self.model = self.model or args.get("served_model_name") or config.model
            if getattr(config, "model_path", None):
                self._tokenizer_dir = config.model_path
        if not self.base_url or not self.model:
            raise ValueError(f"{self.name}: needs a base_url and a model name")
        self._headers = {"Content-Type": "application/json"}
        if key := os.environ.get(self._api_key_env):
            self._headers["Authorization"] = f"Bearer {key}"
        self._url = self.base_url + "/v1/completions"
        self._model_json = json.dumps(self.model)
        self._stale = (aiohttp.ServerDisconnectedError, aiohttp.ClientConnectionResetError)
        self._session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, limit_per_host=0),  # never caps concurrency
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=30),  # read timeouts: the load generator's
            trust_env=self._trust_env)
        try:
            async with self._session.get(self.base_url + "/v1/models", headers=self._headers) as r:
                body = await r.text()
                if r.status != 200:
                    raise EndpointError(f"GET {self.base_url}/v1/models answered HTTP {r.status}: {body[:300]}")
            try:
                served = [m.get("id") for m in json.loads(body).get("data", [])]
            except (ValueError, AttributeError) as e:
                raise EndpointError(f"GET {self.base_url}/v1/models did not answer an OpenAI model list: "
                                    f"{body[:300]!r}") from e
            if served and self.model not in served:
                raise EndpointError(f"{self.base_url} does not serve model {self.model!r}; it serves {served}")
        except (aiohttp.ClientError, OSError, asyncio.TimeoutError) as e:
            await self.stop()
            raise EndpointError(f"OpenAI endpoint {self.base_url} is not reachable "
                                f"(GET /v1/models: {type(e).__name__}: {e})") from e
        except BaseException:
            await self.stop()
            raise
        version = await self._get("/version")
        if version:
            with contextlib.suppress(ValueError, AttributeError):
                self._server_version = str(json.loads(version).get("version", ""))
        if self._poll_s > 0 and (text := await self._get("/metrics")) is not None:
            self._stats = parse_metrics(text)
            self._poller = asyncio.create_task(self._poll())

    async def _get(self, path: str) -> str | None:
        """Body of a GET answered 200, else None (optional endpoints)."""
        try:
            async with self._session.get(self.base_url + path, headers=self._headers) as r:
                return await r.text() if r.status == 200 else None
        except Exception:
            return None

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            if (text := await self._get("/metrics")) is not None:
                self._stats = parse_metrics(text)

    def prepare_text(self, prompts: list[list[int]]) -> int:
        """Send ``prompts`` as text from now on (see the module docstring); returns how many
        re-encode to exactly their length. Needs the local tokenizer."""
        self.encode("")  # loads the tokenizer, or raises naming what is missing
        exact, self._texts = 0, {}
        for ids in prompts:
            key = tuple(ids)
            if key not in self._texts:
                text, ok = same_length_text(self._tokenizer, list(ids))
                self._texts[key] = json.dumps(text)
                exact += ok
        return exact

    async def generate(self, prompt_ids: list[int], max_tokens: int, *, ignore_eos: bool,
                       temperature: float, request_id: str) -> AsyncIterator[Delta]:
        prompt = self._texts.get(tuple(prompt_ids)) if self._texts else None
        if prompt is None:
            prompt = f'[{",".join(map(str, prompt_ids))}]'
        body = (f'{{"model":{self._model_json},"prompt":{prompt},'
                f'"max_tokens":{int(max_tokens)},"temperature":{float(temperature)!r},'
                f'"ignore_eos":{"true" if ignore_eos else "false"},"stream":true,'
                f'"stream_options":{{"include_usage":true,"continuous_usage_stats":true}}}}').encode()
        headers = {**self._headers, "X-Request-Id": request_id}
        try:
            resp = await self._session.post(self._url, data=body, headers=headers)
        except self._stale:  # see "Stale connections" in the module docstring
            self.connection_retries += 1
            resp = await self._session.post(self._url, data=body, headers=headers)
        self._inflight[request_id] = resp
        try:
            if resp.status != 200:
                text = await resp.text()
                raise EndpointError(f"POST /v1/completions answered HTTP {resp.status}: {text[:500]}")
            if resp.content_type == "application/json":
                raise EndpointError(f"POST /v1/completions did not stream: {(await resp.text())[:300]}")
            read, sse = resp.content.readany, SSEBuffer()
            seen, prompt_tokens, finish, done = 0, None, None, False
            last_n, last_pt, delta = -1, None, None  # Delta is frozen: one object per (n, prompt_tokens)
            while True:
                block = await read()
                if block:
                    if done:
                        continue  # drain to EOF so the connection goes back to the pool
                    payloads = sse.feed(block)
                else:
                    if done:
                        break
                    payloads, done = sse.close(), True
                for payload in payloads:
                    if payload[:1] != b"{":
                        payload = payload.strip()
                        if payload == _DONE:
                            done = True
                            break
                        if payload[:1] != b"{":
                            continue  # empty, or not a JSON object: not a chunk
                    text = payload.decode()
                    try:
                        obj, end = _scan(text, 0)
                    except StopIteration:
                        end = -1
                    if end != len(text):  # trailing data, or not JSON: json.loads decides (and raises)
                        obj = _loads(text)
                    if "error" in obj:
                        raise EndpointError(f"error event: {str(obj['error'])[:500]}")
                    usage = obj.get("usage")
                    total = None
                    if usage:
                        prompt_tokens = usage.get("prompt_tokens", prompt_tokens)
                        total = usage.get("completion_tokens")
                    if choices := obj.get("choices"):
                        if fr := choices[0].get("finish_reason"):
                            finish = fr
                        if total is None:
                            n, seen = 1, seen + 1
                        else:
                            n, seen = total - seen, total
                        if n != last_n or prompt_tokens != last_pt:
                            last_n, last_pt = n, prompt_tokens
                            delta = Delta(new_tokens=max(n, 0), prompt_tokens=prompt_tokens)
                        yield delta
            yield Delta(new_tokens=0, finished=True, prompt_tokens=prompt_tokens, finish_reason=finish)
        finally:
            self._inflight.pop(request_id, None)
            resp.release()

    async def abort(self, request_id: str) -> None:
        """Close that request's response: the server sees the disconnect and aborts it."""
        if (resp := self._inflight.pop(request_id, None)) is not None:
            resp.close()

    def vocab(self) -> tuple[int, list[int]]:
        if self._vocab is None:
            found = tokenizer_vocab(self._tokenizer_dir) if self._tokenizer_dir else None
            if found is None:
                raise ValueError(f"{self.name}: pass vocab_size (and special_ids): the server does not expose "
                                 f"its tokenizer, and {self._tokenizer_dir!r} is not a local directory with "
                                 f"tokenizer.json")
            self._vocab = found
        return self._vocab

    def encode(self, text: str) -> list[int]:
        if self._tokenizer is None:
            path = Path(self._tokenizer_dir or "") / "tokenizer.json"
            if not self._tokenizer_dir or not path.is_file():
                raise ValueError(f"{self.name}: no local tokenizer for {self._tokenizer_dir!r}; "
                                 f"file datasets need one")
            from tokenizers import Tokenizer

            self._tokenizer = Tokenizer.from_file(str(path))
        return list(self._tokenizer.encode(text).ids)

    def stats(self) -> dict[str, float]:
        return dict(self._stats)

    def versions(self) -> dict[str, str]:
        return {"engine": self.name, "engine_version": self._server_version, "base_url": self.base_url or ""}

    async def stop(self) -> None:
        poller, self._poller = self._poller, None
        await cancel(poller)
        for resp in list(self._inflight.values()):
            resp.close()
        self._inflight.clear()
        if self._session is not None:
            await self._session.close()
            self._session = None


ENGINE = OpenAIHttpEngine
