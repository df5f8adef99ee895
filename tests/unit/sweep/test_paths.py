"""Model and dataset paths in sweep files are resolved and checked when the file loads."""

import pytest

from runner.core.errors import SweepSpecError
from runner.plan import grid
from runner.sweep import paths, spec

SWEEP = """
name: paths
engine: vllm
models: [{{id: m, path: "{model}"}}]
hardware: cpu
workload:
  input_len: 16
  output_len: 8
  concurrency: 1
  num_prompts: 2
  dataset: {dataset}
"""


def _load(tmp_path, model="org/model", dataset="{kind: random}"):
    p = tmp_path / "s.yaml"
    p.write_text(SWEEP.format(model=model, dataset=dataset))
    return spec.load(p)


def _model_dir(tmp_path):
    d = tmp_path / "tiny"
    d.mkdir()
    (d / "config.json").write_text("{}")
    return d


@pytest.mark.parametrize("hub_id", ["org/model", "Qwen/Qwen3-0.6B", "gpt2", "deepseek-ai/DeepSeek-V3.1"])
def test_hub_ids_pass(tmp_path, hub_id):
    assert grid.expand(_load(tmp_path, hub_id))[0].serving.model_path == hub_id


@pytest.mark.parametrize("bad, allowed", [
    ("/no/such/model", "an existing model directory"),
    ("./missing", "an existing model directory"),
    ("~/surely-not-here-1234", "an existing model directory"),
    ("org/../../etc", "a hub id"),
    ("a/b/c", "a hub id"),
    ("org/m\\u0000x", "without control characters"),
])
def test_bad_model_paths_name_key_and_value(tmp_path, bad, allowed):
    with pytest.raises(SweepSpecError) as e:
        _load(tmp_path, bad)
    assert e.value.key == "models[0].path" and allowed in e.value.allowed


def test_a_local_model_needs_config_json_and_is_given_to_engines_absolute(tmp_path, monkeypatch):
    d = _model_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert grid.expand(_load(tmp_path, "tiny"))[0].serving.model_path == str(d)      # exists → local
    assert grid.expand(_load(tmp_path, "./tiny"))[0].serving.model_path == str(d)
    (d / "config.json").unlink()
    with pytest.raises(SweepSpecError, match=r"config\.json"):
        _load(tmp_path, str(d))


def test_model_path_does_not_change_trial_ids(tmp_path, monkeypatch):
    d = _model_dir(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert grid.expand(_load(tmp_path, "./tiny"))[0].trial_id == grid.expand(_load(tmp_path, str(d)))[0].trial_id


def test_dataset_file_must_exist_with_a_hint_when_it_sits_next_to_the_sweep(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.jsonl").write_text('{"prompt": "hi"}\n')
    monkeypatch.chdir(tmp_path)
    p = tmp_path / "sub" / "s.yaml"
    p.write_text(SWEEP.format(model="org/m", dataset="{kind: file, path: d.jsonl}"))
    with pytest.raises(SweepSpecError) as e:
        spec.load(p)
    assert e.value.key == "workload.dataset.path" and "next to the sweep file" in str(e.value)
    p.write_text(SWEEP.format(model="org/m", dataset="{kind: file, path: sub/d.jsonl}"))
    assert spec.load(p).workload.dataset.path == "sub/d.jsonl"


def test_resolve_model_leaves_hub_ids_alone():
    assert paths.resolve_model("org/model") == "org/model"


def test_a_missing_model_the_working_dirs_ignore_files_name_is_a_local_path_never_a_hub_id(tmp_path, monkeypatch):
    """As in a `ray job submit --working-dir .` job, whose upload left .gitignore'd models/ behind."""
    from runner.sweep.paths import upload_excluded

    (tmp_path / ".gitignore").write_text("models/\n")
    (tmp_path / ".rayignore").write_text("big/\n")
    monkeypatch.chdir(tmp_path)
    assert upload_excluded("models/tiny-llama") == ".gitignore" and upload_excluded("big/m") == ".rayignore"
    assert upload_excluded("meta-llama/Llama-3.1-8B") is None
    with pytest.raises(SweepSpecError) as e:
        paths.check_model("s.yaml", "models[0].path", "models/tiny-llama")
    msg = str(e.value)
    assert "models[0].path" in msg and "never a hub id" in msg and "RAY_RUNTIME_ENV_IGNORE_GITIGNORE=1" in msg
    paths.check_model("s.yaml", "models[0].path", "meta-llama/Llama-3.1-8B")  # a hub id stays one
