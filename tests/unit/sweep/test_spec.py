"""Spec validation, including a set of broken files: each names file, key, value and allowed values."""

import subprocess
import sys
from pathlib import Path

import pytest

from runner import cli
from runner.core.errors import SweepSpecError
from runner.sweep.spec import load
from tests.unit.conftest import BASE

ROOT = Path(__file__).resolve().parents[3]


def test_base_file_loads_and_normalises_axes(sweep_file):
    spec = load(sweep_file())
    assert spec.shape.tp == [1] and spec.workload.concurrency == [1, 8] and spec.hardware == ["cpu"]
    assert spec.experiment_name == "t"


@pytest.mark.parametrize("sweep", sorted(p.name for p in (ROOT / "sweeps").glob("*.yaml")))
def test_shipped_sweeps_validate(sweep):
    load(ROOT / "sweeps" / sweep)


# (mutation of BASE, key path expected in the message, fragment of the allowed values)
BROKEN = [
    (BASE.replace("name: t", "name: t\ncolour: red"), "colour", "keys name, experiment"),
    (BASE.replace("engine: vllm", "engine: vlm"), "engine[0]", "did you mean 'vllm'?"),
    (BASE.replace("hardware: cpu", "hardware: [cpu, H1OO]"), "hardware[1]", "one of B200"),
    (BASE.replace("  max_num_seqs: [8, 32]", "  max_num_seq: 8"), "engine_args.max_num_seq",
     "did you mean max_num_seqs"),
    (BASE.replace("  max_num_seqs: [8, 32]", "  tensor_parallel_size: 2"), "engine_args.tensor_parallel_size",
     "shape.tp"),
    (BASE.replace("  concurrency: [1, 8]", "  concurrency: [1, -8]"), "workload.concurrency[1]",
     "greater than or equal to 1"),
    (BASE.replace("  concurrency: [1, 8]", "  concurrency: []"), "workload.concurrency", "at least 1"),
    (BASE.replace("  output_len: 64\n", ""), "workload.output_len", "input_len and output_len together"),
    (BASE.replace("  concurrency: [1, 8]", "  request_rate: [1, inf]"), "workload.concurrency",
     "closed loop of request_rate 'inf'"),
    (BASE.replace("  concurrency: [1, 8]", "  request_rate: [-1]"), "workload.request_rate[0]", "greater than 0"),
    (BASE + "  profiles: [latency-1024x256-c2]\n", "workload.profiles[0]", "did you mean 'latency-1024x256-c1'"),
    (BASE + "  dataset: {kind: file}\n", "workload.dataset.path", "JSONL or ShareGPT"),
    (BASE + "  dataset: {kind: prefix, prefix_len: 500}\n", "workload.dataset.prefix_len", "fewer tokens"),
    (BASE + "  dataset: {range_convention: guidellm}\n", "workload.dataset.range_convention", "'vllm' or 'sglang'"),
    (BASE + "  dataset: {range_ratio: 1}\n", "workload.dataset.range_ratio",
     "range_convention: sglang, range_ratio: 1"),
    (BASE.replace("engine: vllm", "engine: simulated")
     .replace("engine_args:\n  enforce_eager: true\n  max_num_seqs: [8, 32]\n", ""),
     "engine[0]", "allow_simulation: true"),
    (BASE + "  num_prompts: \"300 * rate\"\n", "workload.num_prompts", "unknown name 'rate'"),
    (BASE + "  num_prompts: \"__import__('os')\"\n", "workload.num_prompts", "names ['concurrency']"),
    (BASE + "  num_prompts: \"concurrency - 10\"\n", "workload.num_prompts", ">= 1"),
    (BASE + "exclude:\n  - {colour: red}\n", "exclude[0].colour", "engine_args.<name>"),
    (BASE + "shape:\n  tp: two\n", "shape.tp[0]", "valid integer"),
    (BASE + "shape:\n  ep: maybe\n", "shape.ep[0]", "valid boolean"),
    (BASE.replace("name: t", "name: 'bad name!'"), "name", "pattern"),
    (BASE.replace("    path: models/tiny-llama\n", ""), "models[0].path", "required"),
    (BASE + "prices: {Z100: 1.0}\n", "prices.Z100", "one of"),
    ("name: [unclosed\n", "line 2, column 1", "valid YAML"),
    ("- just\n- a list\n", "<top level>", "a mapping"),
    # api modes
    (BASE + "api: endpoint\n", "endpoint", "an endpoint block"),
    (BASE + "endpoint: {base_url: 'http://h:1'}\n", "api", "holding endpoint"),
    (BASE + "api: grpc\n", "api[0]", "'engine', 'openai' or 'endpoint'"),
    (BASE + "api: endpoint\nendpoint: {base_url: 'ftp://h'}\n", "endpoint.base_url", "pattern"),
    (BASE + "api: endpoint\nendpoint: {base_url: 'http://h:1'}\n", "engine_args", "none with api: endpoint"),
    (BASE.replace("engine: vllm", "engine: sglang").replace("  max_num_seqs: [8, 32]\n", "")
     .replace("  enforce_eager: true\n", "  disable_cuda_graph: true\n") + "api: openai\n", "engine[0]",
     "use api: endpoint"),
]


@pytest.mark.parametrize(("text", "key", "allowed"), BROKEN)
def test_broken_files_name_file_key_value_and_allowed(sweep_file, text, key, allowed):
    path = sweep_file(text)
    with pytest.raises(SweepSpecError) as e:
        load(path)
    msg = str(e.value)
    assert msg.startswith(path + ": "), msg
    assert f": {key}: got " in msg, msg
    assert allowed in msg, msg
    assert "next: " in msg and ("python -m runner validate" in msg or "engine-args" in msg)


def test_missing_file(tmp_path):
    with pytest.raises(SweepSpecError, match="an existing sweep file"):
        load(tmp_path / "nope.yaml")


def test_cli_validate_exit_codes_and_no_traceback(sweep_file, capsys):
    assert cli.main(["validate", sweep_file()]) == 0
    bad = sweep_file(BASE.replace("engine: vllm", "engine: vlm"), "bad.yaml")
    assert cli.main(["validate", bad]) == 2
    err = capsys.readouterr().err
    assert "engine[0]" in err and "Traceback" not in err


def test_cli_validate_as_a_process_exits_2(sweep_file):
    bad = sweep_file(BASE.replace("  concurrency: [1, 8]", "  concurrency: zero"), "bad.yaml")
    p = subprocess.run([sys.executable, "-m", "runner", "validate", bad], capture_output=True, text=True, cwd=ROOT)
    assert p.returncode == 2, p.stderr
    assert "workload.concurrency[0]" in p.stderr and "Traceback" not in p.stderr
