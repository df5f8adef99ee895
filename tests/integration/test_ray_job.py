"""`ray job submit` against a real head started with `ray start --head`: the way a sweep runs on
a cluster. The head has its own temp dir and ports, and is stopped by killing exactly the
processes it started (never `ray stop`, which would kill every Ray cluster on the host).

What Ray 2.60 does that these tests rely on (checked here, not assumed):
- the job entrypoint's `python` is found on the PATH of the process that ran `ray start`, and
  every worker (the driver's engine actors too) runs the python that ran `ray start`; so the
  head is started with the venv's bin first on PATH, as an activated venv would have it;
- `--working-dir` is packed honouring `.gitignore`, `.rayignore`, runtime_env `excludes` and the
  default excludes (.git, .venv, venv, __pycache__); a package over 100 MiB is refused;
- `ray job submit` exits 0 for a stopped job, so status comes from `JobSubmissionClient`.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from tests.integration.conftest import ROOT
from tests.integration.faults import by_status, trial_runs, wait_for

VENV_BIN = Path(sys.executable).parent
RAY = str(VENV_BIN / "ray")
EXCLUDES = ["models/", "spool/", "mlruns/", "mlflow.db", "*.db", ".venv", ".git", ".pytest_cache/",
            ".ruff_cache/", "docs/*.png"]
MAX_UPLOAD = 100 * 2**20

SWEEP = """
name: {name}
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {{max_model_len: {max_model_len}}}
hardware: cpu
engine_args: {{enforce_eager: true, max_num_seqs: 4}}
workload:
  input_len: 16
  output_len: {output_len}
  concurrency: {concurrency}
  num_prompts: {num_prompts}
  warmup: 1
"""


# -- the head ---------------------------------------------------------------------------------
def _free_ports(n: int) -> list[int]:
    socks = []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _free_range(width: int) -> int:
    """A base port with `width` free ports above it (for the workers' port range)."""
    for base in range(20000, 30000, width):
        try:
            socks = []
            for p in range(base, base + width):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", p))
            return base
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
    raise RuntimeError("no free port range for Ray workers")


class Head:
    def __init__(self) -> None:
        self.tmp = tempfile.mkdtemp(prefix="rj-", dir="/tmp")  # AF_UNIX socket paths must stay ≤ 107 bytes
        (self.gcs, self.dashboard, self.agent, self.agent_grpc, self.client, self.node_manager, self.object_manager,
         self.runtime_env_agent, self.metrics) = _free_ports(9)
        self.pgid: int | None = None
        self.env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_TMPDIR")}
        self.env.update(RAY_AUTH_MODE="disabled", RAY_USAGE_STATS_ENABLED="0",
                        PATH=f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '')}")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.dashboard}"

    def start(self) -> Head:
        base = _free_range(100)
        cmd = [RAY, "start", "--head", "--temp-dir", self.tmp, "--port", str(self.gcs),
               "--dashboard-port", str(self.dashboard), "--dashboard-host", "127.0.0.1", "--include-dashboard", "true",
               "--dashboard-agent-listen-port", str(self.agent), "--dashboard-agent-grpc-port", str(self.agent_grpc),
               "--ray-client-server-port", str(self.client), "--node-manager-port", str(self.node_manager),
               "--object-manager-port", str(self.object_manager),
               "--runtime-env-agent-port", str(self.runtime_env_agent), "--metrics-export-port", str(self.metrics),
               "--min-worker-port", str(base), "--max-worker-port", str(base + 99),
               "--num-cpus", "2", "--num-gpus", "0", "--object-store-memory", str(300 * 2**20),
               "--disable-usage-stats"]
        # a new session: every daemon `ray start` forks shares this process group id
        p = subprocess.Popen(cmd, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                             start_new_session=True)
        self.pgid = p.pid
        try:
            out, _ = p.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        if p.returncode != 0:
            self.kill()
            raise RuntimeError(f"ray start failed ({p.returncode}):\n{out[-3000:]}")
        from ray.job_submission import JobSubmissionClient

        def connect():
            try:
                return JobSubmissionClient(self.url)  # checks that the job API answers
            except Exception:
                return None
        self.client_api = wait_for(connect, 60, "the job API")
        return self

    def processes(self) -> list[psutil.Process]:
        """What this head started: its process group, anything naming its temp dir, and all their
        descendants (workers set their own process group, so they are found as the raylet's children)."""
        roots = []
        for p in psutil.process_iter(["cmdline"]):
            try:
                if os.getpgid(p.pid) == self.pgid or any(self.tmp in a for a in p.info["cmdline"] or []):
                    roots.append(p)
            except (ProcessLookupError, psutil.Error):
                continue
        found = {p.pid: p for p in roots}
        for r in roots:
            try:
                found.update({c.pid: c for c in r.children(recursive=True)})
            except psutil.Error:
                continue
        found.pop(os.getpid(), None)
        return list(found.values())

    def kill(self) -> None:
        for _ in range(3):  # a dying raylet may still fork a worker: look again
            procs = self.processes()
            if not procs:
                break
            for p in procs:
                try:
                    p.send_signal(signal.SIGKILL)
                except psutil.Error:
                    pass
            psutil.wait_procs(procs, timeout=15)
        shutil.rmtree(self.tmp, ignore_errors=True)

    # -- jobs ---------------------------------------------------------------------------------
    def cli(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        return subprocess.run([RAY, "job", *args], env=self.env, capture_output=True, text=True, timeout=timeout,
                              cwd=ROOT)

    def submit(self, entrypoint: list[str], env_vars: dict[str, str], *, wait: bool, timeout: float = 900,
               submission_id: str | None = None) -> tuple[str, subprocess.CompletedProcess]:
        sid = submission_id or f"it-{int(time.time() * 1000)}"
        rt = {"env_vars": env_vars, "excludes": EXCLUDES}
        args = ["submit", "--address", self.url, "--submission-id", sid, "--working-dir", str(ROOT),
                "--runtime-env-json", json.dumps(rt)] + ([] if wait else ["--no-wait"]) + ["--", *entrypoint]
        try:
            p = self.cli(*args, timeout=timeout)
        except subprocess.TimeoutExpired:
            self.cli("stop", "--address", self.url, "--no-wait", sid)
            raise
        return sid, p

    def status(self, sid: str) -> str:
        return self.client_api.get_job_info(sid).status.value

    def wait_done(self, sid: str, timeout: float = 900) -> str:
        return wait_for(lambda: (s := self.status(sid)) in ("SUCCEEDED", "FAILED", "STOPPED") and s, timeout,
                        f"job {sid} to finish")

    def logs(self, sid: str) -> str:
        p = self.cli("logs", "--address", self.url, sid)
        assert p.returncode == 0, p.stderr
        return p.stdout


@pytest.fixture(scope="module")
def head(tiny_model):
    h = Head()
    try:
        yield h.start()
    finally:
        h.kill()
        assert not h.processes(), "processes of the test head survived"


@pytest.fixture
def job_env(tmp_path):
    """What a job needs, by absolute path: the sweep's SQLite MLflow and spool under tmp_path."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    from mlflow.tracking import MlflowClient

    MlflowClient(uri).search_experiments()  # create the schema now: the test polls while the job writes
    return uri, {"MLFLOW_TRACKING_URI": uri, "RUNNER_SPOOL": str(tmp_path / "spool"), "HF_HUB_OFFLINE": "1",
                 "MLFLOW_DISABLE_TELEMETRY": "true"}


def _sweep(write_sweep, name: str, *, max_model_len="256", output_len=8, concurrency="[1, 2]", num_prompts=6) -> str:
    return write_sweep(SWEEP.format(name=name, max_model_len=max_model_len, output_len=output_len,
                                    concurrency=concurrency, num_prompts=num_prompts), f"{name}.yaml")


def _trial_ids(sweep: str) -> list[str]:
    p = subprocess.run([sys.executable, "-m", "runner", "plan", "--json", sweep], capture_output=True, text=True,
                       timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert p.returncode == 0, p.stderr
    return [r["trial_id"] for r in json.loads(p.stdout)]


def _progress(log: str) -> tuple[list[str], list[str]]:
    lines = [ln.strip() for ln in log.splitlines()]
    return [ln for ln in lines if ln.startswith("▶")], [ln for ln in lines if ln[:1] in ("✔", "✘")]


# -- the tests --------------------------------------------------------------------------------
def test_working_dir_package_is_small_and_leaves_out_local_state(tmp_path):
    """Pack the checkout exactly as `ray job submit --working-dir` does (Ray's own packer, its
    default excludes, .gitignore, our excludes) and look inside."""
    from ray._private import ray_constants
    from ray._private.runtime_env.packaging import _zip_files

    excludes = ray_constants.get_runtime_env_default_excludes() + EXCLUDES
    for include_gitignore in (True, False):  # also without .gitignore (RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1)
        out = tmp_path / f"pkg-{include_gitignore}.zip"
        _zip_files(str(ROOT), excludes, str(out), include_gitignore=include_gitignore)
        size = out.stat().st_size
        assert size < MAX_UPLOAD, f"working_dir package is {size / 2**20:.1f} MiB"
        names = zipfile.ZipFile(out).namelist()
        tops = {n.split("/")[0] for n in names}
        assert {"runner", "configs", "sweeps", "pyproject.toml"} <= tops
        assert not tops & {"models", "spool", "mlruns", "mlflow.db", ".venv", ".git"}, tops
        assert "runner/cli.py" in names and "configs/engines.yaml" in names
        assert not [n for n in names if "__pycache__" in n]
    assert (ROOT / "models" / "tiny-llama").exists()  # it exists, it is just not shipped: jobs use its absolute path


def test_jobs_and_their_actors_use_the_heads_venv(head, job_env):
    _, env = job_env
    probe = ("import importlib.util, sys, ray; ray.init(); "
             "f = ray.remote(lambda: (sys.prefix, importlib.util.find_spec('vllm') is not None)); "
             "print('driver', sys.prefix); print('actor', *ray.get(f.remote()))")
    sid, p = head.submit(["python", "-c", probe], env, wait=True, timeout=300)
    assert p.returncode == 0, p.stdout + p.stderr
    assert head.status(sid) == "SUCCEEDED"
    log = head.logs(sid)
    prefix = os.path.realpath(sys.prefix)
    assert f"driver {sys.prefix}" in log or f"driver {prefix}" in log, log
    actor = next(ln for ln in log.splitlines() if ln.startswith("actor "))
    assert os.path.realpath(actor.split()[1]) == prefix and actor.split()[2] == "True", actor


def test_a_succeeded_sweep_is_a_succeeded_job_with_a_progress_line_per_trial(head, job_env, write_sweep):
    uri, env = job_env
    sweep = _sweep(write_sweep, "job-ok")
    ids = _trial_ids(sweep)
    t0 = time.monotonic()
    sid, p = head.submit(["python", "-m", "runner", "run", sweep], env, wait=True)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert head.wait_done(sid) == "SUCCEEDED"
    log = head.logs(sid)
    starts, ends = _progress(log)
    for tid in ids:
        assert len([ln for ln in starts if tid in ln]) == 1, log
        assert len([ln for ln in ends if tid in ln and ln.startswith("✔")]) == 1, log
    assert len(starts) == len(ends) == len(ids)
    assert f"{len(ids)} trials; 0 done, {len(ids)} to run" in log and f"COMPLETED: {len(ids)}" in log
    assert by_status(trial_runs(uri, "job-ok")).keys() == {"COMPLETED"}
    print(f"job-ok: {len(ids)} trials in {time.monotonic() - t0:.0f} s")


def test_a_failed_trial_fails_the_job_and_says_how_to_resume(head, job_env, write_sweep):
    uri, env = job_env
    sweep = _sweep(write_sweep, "job-fail", max_model_len="[256, -5]", concurrency="1")
    ids = _trial_ids(sweep)
    sid, p = head.submit(["python", "-m", "runner", "run", sweep], env, wait=True)
    assert p.returncode == 1, p.stdout[-3000:] + p.stderr[-3000:]  # the client's exit code agrees here...
    assert head.wait_done(sid) == "FAILED"                          # ...but the job's status is the truth
    log = head.logs(sid)
    starts, ends = _progress(log)
    for tid in ids:  # one ending line per trial; a trial whose engine never started has no ▶ line
        assert len([ln for ln in ends if tid in ln]) == 1 and len([ln for ln in starts if tid in ln]) <= 1, log
    assert len([ln for ln in ends if ln.startswith("✔")]) == 1 and len([ln for ln in ends if ln.startswith("✘")]) == 1
    last = [ln for ln in log.splitlines() if ln.strip()][-1]
    assert f"resume with `python -m runner run {sweep}`" in last, log[-2000:]
    st = by_status(trial_runs(uri, "job-fail"))
    assert len(st["COMPLETED"]) == 1 and len(st["FAILED"]) == 1
    assert st["FAILED"][0].data.tags.get("runner.reason"), st["FAILED"][0].data.tags


def test_ray_job_stop_kills_the_trial_and_a_later_job_completes_it(head, job_env, write_sweep):
    """The first job's load stalls (the loadgen's test hook: a consumer that stops reading after 2
    chunks), so `ray job stop` surely lands mid-trial, however slowly the CLI starts on 2 busy cores.
    The second job runs the same sweep without the hook and completes the trial."""
    from runner.measure.loadgen import STALL_ENV

    uri, env = job_env
    sweep = write_sweep(SWEEP.format(name="job-stop", max_model_len=256, output_len=16, concurrency=1,
                                     num_prompts=6) + "timeouts: {request_s: 300}\n", "job-stop.yaml")
    [tid] = _trial_ids(sweep)
    # Ray SIGKILLs a stopped job RAY_JOB_STOP_WAIT_TIME_S after its SIGTERM (3 s by default, read by the
    # job's supervisor from the job's env): the driver's graceful stop must not race that on a busy machine.
    stopping = {**env, STALL_ENV: "2", "RAY_JOB_STOP_WAIT_TIME_S": "120"}
    sid, p = head.submit(["python", "-m", "runner", "run", sweep], stopping, wait=False)
    assert p.returncode == 0, p.stderr
    wait_for(lambda: by_status(trial_runs(uri, "job-stop")).get("RUNNING"), 300, "the trial to be RUNNING")
    time.sleep(3)                                                           # into the load
    stop = head.cli("stop", "--address", head.url, sid, timeout=120)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert head.wait_done(sid, 120) == "STOPPED"
    log = head.logs(sid)
    runs = trial_runs(uri, "job-stop")
    assert [r.data.tags["runner.status"] for r in runs] == ["KILLED"], log[-3000:]
    assert runs[0].info.status == "KILLED" and runs[0].data.tags["runner.trial_id"] == tid
    assert runs[0].data.tags["runner.reason"] == "driver_killed" and "output_throughput" not in runs[0].data.metrics
    assert f"resume with `python -m runner run {sweep}`" in log, log[-3000:]

    sid2, p2 = head.submit(["python", "-m", "runner", "run", sweep], env, wait=True)
    assert p2.returncode == 0, p2.stdout[-3000:] + p2.stderr[-3000:]
    assert head.wait_done(sid2) == "SUCCEEDED"
    log = head.logs(sid2)
    assert "1 trials; 0 done, 1 to run" in log and "(attempt 2)" in log, log[-3000:]
    st = by_status(trial_runs(uri, "job-stop"))
    assert {k: len(v) for k, v in st.items()} == {"KILLED": 1, "COMPLETED": 1}
    assert st["COMPLETED"][0].data.tags["runner.attempt"] == "2"


def test_the_readmes_job_command_works_as_written(head):
    """The README's `ray job submit` line, character for character but for the head's address, run from
    the checkout: the demo model reaches the job, and the job SUCCEEDS. Without the variable the
    same job fails in its first lines, the model path named, before any group is reserved."""
    line = next(ln for ln in (ROOT / "README.md").read_text().splitlines()
                if "ray job submit" in ln and ln.startswith("RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1"))
    assert "--working-dir . -- python -m runner run sweeps/cpu-demo.yaml" in line
    assert (ROOT / "models" / "tiny-llama" / "config.json").is_file()  # `make model`, as the README says first
    cmd = line.replace("http://HEAD:8265", head.url)
    env = {k: v for k, v in head.env.items() if k not in ("MLFLOW_TRACKING_URI", "RUNNER_SPOOL", "RAY_ADDRESS")}
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    p = subprocess.run(["bash", "-c", cmd], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out[-4000:]
    sid = re.search(r"Job '([^']+)' submitted successfully", out).group(1)
    assert head.status(sid) == "SUCCEEDED", out[-4000:]
    log = head.logs(sid)
    assert "4 trials; 0 done, 4 to run" in log and "COMPLETED: 4" in log, log[-3000:]

    bare = cmd.replace("RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1 ", "").replace(" -- ", " --no-wait -- ")
    p = subprocess.run(["bash", "-c", bare], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    sid = re.search(r"Job '([^']+)' submitted successfully", p.stdout + p.stderr).group(1)
    assert head.wait_done(sid, 300) == "FAILED"
    log = head.logs(sid)
    assert "models[0].path: got 'models/tiny-llama'" in log and "never a hub id" in log, log[-3000:]
    assert "Traceback" not in log and "▶" not in log, log[-3000:]
