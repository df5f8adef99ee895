"""A TP=2 trial with the real vLLM engine on CPU hardware: a 2-CPU bundle and thread binding 0|1."""

import io

from mlflow.tracking import MlflowClient

from runner import session

SWEEP = """
name: it-tp2
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
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
    out = io.StringIO()
    assert session.run(write_sweep(SWEEP), out=out) == 0, out.getvalue()
    client = MlflowClient(mlflow_env)
    exp = client.get_experiment_by_name("it-tp2")
    [run] = client.search_runs([exp.experiment_id], "tags.`runner.role` = 'trial'")
    assert run.data.params["tp"] == "2" and run.data.params["gpus"] == "2"
    assert run.data.metrics["completed"] == 8 and run.data.metrics["mean_output_len"] == 16
