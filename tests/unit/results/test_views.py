"""The saved comparison view's state is a pure function of the sweep's trials."""

from runner.plan import grid
from runner.results import views
from runner.sweep import spec


def test_state_filters_the_sweeps_trials_and_shows_what_varies(tmp_path):
    p = tmp_path / "s.yaml"
    p.write_text("""
name: view-test
engine: vllm
models: [{id: m, path: org/m}]
hardware: cpu
engine_args: {max_num_seqs: [4, 8]}
workload: {input_len: 32, output_len: 16, concurrency: [1, 2, 4], num_prompts: 10}
""")
    trials = grid.expand(spec.load(p))
    s = views.state("view-test", trials)
    assert s["searchFilter"] == "tags.`runner.sweep` = 'view-test' and tags.`runner.role` = 'trial'"
    assert s["orderByKey"] == "metrics.`output_throughput`" and s["orderByAsc"] is False
    params = [c for c in s["selectedColumns"] if c.startswith("params.")]
    assert params == ["params.`engine_args.max_num_seqs`", "params.`concurrency`"]   # num_prompts is fixed here
    assert s["selectedColumns"][0] == "attributes.`Run Name`"
    assert s["columnOrder"] == ["runDateAndNestInfo", *s["selectedColumns"]]
    assert set(s["columnWidths"]) == set(s["selectedColumns"])
    assert views.state("view-test", list(reversed(trials)))["selectedColumns"] == s["selectedColumns"]


def test_key_and_link():
    assert views.key("h200 three/profiles") == "runner-h200-three-profiles"
    assert views.link("http://h:5000", "7", "runner-x") == "http://h:5000/#/experiments/7/runs?viewStateShareKey=runner-x"
