"""A Hugging Face hub cache holding only ``config.json`` files, in the layout ``huggingface_hub``
reads with ``HF_HUB_OFFLINE=1`` (``models--{org}--{name}/refs/main`` naming a snapshot, and
``snapshots/{commit}/config.json``): the planner's hub path, exercised without a hub."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "configs"

#: Hub ids of the studies' sweep files → the public configuration in ``tests/data/configs``.
STUDY_MODELS = {"cpatonn/GLM-4.5-Air-AWQ-4bit": "glm-4.5-air-awq",
                "QuantTrio/Qwen3-Coder-480B-A35B-Instruct-AWQ": "qwen3-coder-480b-a35b-awq",
                "zai-org/GLM-4.6-FP8": "glm-4.6-fp8", "deepseek-ai/DeepSeek-V3": "deepseek-v3"}


def seed(cache: Path, models: dict[str, str] = STUDY_MODELS) -> Path:
    """Write ``models`` (hub id → ``tests/data/configs`` name) into the hub cache ``cache``."""
    for repo, name in models.items():
        src = DATA / f"{name}.json"
        commit = hashlib.sha1(src.read_bytes()).hexdigest()
        root = cache / f"models--{repo.replace('/', '--')}"
        (root / "refs").mkdir(parents=True, exist_ok=True)
        (root / "refs" / "main").write_text(commit)
        snap = root / "snapshots" / commit
        snap.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, snap / "config.json")
    return cache
