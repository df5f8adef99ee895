"""Teardown that frees devices for real: an engine actor's whole process tree is gone before its
placement group is removed.

Ray kills an actor's own process; the engine's processes are its children and grandchildren
(vLLM's engine core, and its workers under it; SGLang's schedulers), which outlive it for a while
or for good, holding device memory the next launch on the same GPUs is about to ask for. So each
engine actor's tree is killed on its own node by a small task pinned there (node affinity, no
resources): it snapshots the actor's descendants, SIGKILLs them and the actor, and returns once
every one of them has exited. The scheduler removes the group only after that, so the next launch
on those devices is admitted only when nothing of the previous one runs.
"""

from __future__ import annotations

import time
from typing import Any

#: Seconds a killed process tree may take to exit before the teardown goes on without it.
REAP_TIMEOUT_S = 30.0


def kill_tree(pid: int, timeout_s: float = REAP_TIMEOUT_S, create_time: float | None = None) -> dict[str, Any]:
    """SIGKILL process ``pid`` and all its descendants on this node; wait until they have exited.

    Returns ``{"pids": [...], "survivors": [...]}``: every pid found (the actor first) and those still
    alive after ``timeout_s`` (empty on success). A ``pid`` already gone, or reused by a process
    started at another ``create_time`` than the actor's, is left alone.
    """
    import psutil

    try:
        root = psutil.Process(pid)
        if create_time is not None and abs(root.create_time() - create_time) > 0.01:
            return {"pids": [], "survivors": []}  # the actor is gone and its pid belongs to someone else
        procs = [root, *root.children(recursive=True)]  # before any kill: orphans lose their parent link
    except psutil.NoSuchProcess:
        return {"pids": [], "survivors": []}
    for p in reversed(procs):  # descendants before the actor (psutil lists parents before their children)
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    deadline = time.monotonic() + timeout_s
    alive = procs
    while alive and time.monotonic() < deadline:
        alive = [p for p in alive if _running(p)]
        if alive:
            time.sleep(0.05)
    return {"pids": [p.pid for p in procs], "survivors": [p.pid for p in alive]}


def _running(p: Any) -> bool:
    """Whether ``p`` still runs: a zombie (exited, not yet reaped by its new parent) does not, and
    holds no memory or device."""
    import psutil

    try:
        return p.is_running() and p.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def reap(places: list[dict[str, Any] | None], timeout_s: float = REAP_TIMEOUT_S, wait: bool = True
         ) -> list[dict[str, Any]]:
    """Kill each engine actor's process tree on its own node (``places``: the actors' ``where()``
    answers, ``node_id``, ``pid`` and ``create_time``; ``None`` for an actor that never answered)
    and, with ``wait``, return once they have exited (without: when the kills are sent, as a
    stopping driver must). Best-effort, never raises: a node that has gone took its processes."""
    try:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        task = ray.remote(num_cpus=0, max_retries=0)(kill_tree)
        refs = [task.options(scheduling_strategy=NodeAffinitySchedulingStrategy(p["node_id"], soft=False)).remote(
                int(p["pid"]), timeout_s, p.get("create_time")) for p in places if p and p.get("node_id")
                and p.get("pid")]
        return list(ray.get(refs, timeout=timeout_s + 10)) if wait else []
    except Exception as e:
        return [{"error": f"{type(e).__name__}: {e}"[:300]}]
