"""A real `mlflow server` on loopback, started and stopped by PID (its own process group).

``MlflowServer(root)`` serves ``root/server.db`` (or ``backend_uri``) with artifacts under
``root/artifacts``; ``MlflowServer.with_basic_auth(root, user, password)`` does the same behind
MLflow's basic-auth app, with its user database and config under ``root``.
"""

from __future__ import annotations

import importlib.util
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MlflowServer:
    def __init__(self, root: Path, port: int | None = None, *extra: str, env: dict | None = None,
                 backend_uri: str | None = None):
        self.root, self.port, self.extra = root, port or free_port(), list(extra)
        self.env = env or {}
        self.backend_uri = backend_uri or f"sqlite:///{root / 'server.db'}"
        self.proc: subprocess.Popen | None = None

    @classmethod
    def with_basic_auth(cls, root: Path, username: str, password: str, port: int | None = None) -> MlflowServer:
        """MLflow 3.17's basic-auth app: `--app-name basic-auth`, configured by the ini file that
        MLFLOW_AUTH_CONFIG_PATH names (users in their own SQLite db), plus the static Flask secret
        that its CSRF protection requires. Needs Flask-WTF (the `mlflow[auth]` extra)."""
        if importlib.util.find_spec("flask_wtf") is None:
            raise RuntimeError("MLflow's basic-auth app needs Flask-WTF: install `mlflow[auth]==3.17.2` "
                               "(adds flask-wtf and wtforms) into the venv")
        ini = root / "basic_auth.ini"
        ini.write_text("[mlflow]\n"
                       "default_permission = NO_PERMISSIONS\n"
                       f"database_uri = sqlite:///{root / 'basic_auth.db'}\n"
                       f"admin_username = {username}\n"
                       f"admin_password = {password}\n"
                       "authorization_function = mlflow.server.auth:authenticate_request_basic_auth\n")
        ini.chmod(0o600)
        env = {"MLFLOW_AUTH_CONFIG_PATH": str(ini), "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(32)}
        return cls(root, port, "--app-name", "basic-auth", env=env)

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 120) -> MlflowServer:
        env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false", "MLFLOW_DISABLE_TELEMETRY": "true",
               **self.env}
        for k in ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD", "MLFLOW_TRACKING_URI"):
            env.pop(k, None)  # client settings of the test process are not the server's business
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "mlflow", "server", "--backend-store-uri", self.backend_uri,
             "--artifacts-destination", str(self.root / "artifacts"), "--host", "127.0.0.1",
             "--port", str(self.port), "--workers", "1", *self.extra],
            env=env, stdout=(self.root / "server.log").open("a"), stderr=subprocess.STDOUT, start_new_session=True)
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise RuntimeError((self.root / "server.log").read_text()[-3000:])
            try:
                with urllib.request.urlopen(f"{self.uri}/health", timeout=2) as r:
                    if r.status == 200:
                        return self
            except OSError:
                time.sleep(0.5)
        self.stop()
        raise TimeoutError(f"mlflow server not healthy after {timeout} s; log: {self.root / 'server.log'}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)  # the group we started: server and its workers
            self.proc.wait(30)
        self.proc = None
