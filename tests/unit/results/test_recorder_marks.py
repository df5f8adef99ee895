"""What the recorder puts on a real (SQLite) MLflow run: SIMULATION on every simulated trial
(derived from the engine, never a flag), a price of 0 as cost 0, and nothing for real engines."""

from pathlib import Path

from runner.cluster import Outcome
from runner.measure import RequestRecord
from runner.plan import Status
from runner.plan.grid import expand
from runner.results import Recorder, Store
from runner.results.recorder import price_for
from runner.sweep.spec import load
from tests.unit.conftest import BASE

SIM = BASE.replace("engine: vllm", "engine: simulated\nallow_simulation: true").replace(
    "  enforce_eager: true\n  max_num_seqs: [8, 32]\n", "  sim_token_s: 0.001\n")


def records(n: int, out_len: int) -> list[dict]:
    return [RequestRecord(index=i, prompt_tokens=128, intended=0.0, st=float(i),
                          chunk_times=[i + 0.01 * (k + 1) for k in range(out_len)], chunk_tokens=[1] * out_len,
                          ok=True, max_tokens=out_len).__dict__ for i in range(n)]


def run_one(tmp_path, path, out):
    spec = load(path)
    trial = expand(spec)[0]
    store = Store(spec.experiment_name, spec.name, f"sqlite:///{tmp_path / 'm.db'}")
    store.parent()
    rec = Recorder(spec, store, tmp_path / "spool", out=out)
    rec.on_start(trial, {})
    n = trial.load.num_prompts
    rec.on_end(Outcome(trial, Status.COMPLETED, result={"records": records(n, trial.load.output_len),
                                                        "duration_s": 2.0}))
    [run] = store.trial_runs()
    return store, run


def test_simulated_run_carries_simulation_tag_name_note_and_progress_lines(tmp_path, sweep_file):
    out = (tmp_path / "out.txt").open("w")
    store, run = run_one(tmp_path, sweep_file(SIM), out)
    out.close()
    tags = run.data.tags
    assert tags["runner.simulation"] == "true"
    assert run.info.run_name.startswith("SIMULATION simulated ")
    assert tags["mlflow.note.content"].startswith("**SIMULATION**") and "loads no model" in tags["mlflow.note.content"]
    parent = store.client.get_run(store.parent())
    assert parent.data.tags["runner.simulation"] == "true"
    start, end = (tmp_path / "out.txt").read_text().splitlines()[:2]
    assert start.startswith("▶ ") and " SIMULATION simulated tiny cpu " in start
    assert end.startswith("✔ ") and "| SIMULATION " in end
    art = Path(store.client.download_artifacts(run.info.run_id, "result.json", str(tmp_path)))
    assert '"simulation": true' in art.read_text()


def test_real_engine_run_is_not_marked(tmp_path, sweep_file):
    out = (tmp_path / "out.txt").open("w")
    store, run = run_one(tmp_path, sweep_file(), out)
    out.close()
    assert "runner.simulation" not in run.data.tags and "mlflow.note.content" not in run.data.tags
    assert "SIMULATION" not in run.info.run_name and "SIMULATION" not in (tmp_path / "out.txt").read_text()
    assert "runner.simulation" not in store.client.get_run(store.parent()).data.tags


def test_price_zero_is_free_not_unknown(tmp_path, sweep_file):
    assert price_for(load(sweep_file()), "cpu") is None   # cpu: no catalogue price
    free = sweep_file(BASE + "prices: {cpu: 0}\n", "free.yaml")
    assert price_for(load(free), "cpu") == 0.0
    assert price_for(load(sweep_file(BASE + "prices: {cpu: 1.5}\n", "p.yaml")), "cpu") == 1.5
    out = (tmp_path / "out.txt").open("w")
    _, run = run_one(tmp_path, free, out)
    out.close()
    assert run.data.params["price_per_gpu_hour"] == "0.0"
    assert run.data.metrics["cost_per_m_total_tokens_usd"] == 0.0
    assert run.data.metrics["cost_per_m_output_tokens_usd"] == 0.0
    assert run.data.metrics["tput_per_gpu"] > 0


def test_no_price_gives_no_cost():
    from runner.measure import aggregate

    m = aggregate([RequestRecord(**r) for r in records(4, 8)], 2.0, gpus=1, price_per_gpu_hour=None)
    assert not any(k.startswith("cost_per_m") for k in m)


def test_saved_view_shows_the_simulation_tag_only_for_simulated_sweeps(sweep_file):
    from runner.results import views

    sim = views.state("t", expand(load(sweep_file(SIM))))["selectedColumns"]
    real = views.state("t", expand(load(sweep_file(BASE, "r.yaml"))))["selectedColumns"]
    assert "tags.`runner.simulation`" in sim and "tags.`runner.simulation`" not in real


def test_result_json_carries_the_load_points_real_rate_burstiness_and_cap(tmp_path, sweep_file):
    """As ``vllm bench serve --save-result``: request_rate is the open loop's rate ("inf" only for the
    closed loop), with its burstiness and concurrency cap."""
    import json

    out = (tmp_path / "out.txt").open("w")
    opened = BASE.replace("  concurrency: [1, 8]", "  concurrency: 8\n  request_rate: 4\n  burstiness: 0.5")
    store, run = run_one(tmp_path, sweep_file(opened, "open.yaml"), out)
    result = json.loads(Path(store.client.download_artifacts(run.info.run_id, "result.json", str(tmp_path)))
                        .read_text())
    assert (result["request_rate"], result["burstiness"], result["max_concurrency"]) == (4.0, 0.5, 8)
    store, run = run_one(tmp_path / "closed", sweep_file(), out)
    out.close()
    result = json.loads(Path(store.client.download_artifacts(run.info.run_id, "result.json", str(tmp_path)))
                        .read_text())
    assert (result["request_rate"], result["burstiness"], result["max_concurrency"]) == ("inf", 1.0, 1)
