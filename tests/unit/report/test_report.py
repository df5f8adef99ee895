"""Every report table from constructed rows with hand-computed values; a plot render; main() on SQLite MLflow."""

import csv

import pytest

from runner.report import tables
from runner.report import write as report
from runner.report.rows import build_rows, parse_param
from runner.report.tables import (
    context_table,
    cost_table,
    ep_table,
    iso_table,
    shape_table,
    status_table,
    throughput_table,
)


def row(status="COMPLETED", total=None, out=None, **kw):
    """A report row as ``build_rows`` makes it; per-GPU metrics as the recorder logs them."""
    r = {"engine": "vllm", "model": "m", "hardware": "H100", "tp": 1, "pp": 1, "dp": 1, "ep": False,
         "input_len": 1000, "output_len": 1000, "concurrency": 64, "num_prompts": 128, "warmup": 2,
         "ignore_eos": True, "seed": 0, "temperature": 0.0, "engine_args.max_num_seqs": 512,
         "price_per_gpu_hour": 2.0, "status": status, "reason": "", "client_bound": False}
    r.update(kw)
    r.setdefault("gpus", r["tp"] * r["pp"] * r["dp"])
    if total is not None:
        r["total_token_throughput"] = total
        r.setdefault("tput_per_gpu", total / r["gpus"])
    if out is not None:
        r["output_throughput"] = out
        r.setdefault("output_tput_per_gpu", out / r["gpus"])
    return r


def col(t, name):
    return [r[t.head.index(name)] for r in t.rows]


def test_parse_param():
    assert [parse_param(v) for v in ("True", "False", "None", "8", "2.5", "fp8", "[1, 2]")] == \
        [True, False, None, 8, 2.5, "fp8", "[1, 2]"]


# --- 1 and 2: throughput and cost -------------------------------------------------------------------
TPUT = [
    row(total=8000, out=4000, tp=8),                    # H100: 1,000 tok/s/GPU
    row(total=9000, out=4500, tp=4, dp=2),              # H100: best total, 1,125 tok/s/GPU
    row(total=1500, out=600, tp=1),                     # H100: best per GPU (cheapest), 1,500 tok/s/GPU
    row("INVALID", total=99999, out=99999, tp=2),       # never a result
    row("FAILED", tp=2, dp=4, reason="engine_start_error.oom"),
    row(total=12000, out=6000, tp=8, hardware="H200", price_per_gpu_hour=None),  # no price (0 would be free)
]


def test_throughput_takes_best_completed_total_per_model_hardware():
    t = throughput_table(TPUT)
    assert col(t, "hardware") == ["H100", "H200"]
    assert col(t, "shape") == ["tp4/pp1/dp2", "tp8/pp1/dp1"]
    assert col(t, "GPUs") == [8, 8]
    assert col(t, "total tok/s (config)") == [9000, 12000]
    assert col(t, "out tok/s (config)") == [4500, 6000]
    assert col(t, "total tok/s/GPU") == [1125, 1500]
    assert col(t, "out tok/s/GPU") == [562.5, 750]
    assert col(t, "engine args") == ["-", "-"]          # max_num_seqs does not vary
    assert col(t, "client-bound") == ["no", "no"]


def test_cost_takes_cheapest_config_both_variants_and_dash_without_price():
    t = cost_table(TPUT)
    h100, h200 = t.rows
    assert h100[t.head.index("shape")] == "tp1/pp1/dp1"
    # $2/GPU-h × 1e6 / (3600 s × 1500 tok/s/GPU) and / (3600 × 600)
    assert h100[t.head.index("$/M total tokens")] == pytest.approx(2e6 / (3600 * 1500))   # 0.3704
    assert h100[t.head.index("$/M output tokens")] == pytest.approx(2e6 / (3600 * 600))   # 0.9259
    assert h200[t.head.index("$/GPU-h")] is None
    assert h200[t.head.index("$/M total tokens")] is None and h200[t.head.index("$/M output tokens")] is None
    text = t.render()
    assert "0.37" in text and "0.93" in text and "$/M output tokens" in text


# --- 3: EP on vs off ---------------------------------------------------------------------------------
def test_ep_delta_only_where_both_ran():
    rows = [row(total=1000, tp=4), row(total=1111, tp=4, ep=True),        # +11.1 %
            row(total=2000, tp=8), row(total=1972, tp=8, ep=True),        # -1.4 %
            row(total=500, tp=16, ep=True),                               # no EP-off twin
            row(total=900, tp=2), row(total=950, tp=2, ep=True, concurrency=128)]   # different load
    t = ep_table(rows)
    assert col(t, "shape") == ["tp4/pp1/dp1", "tp8/pp1/dp1"]
    assert col(t, "Δ total tok/s") == [pytest.approx(11.1), pytest.approx(-1.4)]
    assert "+11.1%" in t.render() and "-1.4%" in t.render()


# --- 4: context length -------------------------------------------------------------------------------
def test_context_drop_from_shortest_pair():
    rows = [row(total=1000, input_len=1000, output_len=1000),
            row(total=613, input_len=8000, output_len=8000, num_prompts=16),   # drop 38.7 %
            row(total=800, input_len=1000, output_len=8000),                   # drop 20 %
            row(total=700, input_len=8000, output_len=8000, concurrency=128)]  # alone at c=128
    t = context_table(rows)
    assert col(t, "from in/out") == ["1000/1000", "1000/1000"]
    assert col(t, "to in/out") == ["1000/8000", "8000/8000"]
    assert col(t, "drop") == [pytest.approx(20.0), pytest.approx(38.7)]
    assert "38.7%" in t.render()


# --- 5: shapes and scaling efficiency ------------------------------------------------------------
def test_shapes_scaling_efficiency_against_smallest_gpu_shape():
    rows = [row(total=7760, dp=8), row(total=1000), row(total=2000, tp=8),
            row(total=1800, tp=2, pp=1, dp=1, hardware="H200")]   # alone on H200: no comparison
    t = shape_table(rows)
    assert col(t, "shape") == ["tp1/pp1/dp1", "tp1/pp1/dp8", "tp8/pp1/dp1"]
    assert col(t, "total tok/s/GPU") == [1000, 970, 250]
    assert col(t, "scaling eff") == [pytest.approx(100), pytest.approx(97), pytest.approx(25)]


# --- 6: status ------------------------------------------------------------------------------------
def test_status_counts_reasons_and_verdicts():
    rows = [row(total=1, concurrency=1), row(total=1, concurrency=2, client_bound=True),
            row("FAILED", concurrency=4, reason="request_timeout"),
            row("FAILED", concurrency=8, reason="request_timeout"),
            row("INVALID", concurrency=16, reason="invalid_result"), row("PENDING", concurrency=32),
            row("UNSCHEDULABLE", tp=16, reason="unschedulable"),
            row("KILLED", tp=2, reason="driver_killed"), row("PENDING", tp=2, concurrency=1),
            row(total=1, tp=4)]
    t = status_table(rows)
    by_shape = {r[t.head.index("shape")]: dict(zip(t.head, r)) for r in t.rows}
    a = by_shape["tp1/pp1/dp1"]
    assert (a["trials"], a["completed"], a["failed"], a["invalid"], a["pending"], a["client-bound"]) == \
        (6, 2, 2, 1, 1, 1)
    assert a["verdict"] == "partial" and a["reasons"] == "invalid_result×1; request_timeout×2"
    assert by_shape["tp16/pp1/dp1"]["verdict"] == "blocked"
    assert by_shape["tp16/pp1/dp1"]["reasons"] == "unschedulable×1"
    assert by_shape["tp2/pp1/dp1"]["killed"] == 1 and by_shape["tp2/pp1/dp1"]["verdict"] == "pending"
    assert by_shape["tp4/pp1/dp1"]["verdict"] == "completed"


# --- iso-interactivity ---------------------------------------------------------------------------
def test_iso_table_renders_unreachable_and_ratio():
    rows = [row(total=1, hardware="GB200", interactivity=10, tput_per_gpu=1000),
            row(total=1, hardware="GB200", interactivity=20, tput_per_gpu=600, concurrency=32),
            row(total=1, hardware="GB300", interactivity=10, tput_per_gpu=2500),
            row(total=1, hardware="GB300", interactivity=30, tput_per_gpu=1500, concurrency=32)]
    t = iso_table(rows, levels=[20, 25], space="interactivity")
    assert t.head == ["model", "in/out", "tok/s/user", "GB200", "GB300", "ratio GB300/GB200"]
    assert t.rows[0][3:] == [pytest.approx(600), pytest.approx(2000), pytest.approx(2000 / 600)]
    assert t.rows[1][3:] == ["unreachable", pytest.approx(1750), None]
    text = t.render()
    assert "unreachable" in text and "3.33×" in text and "1,750" in text and "linear in tok/s/user" in text
    # the default space, named in the title: GB300 at 25 is linear in TPOT between 100 and 33.3 ms
    d = iso_table(rows, levels=[25])
    assert d.rows[0][4] == pytest.approx(2500 - 1000 * (40 - 100) / (1000 / 30 - 100))
    assert "linear in TPOT" in d.render()


def test_tables_of_an_empty_sweep_say_no_data():
    ts = tables.tables([row("PENDING")])
    assert all(not t.rows for t in ts if t.name != "status")
    assert "(no data yet)" in ts[0].render()


# --- plots ----------------------------------------------------------------------------------------------
def test_plots_render_pngs(tmp_path):
    pytest.importorskip("matplotlib")
    from runner.report import plots

    rows = []
    for hw, scale in (("H100", 1.0), ("H200", 1.6)):
        for c, x, y in ((1, 50, 100), (8, 40, 400), (32, 25, 900), (64, 12, 850)):   # c=64 is dominated
            rows.append(row(total=y * 8 * scale, out=y * 4 * scale, tp=8, hardware=hw, concurrency=c,
                            interactivity=x, tput_per_gpu=y * scale, median_ttft_ms=10 * c, p99_ttft_ms=20 * c,
                            median_tpot_ms=1000 / x, p99_tpot_ms=1500 / x))
    rows.append(row("FAILED", tp=4, reason="engine_died"))
    files = plots.write_all(rows, throughput_table(rows), tmp_path)
    assert {f.name for f in files} == {"pareto_m_1000x1000.png", "latency.png", "throughput.png"}
    for f in files:
        assert f.exists() and f.stat().st_size > 1000 and f.read_bytes()[:4] == b"\x89PNG"
    assert plots.slug("org/Model 7B", "8192x1024") == "org_Model_7B_8192x1024"
    assert plots.point_label(rows[0]) == "TP8 DP1 c1"


# --- main() on a real (SQLite) MLflow ----------------------------------------------------------------
def test_main_reports_partial_sweep_and_uploads(tmp_path, monkeypatch, sweep_file):
    from runner.plan import grid
    from runner.results.store import Store
    from runner.sweep import spec

    path = sweep_file()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'm.db'}")
    s = spec.load(path)
    trials = grid.expand(s)                   # max_num_seqs 8/32 × concurrency 1/8 = 4 trials
    store = Store(s.experiment_name, s.name)
    for t, status, tput in ((trials[0], "COMPLETED", 100.0), (trials[1], "COMPLETED", 400.0),
                            (trials[2], "FAILED", None)):
        p = {**t.params(), "gpus": 1, "price_per_gpu_hour": None}
        run_id = store.start_trial(t.trial_id, "x", {}, p)
        m = {"total_token_throughput": tput, "output_throughput": tput / 3, "tput_per_gpu": tput,
             "output_tput_per_gpu": tput / 3, "interactivity": 100 / t.load.concurrency,
             "median_tpot_ms": 10.0 * t.load.concurrency, "median_ttft_ms": 5.0} if tput else {}
        store.end_trial(run_id, status, metrics=m,
                        tags={"runner.reason": "engine_died"} if status == "FAILED" else None)
    out = tmp_path / "out.txt"
    with out.open("w") as f:
        rc = report.main(path, out=f, levels=[10, 50, 200])
    text = out.read_text()
    assert rc == 0, text
    assert "report of sweep t: 4 trials; COMPLETED: 2, FAILED: 1, PENDING: 1" in text
    assert "engine_died×1" in text and "unreachable" in text
    local = tmp_path / "reports" / "t"
    names = {p.name for p in local.iterdir()}
    assert {"throughput.csv", "cost.csv", "ep.csv", "context.csv", "shapes.csv", "status.csv",
            "iso_interactivity.csv", "frontier.csv", "report.txt", "latency.png", "throughput.png",
            "pareto_tiny_128x64.png"} <= names
    with (local / "status.csv").open() as f:
        st = list(csv.DictReader(f))
    assert st[0]["completed"] == "2" and st[0]["pending"] == "1" and st[0]["verdict"] == "partial"
    arts = {a.path for a in store.client.list_artifacts(store.parent(), "report")}
    assert "report/throughput.csv" in arts and "report/latency.png" in arts


def test_build_rows_marks_missing_trials_pending(sweep_file):
    from runner.plan import grid
    from runner.sweep import spec

    trials = grid.expand(spec.load(sweep_file()))
    rows = build_rows(trials, {}, {"cpu": 0.0})
    assert [r["status"] for r in rows] == ["PENDING"] * 4
    assert rows[0]["gpus"] == 1 and rows[0]["tp"] == 1 and "model_path" not in rows[0]


def test_engines_are_compared_not_merged_in_throughput_and_cost():
    rows = [row(total=100.0, out=50.0, engine="vllm"),
            row(total=80.0, out=40.0, engine="sglang", lane="sglang-cpu")]
    for table in (throughput_table(rows), cost_table(rows)):
        assert [r[3] for r in table.rows] == ["sglang [sglang-cpu]", "vllm"]
