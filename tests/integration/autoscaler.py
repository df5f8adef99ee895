"""A Ray head of its own with Ray's autoscaler and its ``fake_multinode`` node provider, on this host.

``ray start --head --autoscaling-config=CFG`` with ``RAY_FAKE_CLUSTER=1``: the autoscaler (v1, Ray's
default for ``ray start``) launches fake worker nodes, each a ``ray start`` on this host with the
node type's resources and labels, when placement groups ask for them. Never ``ray stop`` and never
``ray.cluster_utils.AutoscalingCluster`` (both kill every Ray cluster on the host): the head is
stopped by killing exactly its processes and their descendants, found by a tag in their
environment (the fake nodes' agents carry neither the temp dir nor the port on their command line).

``version="v2"`` runs Ray's autoscaler v2 (``RAY_enable_autoscaler_v2=1``, the default of ``ray up``
since 2.50) on the same provider. Its config reader runs ``prepare_config``, which for provider type
``fake_multinode`` opens ``fake_multi_node/example.yaml``, a file the 2.60 wheel does not ship (the
monitor crashes); so the provider is named as ``type: external`` with ``module:`` the same
``FakeMultiNodeProvider`` class, and the head gets the fake head's instance id and node type name
(``RAY_CLOUD_INSTANCE_ID``, ``RAY_NODE_TYPE_NAME``), as ``ray.cluster_utils.AutoscalingCluster`` sets
them for v2.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

TAG_ENV = "RUNNER_TEST_AUTOSCALER_TAG"
HEAD_ID = "fffffffffffffffffffffffffffffffffffffffffffffffffff00000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gpu_type(label: str, gpus: int, max_workers: int) -> dict[str, Any]:
    return {"resources": {"CPU": 2, "GPU": gpus, f"accelerator_type:{label}": 1},
            "labels": {"ray.io/accelerator-type": label}, "node_config": {},
            "min_workers": 0, "max_workers": max_workers}


FAKE_PROVIDER = "ray.autoscaler._private.fake_multi_node.node_provider.FakeMultiNodeProvider"


def cluster_config(port: int, types: dict[str, dict[str, Any]], max_workers: int,
                   version: str = "v1") -> dict[str, Any]:
    """A cluster-launcher config for the fake provider: a CPU head and ``types`` (none at start)."""
    cfg = {
        "cluster_name": f"it-{port}", "max_workers": max_workers, "upscaling_speed": 1.0,
        "idle_timeout_minutes": 5, "docker": {}, "auth": {},
        "provider": {"type": "fake_multinode", "head_node_id": HEAD_ID, "use_node_id_as_ip": True,
                     "disable_node_updaters": True, "disable_launch_config_check": True,
                     "launch_multiple": True, "gcs_address": f"127.0.0.1:{port}"},
        "available_node_types": {"ray.head.default": {"resources": {"CPU": 2}, "node_config": {}, "max_workers": 0},
                                 **types},
        "head_node_type": "ray.head.default",
        "file_mounts": {}, "cluster_synced_files": [], "file_mounts_sync_continuously": False,
        "rsync_exclude": [], "rsync_filter": [], "initialization_commands": [], "setup_commands": [],
        "head_setup_commands": [], "worker_setup_commands": [], "head_start_ray_commands": [],
        "worker_start_ray_commands": [],
    }
    if version == "v2":
        cfg["provider"].update({"type": "external", "module": FAKE_PROVIDER})
    return cfg


class AutoscalingHead:
    """Start with ``start()``, stop with ``stop()``; ``address`` is the GCS address for drivers."""

    def __init__(self, types: dict[str, dict[str, Any]], max_workers: int, env: dict[str, str] | None = None,
                 version: str = "v1"):
        self.tag = secrets.token_hex(4)
        self.port = free_port()
        self.temp_dir = f"/tmp/ray-as-{self.tag}"  # short: Ray's socket paths must fit 107 bytes
        self.config_path = Path(self.temp_dir) / "cluster.json"
        self.types, self.max_workers, self.env, self.version = types, max_workers, env or {}, version

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> AutoscalingHead:
        os.makedirs(self.temp_dir)
        self.config_path.write_text(json.dumps(cluster_config(self.port, self.types, self.max_workers, self.version)))
        env = {**os.environ, **self.env, "RAY_FAKE_CLUSTER": "1", "AUTOSCALER_UPDATE_INTERVAL_S": "1",
               "RAY_enable_autoscaler_v2": "1" if self.version == "v2" else "0", "RAY_AUTH_MODE": "disabled",
               "RAY_USAGE_STATS_ENABLED": "0", TAG_ENV: self.tag}
        if self.version == "v2":
            env.update({"RAY_CLOUD_INSTANCE_ID": HEAD_ID, "RAY_NODE_TYPE_NAME": "ray.head.default"})
        ray = str(Path(sys.executable).parent / "ray")
        p = subprocess.run([ray, "start", "--head", f"--port={self.port}", f"--temp-dir={self.temp_dir}",
                            "--num-gpus=0", "--include-dashboard=false", f"--autoscaling-config={self.config_path}",
                            f"--ray-client-server-port={free_port()}", f"--dashboard-agent-listen-port={free_port()}",
                            "--object-store-memory=200000000", "--disable-usage-stats"],
                           env=env, cwd=self.temp_dir, capture_output=True, text=True, timeout=180)
        if p.returncode:
            self.stop()
            raise RuntimeError(f"ray start failed:\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}")
        return self

    def _processes(self) -> dict[int, psutil.Process]:
        roots = []
        for proc in psutil.process_iter(["pid", "cmdline"]):
            if proc.pid == os.getpid():
                continue
            try:
                line = " ".join(proc.info["cmdline"] or [])
                if self.temp_dir in line or f"127.0.0.1:{self.port}" in line or proc.environ().get(TAG_ENV) == self.tag:
                    roots.append(proc)
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                continue
        found: dict[int, psutil.Process] = {}
        for r in roots:
            found[r.pid] = r
            try:
                found.update({c.pid: c for c in r.children(recursive=True)})
            except psutil.NoSuchProcess:
                pass
        return found

    def stop(self) -> list[int]:
        """Kill this head's processes and their descendants (TERM, then KILL); return what is left."""
        for _ in range(3):
            procs = list(self._processes().values())
            if not procs:
                break
            for p in procs:
                try:
                    p.terminate()
                except psutil.NoSuchProcess:
                    pass
            _, alive = psutil.wait_procs(procs, timeout=5)
            for p in alive:
                try:
                    p.kill()
                except psutil.NoSuchProcess:
                    pass
            psutil.wait_procs(alive, timeout=5)
        time.sleep(0.2)
        left = sorted(self._processes())
        if not left:
            shutil.rmtree(self.temp_dir, ignore_errors=True)
        return left
