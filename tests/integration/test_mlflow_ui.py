"""A real sweep, then MLflow's own UI in headless Chromium: the runs page shows the sweep.

Needs Debian's `chromium` at /usr/bin/chromium (`apt-get install -y chromium`); without it the
test fails and says so. Nothing is installed from here. Everything is on loopback: the UI's
host name `ui.mlflow.test` is mapped to 127.0.0.1 inside Chromium (`--host-resolver-rules`),
because on a `localhost`/`127.0.0.1` page MLflow 3.17 auto-opens its Assistant panel over a
quarter of the table; the server is told to accept that host and origin.

What the runs page shows in MLflow 3.17 (`/#/experiments/<id>/runs`):
- by default, child runs are collapsed under the parent and no metric column is shown;
- sorting by a metric (`?orderByKey=metrics.%60output_throughput%60&orderByAsc=false`) lists
  the trials flat, best first, but still without metric columns;
- a *shared view* shows columns too: an experiment tag `mlflow.sharedViewState.<key>` holding
  the UI state as JSON (`selectedColumns`, `columnOrder`, `columnWidths`, `orderByKey`, ...),
  opened with `/#/experiments/<id>/runs?viewStateShareKey=<key>`. The runner writes one per
  sweep (runner/views.py) and links it from the parent run. The screenshot in
  docs/mlflow-ui.png is that view.
"""

from __future__ import annotations

import io
import json
import shutil
import struct
import subprocess
import urllib.parse
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from runner import session
from tests.integration.conftest import ROOT
from tests.integration.mlflow_server import MlflowServer, free_port

CHROMIUM = Path("/usr/bin/chromium")
HOST = "ui.mlflow.test"  # reserved TLD; resolved to 127.0.0.1 by Chromium itself
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         f"--host-resolver-rules=MAP {HOST} 127.0.0.1", "--window-size=1600,1000", "--virtual-time-budget=15000"]
METRICS = ["output_throughput", "total_token_throughput", "median_ttft_ms", "median_tpot_ms"]
PARAMS = ["engine_args.max_num_seqs", "concurrency"]

SWEEP = """
name: ui-demo
engine: vllm
models:
  - id: tiny-llama
    path: $MODEL
    engine_args: {max_model_len: 512}
hardware: cpu
engine_args:
  enforce_eager: true
  max_num_seqs: [4, 16]
workload:
  input_len: 32
  output_len: 16
  concurrency: [1, 4]
  num_prompts: "3 * concurrency"
  warmup: 1
"""


@pytest.fixture(scope="module")
def chromium() -> str:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (`apt-get install -y chromium`) "
                    "before running the UI test")
    return str(CHROMIUM)


@pytest.fixture(scope="module")
def ui(ray_local, tiny_model, tmp_path_factory):
    """Run the sweep into a fresh SQLite db, then serve that db with `mlflow server`."""
    tmp = tmp_path_factory.mktemp("ui")
    uri = f"sqlite:///{tmp / 'mlflow.db'}"
    sweep = tmp / "ui-demo.yaml"
    sweep.write_text(SWEEP.replace("$MODEL", tiny_model))
    out = io.StringIO()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.setenv("RUNNER_SPOOL", str(tmp / "spool"))
        assert session.run(str(sweep), out=out) == 0, out.getvalue()
    client = MlflowClient(uri)
    exp = client.get_experiment_by_name("ui-demo")
    runs = client.search_runs([exp.experiment_id], max_results=100)
    port = free_port()
    server = MlflowServer(tmp, port, "--allowed-hosts", f"{HOST}:{port},127.0.0.1:{port},localhost:{port}",
                          "--cors-allowed-origins", f"http://{HOST}:{port}", backend_uri=uri).start()
    try:
        yield {"client": client, "exp": exp.experiment_id, "runs": runs, "base": f"http://{HOST}:{port}",
               "tmp": tmp}
    finally:
        server.stop()


def _chromium(chromium: str, url: str, tmp: Path, name: str, *mode: str) -> subprocess.CompletedProcess:
    profile = tmp / f"profile-{name}"
    shutil.rmtree(profile, ignore_errors=True)  # a fresh profile: no saved UI state, no cookies
    p = subprocess.run([chromium, *FLAGS, f"--user-data-dir={profile}", *mode, url], capture_output=True,
                       text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    return p


def dom(chromium: str, url: str, tmp: Path, name: str) -> str:
    return _chromium(chromium, url, tmp, name, "--dump-dom").stdout


def screenshot(chromium: str, url: str, tmp: Path, name: str) -> Path:
    png = tmp / f"{name}.png"
    _chromium(chromium, url, tmp, name, f"--screenshot={png}")
    head = png.read_bytes()[:24]
    assert head[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", head[16:24]) == (1600, 1000)
    assert png.stat().st_size > 30_000, "an almost empty page"
    return png


def _roles(ui) -> tuple[str, list]:
    parent = [r for r in ui["runs"] if r.data.tags["runner.role"] == "parent"]
    trials = [r for r in ui["runs"] if r.data.tags["runner.role"] == "trial"]
    assert len(parent) == 1 and len(trials) == 4
    return parent[0].info.run_name, trials


def test_runs_page_shows_the_sweeps_parent_run(ui, chromium):
    """The plain runs page: the parent run, with its trials collapsed under it."""
    parent, _ = _roles(ui)
    url = f"{ui['base']}/#/experiments/{ui['exp']}/runs"
    html = dom(chromium, url, ui["tmp"], "plain")
    assert parent == "sweep ui-demo" and parent in html
    screenshot(chromium, url, ui["tmp"], "plain")


def test_sorting_by_a_metric_lists_every_trial(ui, chromium):
    _, trials = _roles(ui)
    q = urllib.parse.urlencode({"orderByKey": "metrics.`output_throughput`", "orderByAsc": "false"},
                               quote_via=urllib.parse.quote)
    html = dom(chromium, f"{ui['base']}/#/experiments/{ui['exp']}/runs?{q}", ui["tmp"], "sorted")
    for r in trials:
        assert r.info.run_name in html, r.info.run_name


def test_the_sweeps_saved_view_shows_trials_with_their_metrics(ui, chromium):
    """The view a person wants, saved by the runner itself and linked from the parent run: every
    trial, best throughput first, with the varying parameters and the numbers. Saved as
    docs/mlflow-ui.png for the README."""
    parent_name, trials = _roles(ui)
    parent = next(r for r in ui["runs"] if r.data.tags["runner.role"] == "parent")
    link = parent.data.tags["runner.compare_view"]
    assert link in parent.data.tags["mlflow.note.content"]          # the run's description links it
    assert parent.info.status == "FINISHED"                          # every trial completed
    prefix = f"http://127.0.0.1:5000/#/experiments/{ui['exp']}/runs?viewStateShareKey="
    assert link.startswith(prefix)                                   # sqlite: where `make mlflow-ui` serves
    key = link.removeprefix(prefix)
    state = json.loads(ui["client"].get_experiment(ui["exp"]).tags[f"mlflow.sharedViewState.{key}"])
    cols = state["selectedColumns"]
    varying = [*PARAMS, "num_prompts"]                               # what varies across the sweep
    assert [c for c in cols if c.startswith("params.")] == [f"params.`{p}`" for p in varying]
    assert {f"metrics.`{m}`" for m in METRICS} <= set(cols)
    url = link.replace("http://127.0.0.1:5000", ui["base"])

    html = dom(chromium, url, ui["tmp"], "shared")
    for r in trials:
        assert r.info.run_name in html, r.info.run_name
        value = repr(r.data.metrics["output_throughput"]).removesuffix(".0")
        assert value in html, value                 # the cell holds the full number (JS and Python print alike)
    assert f">{parent_name}<" not in html            # the view lists trials only
    for c in cols:
        assert f'col-id="{c}"' in html, c
    order = [html.index(r.info.run_name) for r in sorted(trials, key=lambda r: -r.data.metrics["output_throughput"])]
    assert order == sorted(order)                   # best output throughput first

    png = screenshot(chromium, url, ui["tmp"], "shared")
    docs = ROOT / "docs"
    docs.mkdir(exist_ok=True)
    shutil.copyfile(png, docs / "mlflow-ui.png")
