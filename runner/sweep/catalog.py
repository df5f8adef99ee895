"""The hardware and engine catalogues under ``configs/``, read once and cached.

Invariant: the catalogues are data, never code. ``RUNNER_CONFIG_DIR`` points elsewhere
(tests, a cluster's own catalogue); the default is the package's own ``runner/configs``.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Any

import yaml

from runner.core import RunnerError


def config_dir() -> Path:
    """``RUNNER_CONFIG_DIR``, else the package's ``configs`` (in a checkout a link to the top-level
    ``configs/``; in an installed runner the copy the wheel carries)."""
    return Path(os.environ.get("RUNNER_CONFIG_DIR") or Path(__file__).resolve().parents[1] / "configs")


@functools.cache
def _read(name: str) -> dict[str, Any]:
    path = config_dir() / name
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise RunnerError(f"{path}: cannot read the catalogue ({e}); "
                          "set RUNNER_CONFIG_DIR or restore it with `git checkout configs/`") from None
    if not isinstance(data, dict):
        raise RunnerError(f"{path}: expected a mapping of names to entries")
    return data


def hardware() -> dict[str, dict[str, Any]]:
    """Hardware type → entry (kind, label, memory_gb, price_per_gpu_hour, …)."""
    return _read("hardware.yaml")


def engines() -> dict[str, dict[str, Any]]:
    """Engine name → {version, reserved: {arg: sweep key}, args: [names]}."""
    return _read("engines.yaml")


def lanes() -> dict[str, dict[str, Any]]:
    """Lane name → {description, py_executable | build | image_uri | pip, env}."""
    return _read("lanes.yaml")


def profiles() -> dict[str, dict[str, Any]]:
    """Profile name → {input_len, output_len, concurrency, num_prompts[, request_rate, temperature]}."""
    return _read("profiles.yaml")
