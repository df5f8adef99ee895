"""Report semantics that must not silently mean something else: a price of 0 is free (cost 0),
a simulated trial is marked SIMULATION in every table, CSV and plot, and a sweep that never ran
writes nothing (no MLflow experiment, parent run or artifact, no report folder)."""

import csv

import pytest

from runner.report import write as report
from runner.report.rows import SIM_MARK, build_rows, cost, mark_simulation
from runner.report.tables import cost_table, frontier_table, tables
from tests.unit.conftest import BASE
from tests.unit.report.test_report import row

SIM = BASE.replace("engine: vllm", "engine: simulated\nallow_simulation: true").replace(
    "  enforce_eager: true\n  max_num_seqs: [8, 32]\n", "  sim_token_s: [0.001, 0.002]\n")


# -- price 0 -------------------------------------------------------------------------------------
def test_price_zero_costs_zero_and_no_price_costs_nothing():
    free, unknown = row(total=1000, out=500, price_per_gpu_hour=0.0), row(total=1000, out=500, price_per_gpu_hour=None)
    assert cost(free) == 0.0 and cost(free, "output_throughput") == 0.0
    assert cost(unknown) is None
    assert cost(row(total=0, out=0, price_per_gpu_hour=2.0)) is None       # no throughput: no cost
    t = cost_table([free, row(total=1000, out=500, hardware="H200", price_per_gpu_hour=None)])
    h100, h200 = (dict(zip(t.head, r)) for r in t.rows)
    assert (h100["$/GPU-h"], h100["$/M total tokens"], h100["$/M output tokens"]) == (0.0, 0.0, 0.0)
    assert (h200["$/GPU-h"], h200["$/M total tokens"]) == (None, None)
    h100_line, h200_line = t.render().splitlines()[-2:]
    assert h100_line.split()[-2:] == ["0", "0"] and h200_line.split()[-2:] == ["-", "-"]


def test_build_rows_keeps_a_zero_price(sweep_file):
    from runner.plan import grid
    from runner.sweep import spec

    rows = build_rows(grid.expand(spec.load(sweep_file())), {}, {"cpu": 0.0})
    assert all(r["price_per_gpu_hour"] == 0.0 for r in rows)


# -- simulation markers ---------------------------------------------------------------------------
def sim_rows():
    rows = []
    for eng in ("simulated", "vllm"):
        for c, x, y in ((1, 50, 100), (8, 40, 400)):
            rows.append(mark_simulation(row(total=y, out=y / 2, engine=eng, concurrency=c, interactivity=x,
                                            tput_per_gpu=y, median_ttft_ms=5.0, p99_ttft_ms=9.0,
                                            median_tpot_ms=1000 / x, p99_tpot_ms=1500 / x)))
    return rows


def test_every_table_row_of_a_simulated_trial_is_marked():
    rows = sim_rows()
    assert [r["model"] for r in rows] == ["m (SIMULATION)"] * 2 + ["m"] * 2
    for t in [*tables(rows, levels=[45]), frontier_table(rows)]:
        models = [str(r[t.head.index("model")]) for r in t.rows]
        if "engine" in t.head:            # each row says which engine: marked exactly when simulated
            engines = [r[t.head.index("engine")] for r in t.rows]
            assert [m.endswith(SIM_MARK) for m in models] == [e == "simulated" for e in engines], t.name
        if t.name in ("throughput", "cost", "status", "iso_interactivity", "frontier"):
            assert "m (SIMULATION)" in models and "m" in models, t.name
        if t.rows:
            assert ("m (SIMULATION)" in t.render()) == ("m (SIMULATION)" in models), t.name


def test_marker_is_derived_once_from_the_engine():
    r = mark_simulation(mark_simulation(row(engine="simulated")))
    assert r["model"] == "m (SIMULATION)" and r["simulation"] is True
    assert "simulation" not in mark_simulation(row(engine="vllm"))


def test_plots_of_simulated_trials_say_so(tmp_path):
    pytest.importorskip("matplotlib")
    from runner.report import plots
    from runner.report.tables import throughput_table

    rows = sim_rows()
    files = {f.name: plots.describe(f) for f in plots.write_all(rows, throughput_table(rows), tmp_path)}
    assert set(files) == {"pareto_m_SIMULATION_1000x1000.png", "pareto_m_1000x1000.png", "latency.png",
                          "throughput.png"}
    assert files["pareto_m_SIMULATION_1000x1000.png"]["axes"][0]["title"].startswith("SIMULATION")
    assert "SIMULATION" not in files["pareto_m_1000x1000.png"]["axes"][0]["title"]
    for name in ("latency.png", "throughput.png"):
        assert files[name]["title"].startswith("SIMULATION"), name
    assert any("m (SIMULATION)" in e for e in files["latency.png"]["legend"])
    real = [r for r in rows if r["engine"] == "vllm"]
    d = tmp_path / "real"
    d.mkdir()
    for f in plots.write_all(real, throughput_table(real), d):
        shown = plots.describe(f)
        assert "SIMULATION" not in shown["title"] + "".join(a["title"] for a in shown["axes"]), f.name


def test_report_main_marks_simulated_rows_in_text_and_csv(tmp_path, monkeypatch, sweep_file):
    from runner.plan import grid
    from runner.results import Store
    from runner.sweep import spec

    path = sweep_file(SIM)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    monkeypatch.setenv("RUNNER_SPOOL", str(tmp_path / "spool"))
    s = spec.load(path)
    store = Store(s.experiment_name, s.name)
    for t in grid.expand(s):
        run_id = store.start_trial(t.trial_id, "x", {}, {**t.params(), "gpus": 1, "price_per_gpu_hour": 0.0})
        store.end_trial(run_id, "COMPLETED", metrics={"total_token_throughput": 300.0, "output_throughput": 100.0,
                                                      "tput_per_gpu": 300.0, "output_tput_per_gpu": 100.0})
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        assert report.main(path, out=f, levels=[10]) == 0
    text = out.read_text()
    assert "\nSIMULATION: 4 trial(s) of the simulated engine" in text
    with (tmp_path / "reports" / "t" / "throughput.csv").open() as f:
        got = list(csv.DictReader(f))
    assert got and all(r["model"] == "tiny (SIMULATION)" for r in got)
    with (tmp_path / "reports" / "t" / "cost.csv").open() as f:
        assert {r["$/M total tokens"] for r in csv.DictReader(f)} == {"0.0"}      # free, not '-'


# -- a sweep that never ran --------------------------------------------------------------------------
def never_ran(tmp_path, monkeypatch, sweep_file):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("RUNNER_SPOOL", str(tmp_path / "spool"))
    path = sweep_file()
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        rc = report.main(path, out=f)
    return rc, out.read_text(), path


def test_never_ran_without_a_database_touches_nothing(tmp_path, monkeypatch, sweep_file):
    db = tmp_path / "m.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{db}")
    rc, text, path = never_ran(tmp_path, monkeypatch, sweep_file)
    assert rc == 1
    assert text == f"sweep t has not run yet: no trial of it in MLflow experiment 't'; run it with " \
                   f"`python -m runner run {path}`; no report written\n"
    assert not db.exists() and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("with_experiment", [False, True])
def test_never_ran_creates_no_experiment_parent_or_artifact(tmp_path, monkeypatch, sweep_file, with_experiment):
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{tmp_path / 'm.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    client = MlflowClient(uri)
    client.create_experiment("other")                    # the database exists, for another sweep
    if with_experiment:
        from runner.results import Store

        Store("t", "t")                                  # the experiment exists, but holds no trial run
    before = sorted(e.name for e in client.search_experiments())
    rc, text, _ = never_ran(tmp_path, monkeypatch, sweep_file)
    assert rc == 1 and "has not run yet" in text and len(text.splitlines()) == 1
    assert sorted(e.name for e in client.search_experiments()) == before
    exp = client.get_experiment_by_name("t")
    assert (exp is not None) == with_experiment
    if exp is not None:
        assert client.search_runs([exp.experiment_id]) == []               # no parent run, no artifacts
    assert not (tmp_path / "reports").exists()


def test_never_ran_points_at_spooled_results(tmp_path, monkeypatch, sweep_file):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    d = tmp_path / "spool" / "t" / "abc123" / "attempt-1"
    d.mkdir(parents=True)
    (d / "state.json").write_text('{"uploaded": false, "status": "COMPLETED"}')
    rc, text, path = never_ran(tmp_path, monkeypatch, sweep_file)
    assert rc == 1 and f"1 result(s) wait in the spool: `python -m runner sync {path}`" in text
