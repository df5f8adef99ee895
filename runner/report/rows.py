"""Report rows: one dict per trial of a sweep file, and the helpers the tables and plots share.

A row holds the trial's parameters as logged (typed: ``tp`` is an int, ``ep`` a bool,
``engine_args.x`` its value), ``gpus``, ``price_per_gpu_hour`` ($/GPU-hour, None when unknown),
``lane`` (when logged), ``status`` (``runner.status``; PENDING when the trial never ran),
``reason``, ``client_bound`` (bool) and its metrics flat under their MLflow names (tok/s, ms,
$/M tokens). Rows are plain dicts so tests can build them by hand.

A trial of the simulated engine is never shown as a measurement: ``build_rows`` gives its row
``simulation=True`` and writes its ``model`` as ``<model> (SIMULATION)``, so every table, CSV
and plot that names a model carries the marker, and simulated points never share a Pareto
curve group with measured ones. Both are derived from the engine, never from a flag.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from runner.plan import SIMULATED_ENGINE, SIMULATION

#: Parameters that identify a measurement; two rows equal on these are the same trial.
IDENTITY = ("engine", "lane", "api", "model", "hardware", "tp", "pp", "dp", "ep", "input_len", "output_len",
            "concurrency", "num_prompts", "warmup", "ignore_eos", "seed", "temperature")
ORDER = ("model", "hardware", "engine", "lane", "api", "tp", "pp", "dp", "ep", "input_len", "output_len", "concurrency")
TOTAL, OUTPUT = "total_token_throughput", "output_throughput"
DONE = "COMPLETED"
#: Appended to the model name of a simulated trial's row.
SIM_MARK = f" ({SIMULATION})"


# -- rows -------------------------------------------------------------------------------------
def parse_param(v: Any) -> Any:
    """An MLflow param string back to its value: 'True' → True, 'None' → None, '8' → 8, '2.5' → 2.5."""
    if not isinstance(v, str):
        return v
    if v in ("True", "False"):
        return v == "True"
    if v == "None":
        return None
    for cast in (int, float):
        try:
            return cast(v)
        except ValueError:
            pass
    return v


def row_from_run(run: Any) -> dict[str, Any]:
    """An MLflow trial run → a row (params converted, tags read, metrics flat)."""
    tags = run.data.tags
    row = {k: parse_param(v) for k, v in run.data.params.items()}
    row.update(run.data.metrics)
    row.update(trial_id=tags.get("runner.trial_id"), status=tags.get("runner.status", "PENDING"),
               reason=tags.get("runner.reason", ""), client_bound=tags.get("runner.client_bound") == "true")
    return row


def build_rows(trials: Iterable[Any], latest: dict[str, Any], prices: dict[str, float | None]) -> list[dict]:
    """One row per expanded trial; its latest run's values when it ran, else status PENDING.

    The trial's own parameters win over the logged strings; ``price_per_gpu_hour`` is the one
    logged with the run (the price used then), else (none then, or never ran) ``prices[hardware]``.
    """
    rows = []
    for t in trials:
        p = t.params()
        p.pop("model_path", None)
        run = latest.get(t.trial_id)
        row = row_from_run(run) if run is not None else {
            "status": "PENDING", "reason": "", "client_bound": False,
            "price_per_gpu_hour": prices.get(t.serving.hardware)}
        row.update(p, trial_id=t.trial_id, gpus=row.get("gpus") or t.serving.gpus)
        if row.get("price_per_gpu_hour") is None:       # none when it ran: today's price, if any
            row["price_per_gpu_hour"] = prices.get(t.serving.hardware)
        rows.append(mark_simulation(row))
    return rows


def simulated(r: dict) -> bool:
    """True for a row of the simulated engine (its numbers are not inference measurements)."""
    return r.get("engine") == SIMULATED_ENGINE or bool(r.get("simulation"))


def mark_simulation(r: dict) -> dict:
    """The row itself; a simulated one gets ``simulation=True`` and its model marked (once)."""
    if simulated(r):
        r["simulation"] = True
        if not str(r.get("model")).endswith(SIM_MARK):
            r["model"] = f"{r.get('model')}{SIM_MARK}"
    return r


# -- helpers ----------------------------------------------------------------------------------
def shape(r: dict) -> str:
    """'tp8/pp1/dp2/ep' (the '/ep' only when expert parallel is on)."""
    return f"tp{r.get('tp', 1)}/pp{r.get('pp', 1)}/dp{r.get('dp', 1)}{'/ep' if r.get('ep') else ''}"


def gpus(r: dict) -> int:
    return int(r.get("gpus") or r.get("tp", 1) * r.get("pp", 1) * r.get("dp", 1))


def per_gpu(r: dict, key: str = TOTAL) -> float | None:
    """tok/s/GPU: the logged metric when present, else throughput / GPUs."""
    logged = r.get("tput_per_gpu" if key == TOTAL else "output_tput_per_gpu")
    return logged if logged is not None else (None if r.get(key) is None else r[key] / gpus(r))


def cost(r: dict, key: str = TOTAL) -> float | None:
    """$/M tokens = price $/GPU-h × 1e6 / (3600 × tok/s/GPU). A price of 0 (free hardware) costs
    0; None without a price, or without a positive throughput."""
    price, tput = r.get("price_per_gpu_hour"), per_gpu(r, key)
    return None if price is None or not tput or tput <= 0 else float(price) * 1e6 / (3600.0 * tput)


def engine(r: dict) -> str:
    """'vllm', 'vllm [lane]' for a lane other than the default, 'vllm via openai' for an API mode
    other than the in-process one (as ``ServingConfig.label``)."""
    lane, api = r.get("lane"), r.get("api")
    return (f"{r.get('engine')}" + (f" [{lane}]" if lane and lane != "default" else "")
            + (f" via {api}" if api and api != "engine" else ""))


def varying_args(rows: Sequence[dict]) -> list[str]:
    """engine_args.* keys that take more than one value across ``rows`` (the others are constant)."""
    keys = sorted({k for r in rows for k in r if k.startswith("engine_args.")})
    return [k for k in keys if len({repr(r.get(k)) for r in rows}) > 1]


def args(r: dict, keys: Sequence[str]) -> str:
    return " ".join(f"{k.removeprefix('engine_args.')}={r.get(k)}" for k in keys) or "-"


def ident(r: dict, drop: Iterable[str] = ()) -> tuple:
    """The measurement identity minus ``drop``: every IDENTITY key and every engine argument."""
    keys = [k for k in IDENTITY if k not in drop] + sorted(k for k in r if k.startswith("engine_args."))
    return tuple((k, repr(r.get(k))) for k in keys if k not in drop)


def sortable(v: Any) -> tuple:
    return (0, v, "") if isinstance(v, (int, float)) else (2, 0, "") if v is None else (1, 0, str(v))


def order(r: dict, drop: Iterable[str] = ()) -> tuple:
    """Natural sort key (numbers as numbers): model, hardware, engine, lane, shape, engine args,
    lengths, concurrency; ``drop`` fields ignored."""
    drop = set(drop)
    keys = [*ORDER[:9], *sorted(k for k in r if k.startswith("engine_args.")), *ORDER[9:]]
    return tuple(sortable(r.get(k)) for k in keys if k not in drop)


def completed(rows: Iterable[dict], key: str = TOTAL) -> list[dict]:
    return [r for r in rows if r.get("status") == DONE and r.get(key) is not None]


def io(r: dict) -> str:
    return f"{r.get('input_len')}/{r.get('output_len')}"
