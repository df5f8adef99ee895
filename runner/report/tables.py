"""The studies' tables, computed from report rows (``runner.report.rows``).

Every table function takes rows and returns a ``Table`` of raw values (floats, ints, str,
None); only ``Table.render`` formats. Invariants: only COMPLETED rows with the metric in
question enter a numeric table (an INVALID load point never becomes a number); a missing cell
is "-", never 0.
"""

from __future__ import annotations

import csv
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runner.report import frontier
from runner.report.rows import (
    DONE,
    ORDER,
    OUTPUT,
    TOTAL,
    args,
    completed,
    cost,
    engine,
    gpus,
    ident,
    io,
    order,
    per_gpu,
    shape,
    sortable,
    varying_args,
)


@dataclass
class Table:
    """Raw values by column; ``kinds`` says how to print each: s text, i int, n tok/s or ms,
    $ dollars, d signed %, p %, x ratio, g a plain number."""

    name: str
    title: str
    head: list[str]
    kinds: str
    rows: list[list[Any]] = field(default_factory=list)

    def render(self) -> str:
        cells = [[_fmt(v, k) for v, k in zip(r, self.kinds)] for r in self.rows]
        if not cells:
            return f"{self.title}\n  (no data yet)"
        w = [max(len(x) for x in col) for col in zip(self.head, *cells)]

        def line(xs: Sequence[str]) -> str:
            return "  ".join(x.ljust(n) if k == "s" else x.rjust(n) for x, n, k in zip(xs, w, self.kinds)).rstrip()

        return "\n".join([self.title, line(self.head), line(["-" * n for n in w]), *map(line, cells)])

    def write_csv(self, path: Path) -> None:
        with path.open("w", newline="") as f:
            wr = csv.writer(f)
            wr.writerow(self.head)
            wr.writerows([["" if v is None else v for v in r] for r in self.rows])


def _fmt(v: Any, kind: str) -> str:
    if v is None:
        return "-"
    if isinstance(v, str) or kind in "si":
        return str(v)
    v = float(v)
    if kind == "n":
        return f"{v:,.0f}" if abs(v) >= 100 else f"{v:,.1f}" if abs(v) >= 10 else f"{v:,.2f}"
    if kind == "$":
        return f"{v:,.2f}" if abs(v) >= 0.1 else f"{v:.3g}"
    if kind == "d":
        return f"{v:+.1f}%"
    if kind == "p":
        return f"{v:.1f}%"
    if kind == "x":
        return f"{v:.2f}×"
    return f"{v:g}"


def _best(rows: Sequence[dict], key: Callable[[dict], float | None],
          by: Callable[[dict], tuple]) -> list[dict]:
    """Per group ``by``: the row with the highest ``key``; groups sorted by their key tuple."""
    best: dict[tuple, dict] = {}
    for r in rows:
        k, v = by(r), key(r)
        if v is not None and (k not in best or v > key(best[k])):
            best[k] = r
    return [best[k] for k in sorted(best, key=lambda k: tuple(map(sortable, k)))]


def _mh(r: dict) -> tuple:
    """A row's group in tables 1-2: engines (and lanes) are compared, never merged."""
    return (r.get("model"), r.get("hardware"), engine(r), r.get("input_len"), r.get("output_len"))


def throughput_table(rows: Sequence[dict]) -> Table:
    """Best COMPLETED configuration (max total tok/s) per model × hardware × engine × in/out."""
    keys = varying_args(rows)
    t = Table("throughput", "1. Throughput: best COMPLETED configuration per model × hardware × engine × in/out "
              "(by total tok/s; config = all GPUs of the configuration, tok/s)",
              ["model", "hardware", "in/out", "engine", "shape", "engine args", "conc", "GPUs",
               "total tok/s (config)", "out tok/s (config)", "total tok/s/GPU", "out tok/s/GPU", "client-bound"],
              "ssssssiinnnns")
    for r in _best(completed(rows), lambda r: r.get(TOTAL), _mh):
        t.rows.append([r.get("model"), r.get("hardware"), io(r), engine(r), shape(r), args(r, keys),
                       r.get("concurrency"), gpus(r), r.get(TOTAL), r.get(OUTPUT), per_gpu(r, TOTAL),
                       per_gpu(r, OUTPUT), "yes" if r.get("client_bound") else "no"])
    return t


def cost_table(rows: Sequence[dict]) -> Table:
    """Cheapest COMPLETED configuration (max total tok/s/GPU) per model × hardware × engine × in/out."""
    keys = varying_args(rows)
    t = Table("cost", "2. Cost per million tokens: cheapest COMPLETED configuration per model × hardware × engine "
              "× in/out ($/M = $/GPU-h × 1e6 / (3600 × tok/s/GPU); '-' = no price)",
              ["model", "hardware", "in/out", "engine", "shape", "engine args", "conc", "$/GPU-h",
               "total tok/s/GPU", "out tok/s/GPU", "$/M total tokens", "$/M output tokens"], "ssssssi$nn$$")
    for r in _best(completed(rows), lambda r: per_gpu(r, TOTAL), _mh):
        price = r.get("price_per_gpu_hour")                # 0 is a price (free); None is none
        t.rows.append([r.get("model"), r.get("hardware"), io(r), engine(r), shape(r), args(r, keys),
                       r.get("concurrency"), price, per_gpu(r, TOTAL), per_gpu(r, OUTPUT), cost(r, TOTAL),
                       cost(r, OUTPUT)])
    return t


def _pairs(rows: Sequence[dict], drop: Sequence[str]) -> list[list[dict]]:
    """COMPLETED rows grouped by identity minus ``drop``, groups in natural order."""
    groups: dict[tuple, list[dict]] = {}
    for r in completed(rows):
        groups.setdefault(ident(r, drop), []).append(r)
    return sorted(groups.values(), key=lambda rs: order(rs[0], drop))


def ep_table(rows: Sequence[dict]) -> Table:
    """Every configuration measured with EP both off and on (all else equal): Δ% total tok/s."""
    keys = varying_args(rows)
    t = Table("ep", "3. Expert parallel on vs off (same configuration and load; Δ = on/off − 1 of total tok/s)",
              ["model", "hardware", "engine", "shape", "engine args", "conc", "in/out", "EP off tok/s",
               "EP on tok/s", "Δ total tok/s"], "sssssisnnd")
    for rs in _pairs(rows, ["ep"]):
        off = next((r for r in rs if not r.get("ep")), None)
        on = next((r for r in rs if r.get("ep")), None)
        if off and on:
            t.rows.append([off.get("model"), off.get("hardware"), engine(off), shape(off), args(off, keys),
                           off.get("concurrency"), io(off), off[TOTAL], on[TOTAL],
                           (on[TOTAL] / off[TOTAL] - 1) * 100 if off[TOTAL] else None])
    return t


def context_table(rows: Sequence[dict]) -> Table:
    """Drop % of total tok/s from the shortest (input_len, output_len) to each longer one,
    same serving configuration and concurrency; shortest = least input+output tokens."""
    keys = varying_args(rows)
    t = Table("context", "4. Context length: drop of total tok/s from the shortest in/out "
              "(same serving configuration and concurrency; drop = 1 − long/short)",
              ["model", "hardware", "engine", "shape", "engine args", "conc", "from in/out", "to in/out",
               "from tok/s", "to tok/s", "drop"], "sssssissnnp")
    for rs in _pairs(rows, ["input_len", "output_len", "num_prompts"]):
        rs = sorted(rs, key=lambda r: (r["input_len"] + r["output_len"], r["input_len"]))
        base = rs[0]
        for r in rs[1:]:
            t.rows.append([base.get("model"), base.get("hardware"), engine(base), shape(base), args(base, keys),
                           base.get("concurrency"), io(base), io(r), base[TOTAL], r[TOTAL],
                           (1 - r[TOTAL] / base[TOTAL]) * 100 if base[TOTAL] else None])
    return t


def shape_table(rows: Sequence[dict]) -> Table:
    """Same model, hardware, engine args and load, different (tp, pp, dp, ep): scaling efficiency =
    tok/s/GPU of the shape / tok/s/GPU of the smallest-GPU shape (ties: first by tp, pp, dp, ep off)."""
    keys = varying_args(rows)
    t = Table("shapes", "5. Shapes: same model, hardware, engine args and load; scaling efficiency = "
              "tok/s/GPU ÷ tok/s/GPU of the smallest-GPU shape",
              ["model", "hardware", "engine", "engine args", "in/out", "conc", "shape", "GPUs", "total tok/s",
               "total tok/s/GPU", "scaling eff"], "sssssisinnp")
    for rs in _pairs(rows, ["tp", "pp", "dp", "ep"]):
        if len(rs) < 2:
            continue
        rs = sorted(rs, key=lambda r: (gpus(r), r.get("tp", 1), r.get("pp", 1), r.get("dp", 1), bool(r.get("ep"))))
        base = per_gpu(rs[0])
        for r in rs:
            pg = per_gpu(r)
            t.rows.append([r.get("model"), r.get("hardware"), engine(r), args(r, keys), io(r), r.get("concurrency"),
                           shape(r), gpus(r), r[TOTAL], pg, pg / base * 100 if base and pg is not None else None])
    return t


def status_table(rows: Sequence[dict]) -> Table:
    """Counts by status per model × hardware × engine × shape, failure reasons, and a verdict:
    completed (all), partial (some), pending (none yet, some to run), blocked (none, none left)."""
    t = Table("status", "6. Status per model × shape (client-bound = completed, but the load generator "
              "was the bottleneck)",
              ["model", "hardware", "engine", "shape", "trials", "completed", "failed", "invalid", "unschedulable",
               "killed", "running", "pending", "client-bound", "verdict", "reasons"], "ssssiiiiiiiiiss")
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((str(r.get("model")), str(r.get("hardware")), engine(r), shape(r)), []).append(r)
    for k, rs in sorted(groups.items(), key=lambda kv: tuple(sortable(kv[1][0].get(f)) for f in ORDER[:8])):
        n = Counter(r.get("status") or "PENDING" for r in rs)
        reasons = Counter(r.get("reason") for r in rs if r.get("status") not in (DONE, "PENDING", "RUNNING")
                          and r.get("reason"))
        cb = sum(1 for r in rs if r.get("status") == DONE and r.get("client_bound"))
        todo = n["PENDING"] + n["RUNNING"]
        verdict = ("completed" if n[DONE] == len(rs) else "partial" if n[DONE] else
                   "pending" if todo else "blocked")
        t.rows.append([*k, len(rs), n[DONE], n["FAILED"], n["INVALID"], n["UNSCHEDULABLE"], n["KILLED"],
                       n["RUNNING"], n["PENDING"], cb, verdict,
                       "; ".join(f"{why}×{c}" for why, c in sorted(reasons.items())) or "-"])
    return t


def iso_table(rows: Sequence[dict], levels: Sequence[float] = frontier.DEFAULT_LEVELS,
              pair: tuple[str, str] | None = None, space: str = frontier.DEFAULT_SPACE) -> Table:
    """tok/s/GPU interpolated along each curve's frontier at each tok/s/user level (frontier.iso_rows),
    the interpolation space named in the title."""
    names, body, pair = frontier.iso_rows(rows, levels, pair, space)
    rname = f"ratio {pair[0]}/{pair[1]}" if pair else "ratio"
    how = "linear in TPOT = 1000/(tok/s/user)" if space == "tpot" else "linear in tok/s/user"
    return Table("iso_interactivity", "7. Iso-interactivity: tok/s/GPU along each Pareto frontier at fixed "
                 f"tok/s/user (interpolation: {how}; 'unreachable' = outside the measured range)",
                 ["model", "in/out", "tok/s/user", *names, rname], "ssg" + "n" * len(names) + "x", body)


def frontier_table(rows: Sequence[dict]) -> Table:
    """Every plotted point (CSV only): curve, shape, concurrency, x, y and whether it is on the frontier."""
    t = Table("frontier", "Pareto points", ["model", "in/out", "curve", "shape", "conc", "tok/s/user",
                                            "tok/s/GPU", "on frontier"], "ssssinns")
    for (model, il, ol), cs in frontier.curves(rows).items():
        for name, rs in cs.items():
            on = set(frontier.pareto(frontier.xy(rs)))
            for i, r in enumerate(rs):
                t.rows.append([model, f"{il}/{ol}", name, shape(r), r.get("concurrency"), r[frontier.X],
                               r[frontier.Y], "yes" if i in on else "no"])
    return t


def tables(rows: Sequence[dict], levels: Sequence[float] = frontier.DEFAULT_LEVELS,
           pair: tuple[str, str] | None = None, space: str = frontier.DEFAULT_SPACE) -> list[Table]:
    """Every printed table, in report order."""
    return [throughput_table(rows), cost_table(rows), ep_table(rows), context_table(rows), shape_table(rows),
            status_table(rows), iso_table(rows, levels, pair, space)]
