"""What a sweep may combine with what the runner sets itself: lanes on hardware kinds, and the
engine environment.

Both are checked when the file loads, so a sweep that could never run as written is refused by
``validate`` before anything is reserved.
"""

from __future__ import annotations

from typing import Any

from runner.core import SweepSpecError

#: Environment variables the runner or Ray set per engine actor, which a sweep's ``env`` may not.
RUNNER_ENV = ("CUDA_VISIBLE_DEVICES", "PYTHONPATH", "VLLM_CACHE_ROOT", "VLLM_HOST_IP", "VLLM_PORT",
              "VLLM_RAY_BUNDLE_INDICES", "VLLM_CPU_OMP_THREADS_BIND")


def check_env(file: str, env: dict[str, str]) -> None:
    """The sweep's ``env`` leaves alone what the runner and Ray set per engine actor."""
    for name in env:
        if name in RUNNER_ENV or name.startswith("RAY_"):
            raise SweepSpecError(file, f"env.{name}", name, "a variable the runner and Ray leave alone (not "
                                 f"{', '.join(RUNNER_ENV)} or RAY_*): they set it per engine actor")


def check_lane_kinds(file: str, spec: Any, lanes: dict, hw: dict) -> None:
    """A lane whose engine build serves one hardware kind (cpu, gpu) is never put on another, and a
    container lane (image_uri) is refused: the runner cannot run one (configs/lanes.yaml's header)."""
    kinds = {name: hw[name]["kind"] for name in spec.hardware}
    for key, lane in [*((f"lanes.{e}", v) for e, v in spec.lanes.items()),
                      *((f"models[{i}].lane", m.lane) for i, m in enumerate(spec.models) if m.lane)]:
        entry = lanes[lane]
        if entry.get("image_uri"):
            raise SweepSpecError(file, key, lane, "a lane Ray can build (uv, pip, py_executable, build): container "
                                 "lanes get no GPU from Ray's image plug-in and do not hold the runner")
        want = entry.get("hardware", "any")
        wrong = [h for h, k in kinds.items() if want != "any" and k != want]
        if wrong:
            raise SweepSpecError(file, key, lane, f"a lane for {', '.join(sorted(set(kinds.values())))} hardware: "
                                 f"{lane} serves {want} only, and the sweep runs it on {', '.join(wrong)}",
                                 "pick a lane of that kind (`grep -B1 -A4 hardware: configs/lanes.yaml`), or "
                                 "split the sweep by hardware kind (a lane applies to every hardware type of the "
                                 "sweep, whatever exclude drops)")
