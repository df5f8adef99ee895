"""Grid expansion, exclusion, grouping, and content-hash ids pinned across key order and number style."""

import json

from runner import cli
from runner.plan.grid import expand, group
from runner.plan.ids import canonical_json, content_id
from runner.plan.trial import LoadPoint, ServingConfig, Trial
from runner.sweep.spec import load
from tests.unit.conftest import BASE


def test_cartesian_product_grouped_and_ascending(sweep_file):
    trials = expand(load(sweep_file()))
    assert len(trials) == 4
    groups = group(trials)
    assert len(groups) == 2                                   # max_num_seqs 8 and 32 → 2 launches
    for ts in groups.values():
        assert [t.load.concurrency for t in ts] == [1, 8]     # ascending load within a launch
    assert {t.serving.engine_args["max_num_seqs"] for t in trials} == {8, 32}
    assert trials[0].load.num_prompts == 4 and trials[1].load.num_prompts == 32  # "4 * concurrency"


def test_exclude_rules(sweep_file):
    text = BASE + "exclude:\n  - {engine_args.max_num_seqs: 8, concurrency: 8}\n"
    trials = expand(load(sweep_file(text)))
    assert len(trials) == 3
    assert not any(t.serving.engine_args["max_num_seqs"] == 8 and t.load.concurrency == 8 for t in trials)
    # a rule of serving keys only removes the whole launch
    text = BASE + "exclude:\n  - {engine_args.max_num_seqs: [8]}\n"
    assert len(group(expand(load(sweep_file(text, "b.yaml"))))) == 1


def test_expansion_is_deterministic_and_pure(sweep_file):
    spec = load(sweep_file())
    assert [t.trial_id for t in expand(spec)] == [t.trial_id for t in expand(spec)]


def test_literal_list_engine_arg_is_one_axis_value(sweep_file):
    text = BASE.replace("  max_num_seqs: [8, 32]", "  max_num_seqs: 8\n  compilation_config: [[1, 2]]")
    trials = expand(load(sweep_file(text)))
    assert len(trials) == 2 and trials[0].serving.engine_args["compilation_config"] == [1, 2]


def _trial(**load_kw):
    s = ServingConfig(engine="vllm", model="tiny", model_path="/a/b", hardware="cpu",
                      engine_args={"max_num_seqs": 8, "enforce_eager": True})
    lp = {"input_len": 128, "output_len": 64, "concurrency": 8, "num_prompts": 32, **load_kw}
    return Trial(serving=s, load=LoadPoint(**lp))


def test_trial_id_is_pinned():
    # Pinned on purpose: if this changes, every stored result stops counting as done.
    # Change it only together with runner.plan.ids.SCHEMA_VERSION.
    t = _trial()
    assert t.trial_id == PINNED_TRIAL_ID
    assert t.serving.serving_config_id == PINNED_SERVING_ID


def test_id_ignores_key_order_number_style_and_model_path():
    a = _trial()
    b = Trial(serving=ServingConfig(engine="vllm", model="tiny", model_path="/elsewhere", hardware="cpu",
                                    engine_args={"enforce_eager": True, "max_num_seqs": 8.0}),
              load=LoadPoint(concurrency=8, num_prompts=32, output_len=64, input_len=128, temperature=0))
    assert a.trial_id == b.trial_id
    assert _trial(temperature=0.5).trial_id != a.trial_id
    assert _trial(seed=1).trial_id != a.trial_id


def test_canonical_json_format():
    assert canonical_json({"b": 1.0, "a": [2.5, True, None]}) == '{"a":[2.5,true,null],"b":1}'
    assert content_id({"x": 1}) == content_id({"x": 1.0}) != content_id({"x": True})


def test_plan_json(sweep_file, capsys):
    assert cli.main(["plan", sweep_file(), "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert len(rows) == 4 and set(rows[0]) == {"trial_id", "serving_config_id", "params", "fit", "estimate"}
    assert rows[0]["fit"]["verdict"] == "FITS" and rows[0]["fit"]["kv_capacity_tokens"] == 2**30 // 1024
    assert rows[0]["estimate"] == {"seconds": None, "source": "unknown"}  # CPU: no bandwidth, nothing measured
    assert rows[0]["params"]["engine_args.max_num_seqs"] == 8 and rows[0]["params"]["concurrency"] == 1


def test_plan_text_counts_launches(sweep_file, capsys):
    assert cli.main(["plan", sweep_file()]) == 0
    assert "4 trials in 2 serving configurations (2 engine launches)" in capsys.readouterr().out


PINNED_TRIAL_ID = "900421b726da6c46"
PINNED_SERVING_ID = "73e7a063c78bc256"


def test_request_rate_axis_with_rate_expression_and_cap(sweep_file):
    text = BASE.replace("  concurrency: [1, 8]", "  concurrency: 64\n  request_rate: [1, 2, 4, 8, inf]\n"
                        "  num_prompts: \"300 * rate\"") .replace("max_num_seqs: [8, 32]", "max_num_seqs: 8")
    with __import__("pytest").raises(Exception, match="rate"):   # 'inf' makes 300 * rate meaningless
        expand(load(sweep_file(text)))
    text = text.replace("[1, 2, 4, 8, inf]", "[1, 2, 4, 8]")
    trials = expand(load(sweep_file(text, "b.yaml")))
    assert [t.load.request_rate for t in trials] == [1, 2, 4, 8]           # ascending load
    assert [t.load.num_prompts for t in trials] == [300, 600, 1200, 2400]  # study 5's "300 × rate"
    assert all(t.load.concurrency == 64 for t in trials)                   # a cap in rate mode
    assert trials[0].params()["request_rate"] == 1 and trials[0].params()["dataset"] == "random"


def test_profiles_mix_with_a_grid_and_are_fixed_contracts(sweep_file):
    text = BASE.replace("max_num_seqs: [8, 32]", "max_num_seqs: 8") + \
        "  profiles: [latency-1024x256-c1, serve-1024x256-c16, longctx-8192x256-c4]\n"
    trials = expand(load(sweep_file(text)))
    prof = {t.load.profile: t.load for t in trials if t.load.profile}
    assert len(trials) == 5 and set(prof) == {"latency-1024x256-c1", "serve-1024x256-c16", "longctx-8192x256-c4"}
    s = prof["serve-1024x256-c16"]
    assert (s.input_len, s.output_len, s.concurrency, s.num_prompts, s.request_rate, s.temperature) == \
        (1024, 256, 16, 200, None, 0.0)
    only = "\n".join(ln for ln in text.splitlines() if not ln.startswith(("  input_len", "  output_len",
                                                                          "  concurrency")))
    assert len(expand(load(sweep_file(only, "p.yaml")))) == 3              # profiles alone


def test_dataset_is_part_of_the_load_point_identity(sweep_file):
    a = expand(load(sweep_file()))
    b = expand(load(sweep_file(BASE + "  dataset: {range_ratio: 0.5, range_convention: sglang}\n", "d.yaml")))
    assert {t.trial_id for t in a}.isdisjoint({t.trial_id for t in b})
    assert b[0].load.dataset == {"range_ratio": 0.5, "range_convention": "sglang"}


def test_plan_text_shows_rate_and_profile_load_points(sweep_file, capsys):
    text = BASE.replace("  concurrency: [1, 8]", "  request_rate: [1, 2]\n  num_prompts: \"10 * rate\"\n"
                        "  profiles: [latency-1024x256-c1]")
    assert cli.main(["plan", sweep_file(text)]) == 0
    out = capsys.readouterr().out
    assert "1/s" in out and "2/s" in out and "latency-1024x256-c1 (c1)" in out
