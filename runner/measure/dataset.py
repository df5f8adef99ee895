"""Prompts for a load point, reproducible by seed: token ids plus the output length asked of each.

Kinds (``LoadPoint.dataset``; ``None`` = random with exact lengths):
- ``random``: uniform token ids from the non-special vocabulary. With ``range_ratio`` r > 0,
  each request's input and output lengths are drawn uniformly from [L(1−r), L(1+r)]
  (``range_convention: vllm``, as ``vllm bench serve``) or from [L·r, L] (``sglang``, as
  ``sglang.bench_serving``).
- ``prefix``: ``groups`` random prefixes of ``prefix_len`` tokens; request i starts with
  prefix i mod groups, then random tokens up to its input length.
- ``file``: a JSONL file of ``{"prompt": str, "output_len": int?}`` or a ShareGPT JSON list
  (first human turn = prompt; first model turn sets the output length), tokenised by the
  engine's own tokenizer, shuffled by seed and cycled to the count needed.
Invariants: the same (seed, load point) gives the same prompts on any machine; prompts never
contain special ids; different load points get different prompts (the seed is mixed with
the load point's shape) so the prefix cache cannot carry hits between them. ``digest`` is a
hash of every prompt and output length, recorded as ``dataset_hash``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass
class Prompts:
    ids: list[list[int]]
    output_lens: list[int]

    @property
    def digest(self) -> str:
        h = hashlib.sha256()
        for ids, n in zip(self.ids, self.output_lens):
            h.update(np.asarray(ids, dtype=np.int64).tobytes() + n.to_bytes(8, "little"))
        return h.hexdigest()[:16]


def _rng(seed: int, *salt: object) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed, *salt)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def _allowed(vocab_size: int, special_ids: Sequence[int]) -> np.ndarray:
    allowed = np.setdiff1d(np.arange(vocab_size), np.asarray(sorted(set(special_ids)), dtype=int))
    if not len(allowed):
        raise ValueError("the vocabulary has no non-special tokens")
    return allowed


def random_token_prompts(n: int, input_len: int, vocab_size: int, special_ids: Sequence[int],
                         seed: int, salt: object = ()) -> list[list[int]]:
    """``n`` prompts of exactly ``input_len`` token ids drawn uniformly from the non-special vocab."""
    rng = _rng(seed, input_len, salt)
    return [row.tolist() for row in rng.choice(_allowed(vocab_size, special_ids), size=(n, input_len))]


def lengths(n: int, mean: int, ratio: float, convention: str, rng: np.random.Generator) -> list[int]:
    """Per-request lengths around ``mean`` under the named range convention; all >= 1."""
    if convention == "vllm":
        if ratio <= 0:
            return [mean] * n
        lo, hi = int(mean * (1 - ratio)), int(mean * (1 + ratio))
    else:  # sglang.bench_serving: randint(max(int(L * r), 1), L + 1); r = 1 is exact, r = 0 is 1..L
        lo, hi = max(int(mean * ratio), 1), mean
    if lo >= hi:
        return [max(1, lo)] * n
    return [max(1, int(x)) for x in rng.integers(lo, hi + 1, size=n)]


def build(n: int, input_len: int, output_len: int, dataset: dict[str, Any] | None, *, vocab_size: int,
          special_ids: Sequence[int], seed: int, salt: object,
          encode: Callable[[str], list[int]] | None = None) -> Prompts:
    """``n`` prompts and the output length to ask of each."""
    d = dataset or {}
    kind = d.get("kind", "random")
    rng = _rng(seed, input_len, output_len, kind, salt)
    allowed = _allowed(vocab_size, special_ids)
    if kind == "file":
        return _from_file(n, Path(d["path"]), d.get("format", "jsonl"), output_len, encode, rng)
    ratio, conv = float(d.get("range_ratio", 0.0)), d.get("range_convention", "vllm")
    in_lens = lengths(n, input_len, ratio, conv, rng)
    out_lens = lengths(n, output_len, ratio, conv, rng)
    prefix_len, groups = int(d.get("prefix_len", 0)), int(d.get("groups", 1))
    prefixes = [rng.choice(allowed, size=prefix_len).tolist() for _ in range(groups)] if kind == "prefix" else []
    ids = []
    for i, length in enumerate(in_lens):
        head = prefixes[i % groups] if prefixes else []
        ids.append(head + rng.choice(allowed, size=max(1, length - len(head))).tolist())
    return Prompts(ids, out_lens)


def _from_file(n: int, path: Path, fmt: str, default_out: int, encode: Callable[[str], list[int]] | None,
               rng: np.random.Generator) -> Prompts:
    if encode is None:
        raise ValueError("a file dataset needs the engine's tokenizer")
    if not path.is_file():
        raise ValueError(f"dataset file {path} does not exist (paths are relative to the working directory)")
    text = path.read_text()
    rows: list[tuple[str, int | None]] = []
    if fmt == "sharegpt":
        for conv in json.loads(text):
            turns = conv.get("conversations") or []
            if len(turns) >= 2:
                rows.append((turns[0]["value"], len(encode(turns[1]["value"])) or None))
    else:
        for line in text.splitlines():
            if line.strip():
                obj = json.loads(line)
                rows.append((obj["prompt"], obj.get("output_len")))
    if not rows:
        raise ValueError(f"dataset file {path} has no usable records")
    order = rng.permutation(len(rows)).tolist()
    picked = [rows[order[i % len(rows)]] for i in range(n)]
    return Prompts([encode(p) for p, _ in picked], [int(o or default_out) for _, o in picked])
