"""A TP=2 trial with the real vLLM engine on CPU hardware: a 2-CPU bundle and thread binding 0|1.

The model is the tiny one with a single KV head (MQA), so TP 2 exceeds its KV heads: each rank holds
a replica of that head, which the fit planner's KV capacity must predict (within 5 % of vLLM's own).
"""

import io
from pathlib import Path

from mlflow.tracking import MlflowClient

from runner import session

ROOT = Path(__file__).resolve().parents[2]
SWEEP = """
name: it-tp2
engine: vllm
models:
  - id: tiny-mqa
    path: $MQA
    engine_args: {max_model_len: 256}
hardware: cpu
shape: {tp: 2}
engine_args: {enforce_eager: true, max_num_seqs: 8}
workload:
  input_len: 16
  output_len: 16
  concurrency: 4
  num_prompts: 8
  warmup: 1
"""


def test_tp2_trial_completes_with_the_real_engine(ray_local, mlflow_env, write_sweep):
    from runner.tinymodel import build

    mqa = build(ROOT / "models" / "tiny-mqa", geometry={"num_key_value_heads": 1})
    out = io.StringIO()
    assert session.run(write_sweep(SWEEP.replace("$MQA", str(mqa))), out=out) == 0, out.getvalue()
    client = MlflowClient(mlflow_env)
    exp = client.get_experiment_by_name("it-tp2")
    [run] = client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'")
    assert run.data.params["tp"] == "2" and run.data.params["gpus"] == "2"
    assert run.data.metrics["completed"] == 8 and run.data.metrics["mean_output_len"] == 16
    # 1 GiB of KV space per rank / (2 layers × 1 replicated KV head × 64 × 2 bytes × 2 for K and V)
    params = run.data.params
    predicted, engine = int(params["fit.kv_capacity_tokens"]), int(params["engine.kv_capacity_tokens"])
    assert predicted == 2**30 // (2 * 2 * 1 * 64 * 2) and abs(engine / predicted - 1) < 0.05, (predicted, engine)
