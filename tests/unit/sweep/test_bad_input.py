"""Every class of bad input ends in exit 2 and one message naming the key, never a traceback.

Each file goes through the real CLI (``runner.cli.main``, as ``python -m runner validate``); an
exception escaping ``main`` fails the test as it would have shown a traceback to the user.
"""

import subprocess
import sys
from pathlib import Path

import pytest

from runner import cli
from tests.unit.conftest import BASE

ROOT = Path(__file__).resolve().parents[3]
ARGS = BASE.replace("  max_num_seqs: [8, 32]", "  max_num_seqs: [8, 32]\n  max_model_len: 1024")

# (class, sweep file text, key path named in the message, fragment of what is allowed)
BAD = [
    # numbers that are not finite, or beyond any real cluster
    ("nan", BASE + "  temperature: .nan\n", "workload.temperature", "finite number"),
    ("inf", BASE + "  burstiness: .inf\n", "workload.burstiness", "finite number"),
    ("nan-rate", BASE + "  request_rate: [1, .nan]\n", "workload.request_rate[1]", "not nan"),
    ("inf-arg", ARGS.replace("max_model_len: 1024", "max_model_len: .inf"), "engine_args.max_model_len",
     "finite numbers"),
    ("inf-slo", BASE + "  slo: {ttft_ms: .inf}\n", "workload.slo.ttft_ms", "finite number"),
    ("huge-tp", BASE + "shape: {tp: 100000}\n", "shape.tp[0]", "less than or equal to 1024"),
    ("huge-dp", BASE + "shape: {dp: [1, 1000000]}\n", "shape.dp[1]", "less than or equal to 4096"),
    ("huge-conc", BASE.replace("concurrency: [1, 8]", "concurrency: [1, 1000000000]"), "workload.concurrency[1]",
     "less than or equal to 1000000"),
    ("huge-prompts", BASE + "  num_prompts: 1000000000\n", "workload.num_prompts", "less than or equal to"),
    ("huge-warmup", BASE + "  warmup: 100000000\n", "workload.warmup", "less than or equal to"),
    ("huge-len", BASE.replace("input_len: 128", "input_len: 1000000000"), "workload.input_len[0]",
     "less than or equal to"),
    # num_prompts expressions that fail when evaluated
    ("arity", BASE + "  num_prompts: \"min(concurrency)\"\n", "workload.num_prompts", "min() with 2 to 8"),
    ("arity2", BASE + "  num_prompts: \"ceil(concurrency, 2)\"\n", "workload.num_prompts", "ceil() with 1"),
    ("div0", BASE + "  num_prompts: \"8 / (concurrency - 1)\"\n", "workload.num_prompts",
     "non-zero divisor (it is 0 at concurrency=1)"),
    ("overflow", BASE + "  num_prompts: \"1e308 * 10 * concurrency\"\n", "workload.num_prompts", "finite result"),
    ("big-int", BASE + "  num_prompts: \"99999999999 * 99999999999 * concurrency\"\n", "workload.num_prompts",
     "a result below"),
    ("not-whole", BASE + "  num_prompts: \"concurrency * 1.5\"\n", "workload.num_prompts", "a whole count"),
    ("too-many", BASE + "  num_prompts: \"concurrency * 100000000\"\n", "workload.num_prompts", "<= 10,000,000"),
    # keys that are not identifiers, at any depth: the key itself is named
    ("hyphen", BASE.replace("max_num_seqs: [8, 32]", "max-num-seqs: [8, 32]"), "engine_args.max-num-seqs",
     "letters, digits and underscores"),
    ("space", BASE.replace("  input_len: 128", "  input len: 128"), "workload.input len",
     "letters, digits and underscores"),
    ("deep", BASE.replace("    path: models/tiny-llama",
                          "    path: models/tiny-llama\n    engine_args: {hf_overrides: {rope-theta: 1}}"),
     "models[0].engine_args.hf_overrides.rope-theta", "letters, digits and underscores"),
    ("int-key", BASE + "  7: 2\n", "workload.7", "letters, digits and underscores"),
    # a key twice in one mapping
    ("duplicate", BASE.replace("hardware: cpu", "hardware: cpu\nhardware: H100"), "hardware",
     "line 7 and line 8 both set it"),
    ("duplicate-deep", BASE + "  output_len: 32\n", "workload.output_len", "both set it"),
    # YAML that blows up, or types a value as something else
    ("alias-bomb", BASE + "description: x\nx0: &a [1, 2, 3, 4, 5, 6, 7, 8, 9, 10]\n"
     + "".join(f"x{i}: &{c} [{', '.join(['*' + p] * 10)}]\n"
               for i, (p, c) in enumerate(zip("abcd", "bcde"), start=1)), "x4",
     "aliases that multiply are refused"),
    ("date", BASE + "  seed: 2024-01-01\n", "workload.seed", "valid integer"),
    ("tagged-date", BASE + "description: !!timestamp 2024-01-01\n", "description", "date/time"),
    ("set", BASE + "prices: !!set {H100}\n", "prices", "a set"),
    ("bool-as-int", BASE + "shape: {tp: on}\n", "shape.tp[0]", "not the boolean true"),
    ("bool-as-count", BASE.replace("concurrency: [1, 8]", "concurrency: [1, yes]"), "workload.concurrency[1]",
     "not the boolean true"),
    ("bool-as-float", BASE + "  temperature: no\n", "workload.temperature", "not the boolean false"),
    ("sexagesimal", BASE + "  slo: {ttft_ms: 1:30}\n", "workload.slo.ttft_ms", "valid number"),
    # exclude rules that can never match
    ("exclude-typo", BASE + "exclude:\n  - {engine_args.max_num_seq: 8}\n", "exclude[0].engine_args.max_num_seq",
     "did you mean 'engine_args.max_num_seqs'"),
    ("exclude-value", BASE + "exclude:\n  - {engine_args.max_num_seqs: 16}\n",
     "exclude[0].engine_args.max_num_seqs", "8, 32 (this rule would never match)"),
    ("exclude-axis", BASE + "exclude:\n  - {concurrency: [8, 64]}\n", "exclude[0].concurrency", "1, 8"),
    ("exclude-bool", BASE + "shape: {ep: [false, true]}\nexclude:\n  - {tp: true}\n", "exclude[0].tp",
     "on the tp axis: 1"),
    ("exclude-model", BASE + "exclude:\n  - {model: tiny-llama}\n", "exclude[0].model", "'tiny'"),
    # engine-argument values outside the engine's own choices (configs/engines.yaml `choices`)
    ("choice", BASE.replace("  max_num_seqs: [8, 32]", "  max_num_seqs: [8, 32]\n  kv_cache_dtype: fp9"),
     "engine_args.kv_cache_dtype", "one of auto, bfloat16"),
    ("choice-axis", BASE.replace("  max_num_seqs: [8, 32]", "  max_num_seqs: [8, 32]\n  dtype: [auto, float99]"),
     "engine_args.dtype: got 'float99'", "half"),
    # configurations that can never succeed, known before launch
    ("context", ARGS.replace("input_len: 128", "input_len: 1000"), "workload.input_len",
     "at most 1024 tokens per request for vllm: max_model_len 1024"),
    ("context-ratio", ARGS.replace("input_len: 128", "input_len: 700") + "  dataset: {range_ratio: 0.5}\n",
     "workload.input_len", "input 1050 + output 96 = 1146"),
    ("model-context", BASE.replace("input_len: 128", "input_len: 4000").replace("output_len: 64", "output_len: 200"),
     "workload.input_len", "config.json max_position_embeddings"),
    ("profile-context", BASE + "  profiles: [longctx-8192x256-c4]\n", "workload.profiles", "max_position_embeddings"),
    ("beyond-model", ARGS.replace("max_model_len: 1024", "max_model_len: 8192"), "engine_args.max_model_len",
     "VLLM_ALLOW_LONG_MAX_MODEL_LEN=1"),
]


def _validate(path: str, capsys) -> tuple[int, str]:
    rc = cli.main(["validate", path])
    out = capsys.readouterr()
    return rc, out.out + out.err


@pytest.mark.parametrize(("kind", "text", "key", "allowed"), BAD, ids=[b[0] for b in BAD])
def test_each_bad_input_exits_2_naming_the_key(sweep_file, capsys, kind, text, key, allowed):
    path = sweep_file(text)
    rc, msg = _validate(path, capsys)
    assert rc == 2, (kind, msg)
    assert "Traceback" not in msg
    assert msg.startswith(f"error: {path}: "), msg
    assert f": {key}" in msg.split("\n")[0], msg
    assert allowed in msg, msg


@pytest.mark.parametrize("text", [
    BASE + "  request_rate: [1, .inf]\n",                       # YAML's .inf is the closed loop, as `inf`
    BASE + "  num_prompts: \"300 * 0.1 * concurrency\"\n",     # 30.000000000000004 is the whole count 30
    BASE + "exclude:\n  - {engine_args.max_num_seqs: 32, concurrency: 8}\n",
    BASE + "prices: {RTX-PRO-6000: 0}\n",                       # hardware names keep their hyphens
    BASE.replace("  max_num_seqs: [8, 32]", "  max_num_seqs: [8, 32]\n  kv_cache_dtype: [null, fp8]"),  # null: default
    # the combination that would not fit is excluded
    ARGS.replace("max_model_len: 1024", "max_model_len: [256, 1024]")
    + "exclude:\n  - {engine_args.max_model_len: 256, input_len: 128}\n",
    ARGS.replace("max_model_len: 1024", "max_model_len: 8192") + "env: {VLLM_ALLOW_LONG_MAX_MODEL_LEN: '1'}\n",
])
def test_good_inputs_near_the_edges_stay_valid(sweep_file, capsys, text):
    rc, msg = _validate(sweep_file(text), capsys)
    assert rc == 0, msg


# (arguments after the command, fragment of the message)
BAD_ARGS = [
    (["run", "{sweep}", "--max-parallel", "0"], "allowed: a whole number >= 1"),
    (["run", "{sweep}", "--max-parallel", "two"], "allowed: a whole number >= 1"),
    (["run", "{sweep}", "--rerun", "0123456789abcdef"], "no trial of"),
    (["run", "{sweep}", "--rerun-status", "faild"], "choose from 'running', 'completed', 'failed'"),
    (["report", "{sweep}", "--levels", "0"], "a positive finite number"),
    (["report", "{sweep}", "--levels", "10", "inf"], "a positive finite number"),
    (["report", "{sweep}", "--levels", "nan"], "a positive finite number"),
    (["engine-args", "vlm"], "allowed: sglang, simulated, vllm"),
]


@pytest.mark.parametrize(("argv", "allowed"), BAD_ARGS, ids=[" ".join(a[0][::2]) + a[0][-1] for a in BAD_ARGS])
def test_bad_arguments_exit_2_before_anything_starts(sweep_file, capsys, argv, allowed):
    path = sweep_file()
    try:
        rc = cli.main([a.format(sweep=path) for a in argv])
    except SystemExit as e:  # argparse's own refusal: usage + message on stderr, exit 2
        rc = e.code
    out = capsys.readouterr()
    assert rc == 2, out
    assert allowed in out.out + out.err
    assert "Traceback" not in out.out + out.err


def test_an_unforeseen_error_reading_input_is_one_line_and_exit_2(sweep_file, capsys, monkeypatch):
    from runner.plan import grid

    def broken(spec):
        raise KeyError("boom")
    monkeypatch.setattr(grid, "expand", broken)
    path = sweep_file()
    rc = cli.main(["validate", path])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 2 and "KeyError" in err and f"runner validate {path}" in err, err


def test_piping_into_head_ends_quietly():
    p = subprocess.run(f"{sys.executable} -m runner plan --json sweeps/disagg-prefill-decode.yaml | head -c 10",
                       shell=True, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and len(p.stdout) == 10, p.stdout
    assert "Error" not in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_an_internal_error_later_is_one_line_naming_a_log_with_the_traceback(sweep_file, capsys, monkeypatch,
                                                                               tmp_path):
    from runner import session

    def broken(*a, **k):
        raise ZeroDivisionError("deep inside")
    monkeypatch.setattr(session, "status", broken)
    monkeypatch.setenv("RUNNER_LOG_DIR", str(tmp_path / "logs"))
    rc = cli.main(["status", sweep_file()])
    err = capsys.readouterr().err
    assert rc == 1 and err.count("\n") == 1 and "internal error (ZeroDivisionError: deep inside)" in err, err
    (log,) = (tmp_path / "logs").glob("runner-*.log")
    assert str(log) in err and "Traceback" in log.read_text() and "deep inside" in log.read_text()
    assert "Traceback" not in err
