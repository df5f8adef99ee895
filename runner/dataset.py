"""Prompts for a load point: random token ids of an exact length, reproducible by seed.

Invariants: the same (seed, load point) always gives the same prompts, on any machine;
prompts never contain the tokenizer's special ids; and different load points of one sweep
get different prompts (the seed is mixed with the load point's shape), so the engine's
prefix cache cannot carry hits from one load point into the next.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np


def _rng(seed: int, *salt: object) -> np.random.Generator:
    digest = hashlib.sha256(repr((seed, *salt)).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def random_token_prompts(n: int, input_len: int, vocab_size: int, special_ids: Sequence[int],
                         seed: int, salt: object = ()) -> list[list[int]]:
    """``n`` prompts of exactly ``input_len`` token ids drawn uniformly from the non-special vocab."""
    allowed = np.setdiff1d(np.arange(vocab_size), np.asarray(sorted(set(special_ids)), dtype=int))
    if not len(allowed):
        raise ValueError("the vocabulary has no non-special tokens")
    rng = _rng(seed, input_len, salt)
    ids = rng.choice(allowed, size=(n, input_len))
    return [row.tolist() for row in ids]
