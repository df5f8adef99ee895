"""``api: openai`` on the real engine: the engine actor serves vLLM's own OpenAI API in-process,
a client actor in its own CPU bundle streams SSE from it; in one sweep beside ``api: engine``."""

import io
import json
from pathlib import Path

from mlflow.tracking import MlflowClient

from runner import session

SWEEP = """
name: it-api
engine: vllm
api: [engine, openai]
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 512}
hardware: cpu
engine_args: {enforce_eager: true}
workload:
  input_len: 64
  output_len: 32
  concurrency: [4]
  num_prompts: "4 * concurrency"
  warmup: 1
"""


def test_openai_mode_beside_engine_mode(ray_local, mlflow_env, write_sweep, tmp_path):
    out = io.StringIO()
    assert session.run(write_sweep(SWEEP), out=out) == 0, out.getvalue()
    assert "vllm via openai" in out.getvalue()
    client = MlflowClient(mlflow_env)
    exp = client.get_experiment_by_name("it-api")
    runs = {r.data.params["api"]: r for r in client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'")}
    assert set(runs) == {"engine", "openai"}
    for api, run in runs.items():
        m = run.data.metrics
        assert run.data.tags["runner.status"] == "COMPLETED", (api, run.data.tags)
        assert m["completed"] == 16 and m["mean_output_len"] == 32 and m["mean_input_len"] == 64, (api, m)
        assert m["output_throughput"] > 0 and m["median_tpot_ms"] > 0
        assert run.data.params["version.engine"] == "vllm" and run.data.params["version.engine_version"]
    # the same measurement, one through the HTTP stack: distinct trials and engine launches
    assert runs["engine"].data.tags["runner.serving_config_id"] != runs["openai"].data.tags["runner.serving_config_id"]
    local = client.download_artifacts(runs["openai"].info.run_id, "system.json", str(tmp_path))
    engine = json.loads(Path(local).read_text())["engine"]
    assert engine["api"] == "openai" and engine["server_urls"][0].startswith("http://127.0.0.1:")
    (c,) = engine["clients"]
    assert c["pid"] != engine["pid"]  # the client is its own actor, not the engine's process
    assert c["versions"]["engine"] == "openai-endpoint" and c["versions"]["engine_version"] == \
        runs["openai"].data.params["version.engine_version"]  # the server's /version: the same vLLM
    # engine telemetry reached the client through the server's own /metrics
    for key in ("num_running_reqs", "kv_cache_usage", "preemptions", "prefix_cache_queries"):
        assert client.get_metric_history(runs["openai"].info.run_id, f"engine.{key}"), f"no engine.{key} samples"
