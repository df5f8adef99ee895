"""Engine lanes → Ray runtime environments for engine actors.

Invariants: a lane never copies the driver's ``os.environ`` (Ray's driver environment holds
``RAY_EXPERIMENTAL_NOSET_CUDA_VISIBLE_DEVICES=1`` and possibly secrets); it names only what
the lane declares. A ``build`` lane is built at most once per driver process.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Any

from runner.core import RunnerError
from runner.sweep import catalog

REPO = Path(__file__).resolve().parents[2]


@functools.cache
def _built(script: str) -> str:
    path = (REPO / script).resolve()
    if REPO not in path.parents:
        raise RunnerError(f"configs/lanes.yaml: build script {script!r} must stay inside {REPO}")
    try:
        p = subprocess.run(["bash", str(path)], capture_output=True, text=True, timeout=3600, check=True)
    except (OSError, subprocess.SubprocessError) as e:
        err = getattr(e, "stderr", "") or ""
        raise RunnerError(f"building lane with {script} failed ({e}); {err[-2000:]}\n"
                          f"  next: run `bash {script}` by hand to see why") from None
    venv = p.stdout.strip().splitlines()[-1]
    return str(Path(venv) / "bin" / "python")


def runtime_env(lane: str) -> tuple[dict[str, Any], dict[str, str]]:
    """(runtime_env entries other than env_vars, env vars) for an engine actor in ``lane``."""
    entry = catalog.lanes().get(lane)
    if entry is None:
        raise RunnerError(f"configs/lanes.yaml: unknown lane {lane!r}; allowed: {', '.join(catalog.lanes())}")
    env = {str(k): str(v) for k, v in (entry.get("env") or {}).items()}
    rt: dict[str, Any] = {}
    if entry.get("build"):
        rt["py_executable"] = _built(entry["build"])
    if entry.get("py_executable"):
        rt["py_executable"] = entry["py_executable"]
    if entry.get("image_uri"):
        raise RunnerError(f"configs/lanes.yaml: lane {lane!r} is a container lane (image_uri), which the runner "
                          "does not support (see the file's header); give it uv or pip packages instead")
    if entry.get("uv"):  # Ray's uv plug-in (runtime_env/uv.py): a per-node virtualenv with system site packages
        rt["uv"] = {"packages": [str(x) for x in entry["uv"]]}
    if entry.get("pip"):
        rt["pip"] = list(entry["pip"])
    return rt, env


def kind(lane: str) -> str:
    """The hardware kind a lane's engine build serves: ``cpu``, ``gpu`` or ``any``."""
    return str((catalog.lanes().get(lane) or {}).get("hardware", "any"))
