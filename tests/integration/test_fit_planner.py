"""The fit planner through the CLI and ``run``, with no engine: the Blackwell study's sweep file
plans with a verdict per configuration (its models' ``config.json`` read through the real
``huggingface_hub`` from an offline cache, ``tests/support/hfcache.py``), and a configuration
that cannot fit ends WONT_FIT in MLflow without a launch, once."""

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from mlflow.tracking import MlflowClient

from runner import session
from tests.support import hfcache

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, cache: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    return subprocess.run([sys.executable, "-m", "runner", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=300)


def test_the_blackwell_sweep_plans_with_a_verdict_per_configuration(tmp_path):
    cache = hfcache.seed(tmp_path / "hub")
    p = _cli("plan", "sweeps/blackwell-8k8k.yaml", cache=cache)
    assert p.returncode == 0, p.stderr
    assert p.stdout.count("    fits: weights ") == 20 and "WONT_FIT" not in p.stdout and "unknown" not in p.stdout
    rows = json.loads(_cli("plan", "--json", "sweeps/blackwell-8k8k.yaml", cache=cache).stdout)
    assert len(rows) == 60 and {r["fit"]["verdict"] for r in rows} == {"FITS"}
    by = {(r["params"]["model"], r["params"]["hardware"], r["params"]["concurrency"], r["params"]["ep"]): r["fit"]
          for r in rows}
    # GLM-4.5-Air AWQ on one H100: ~17 GB of KV cache, 11 requests of 16,000 tokens; 8 replicas
    # share c=64 as 8 each (fits), c=128 as 16 each: it will queue. On a B200 a replica holds 75.
    h64, h128 = by[("glm-4.5-air-awq", "H100", 64, False)], by[("glm-4.5-air-awq", "H100", 128, False)]
    b200 = by[("glm-4.5-air-awq", "B200", 256, False)]
    assert h64["max_concurrency"] == h128["max_concurrency"] == 11 and not h64["kv_bound"] and h128["kv_bound"]
    assert b200["max_concurrency"] == 75 and not b200["kv_bound"]
    assert b200["kv_capacity_tokens"] > 6 * h64["kv_capacity_tokens"] > 0  # 113.8 GB of KV against 17.1
    v = _cli("validate", "sweeps/blackwell-8k8k.yaml", cache=cache)
    assert v.returncode == 0 and "WONT_FIT" not in v.stdout, v.stdout + v.stderr
    # without the cache (and offline) the planner says it cannot tell, and why; never a traceback
    u = _cli("plan", "sweeps/blackwell-8k8k.yaml", cache=tmp_path / "empty")
    assert u.returncode == 0 and u.stdout.count("fit unknown: config.json of ") == 20 and "Traceback" not in u.stderr


SWEEP = """
name: it-wont-fit
engine: vllm
models:
  - id: llama-70b
    path: {model}
hardware: H100
shape: {{tp: 1}}
engine_args: {{max_model_len: 8192}}
workload:
  input_len: 128
  output_len: 64
  concurrency: 1
  num_prompts: 4
"""


def test_a_configuration_that_cannot_fit_ends_wont_fit_without_a_launch(mlflow_env, tmp_path, monkeypatch):
    model = tmp_path / "llama-70b"  # its config.json only: 141 GB of bf16 weights on one 80 GB H100
    model.mkdir()
    shutil.copyfile(hfcache.DATA / "llama-3.1-70b.json", model / "config.json")
    sweep = tmp_path / "s.yaml"
    sweep.write_text(SWEEP.format(model=model))
    out = io.StringIO()
    assert session.run(str(sweep), out=out) == 1, out.getvalue()
    text = out.getvalue()
    assert "1 serving configuration(s) WONT_FIT" in text and "needs 144.9 GB per GPU (weights 141.1" in text \
        and "77.3 GB usable (80 GiB × 0.9)" in text
    assert "set fit: {enforce: false}" in text and "Traceback" not in text
    client = MlflowClient(mlflow_env)
    exp = client.get_experiment_by_name("it-wont-fit")
    [run] = client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'")
    assert run.data.tags["runner.status"] == "WONT_FIT" and run.data.tags["runner.reason"] == "wont_fit"
    assert run.info.status == "FAILED" and "weights 141.1" in run.data.tags["runner.detail"]
    assert run.data.params["fit.verdict"] == "WONT_FIT" and float(run.data.params["fit.weights_gb"]) > 141
    assert "engine.kv_capacity_tokens" not in run.data.params  # nothing was launched
    # again: the verdict stands, nothing new is recorded, and the status table says why
    assert session.run(str(sweep), out=io.StringIO()) == 1
    assert len(client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'")) == 1
    status = io.StringIO()
    session.status(str(sweep), out=status)
    assert "WONT_FIT" in status.getvalue()
