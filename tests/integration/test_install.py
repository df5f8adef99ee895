"""`pip install .` gives the `llmsweep` console command, equal to `python -m runner`, and an
installed runner carries its catalogues (it runs outside the checkout)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_pip_install_gives_the_llmsweep_command_equal_to_python_m_runner(tmp_path):
    src = tmp_path / "src"  # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "models", "spool", "mlruns", "mlflow.db", "reports", "build", "*.egg-info", "__pycache__",
        ".pytest_cache", ".ruff_cache"))
    prefix = tmp_path / "prefix"
    p = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                        "--prefix", str(prefix), str(src)], capture_output=True, text=True, timeout=300,
                       cwd=tmp_path)
    assert p.returncode == 0, p.stdout + p.stderr
    site = Path(sysconfig.get_path("purelib", vars={"base": str(prefix), "platbase": str(prefix)}))
    assert sorted(x.name for x in (site / "runner" / "configs").iterdir()) == \
        ["engines.yaml", "hardware.yaml", "lanes.yaml", "profiles.yaml"]
    sweep = tmp_path / "s.yaml"
    sweep.write_text((ROOT / "sweeps" / "blackwell-8k8k.yaml").read_text())
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "RUNNER_CONFIG_DIR")}
    env["PYTHONPATH"] = str(site)  # the installed copy only, not the checkout
    out = {}
    for name, cmd in (("console", [str(prefix / "bin" / "llmsweep")]), ("module", [sys.executable, "-m", "runner"])):
        r = subprocess.run([*cmd, "plan", str(sweep), "--json"], capture_output=True, text=True, timeout=120,
                           cwd=tmp_path, env=env)
        assert r.returncode == 0, r.stdout + r.stderr
        out[name] = r.stdout
    where = subprocess.run([sys.executable, "-c", "import runner; print(runner.__file__)"], capture_output=True,
                           text=True, cwd=tmp_path, env=env)
    assert where.stdout.strip().startswith(str(site)), where.stdout + where.stderr  # not the checkout's runner
    assert out["console"] == out["module"] and '"trial_id"' in out["console"]
    bad = subprocess.run([str(prefix / "bin" / "llmsweep"), "validate", str(tmp_path / "missing.yaml")],
                         capture_output=True, text=True, cwd=tmp_path, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr + bad.stdout
