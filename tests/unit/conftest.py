import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # hermetic: hub ids in test sweeps are planned from the cache only

import textwrap

import pytest

BASE = """
name: t
engine: vllm
models:
  - id: tiny
    path: models/tiny-llama
hardware: cpu
engine_args:
  enforce_eager: true
  max_num_seqs: [8, 32]
workload:
  input_len: 128
  output_len: 64
  concurrency: [1, 8]
"""


@pytest.fixture
def sweep_file(tmp_path):
    """Write a sweep file (default: BASE) and return its path as str."""
    def write(text: str = BASE, name: str = "s.yaml") -> str:
        p = tmp_path / name
        p.write_text(textwrap.dedent(text))
        return str(p)
    return write
