"""The report's PNGs, drawn with matplotlib's object API on the Agg backend (no display, no pyplot
global state). Import this module lazily: matplotlib is the optional ``report`` extra.

Plots, from report rows (see ``runner.report.rows``); only COMPLETED rows are drawn:
- ``pareto_<model>_<in>x<out>.png``: tok/s/GPU (y) against tok/s/user = 1000 / median TPOT ms
  (x), one curve per hardware (or engine / lane when those vary); frontier points joined and
  labelled with shape and concurrency, dominated points faint;
- ``latency.png``: median and p99 TTFT and TPOT (ms) against output tok/s, one line per
  serving configuration and in/out as concurrency rises;
- ``throughput.png``: bars of the best configuration's total tok/s and tok/s/GPU per
  model × in/out, one bar per hardware (table 1's rows).
Every axis names its unit; every plot has a title and a legend, and carries them in its PNG
metadata (``describe``). A plot holding any simulated row says ``SIMULATION`` in its title
(its model names carry the marker in the legend and labels too, ``rows.SIM_MARK``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from runner.report import frontier
from runner.report.rows import SIM_MARK

DPI = 110
#: Title prefix of a plot that shows simulated trials.
SIM_TITLE = "SIMULATION (simulated engine, not inference measurements): "


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=DPI, layout="constrained")


def _save(fig: Any, path: Path) -> Path:
    """Write the PNG with what it shows in its ``Description`` text chunk (JSON: the figure's
    title and legend, and per axes its title, axis labels and legend entries), so a test can
    check a plot's claims without OCR."""
    import json

    def texts(legend: Any) -> list[str]:
        return [t.get_text() for t in legend.get_texts()] if legend else []

    shown = {"title": fig.get_suptitle(), "legend": [t for lg in fig.legends for t in texts(lg)],
             "axes": [{"title": ax.get_title(), "xlabel": ax.get_xlabel(), "ylabel": ax.get_ylabel(),
                       "legend": texts(ax.get_legend())} for ax in fig.get_axes()]}
    fig.savefig(path, metadata={"Description": json.dumps(shown)})
    return path


def describe(path: Path) -> dict[str, Any]:
    """The ``Description`` a PNG written here carries (see ``_save``)."""
    import json

    from PIL import Image

    with Image.open(path) as im:
        return json.loads(im.info["Description"])


def slug(*parts: Any) -> str:
    """A file-name-safe join of ``parts`` ('org/Model-7B', 1024, 256 → 'org_Model-7B_1024_256')."""
    return "_".join(re.sub(r"[^A-Za-z0-9._-]+", "_", str(p)).strip("_") for p in parts).strip("_")


def point_label(r: dict, keys: Sequence[str] = ()) -> str:
    """'TP8 EP DP1 c64' (PP only when > 1), then the engine arguments ``keys`` that vary."""
    from runner.report.rows import args

    pp = f" PP{r.get('pp')}" if (r.get("pp") or 1) > 1 else ""
    base = f"TP{r.get('tp', 1)}{pp}{' EP' if r.get('ep') else ''} DP{r.get('dp', 1)} c{r.get('concurrency')}"
    return f"{base} {args(r, keys)}" if keys else base


def pareto_png(model: str, io: str, curves: dict[str, list[dict]], path: Path) -> Path:
    """One Pareto plot: each curve's points faint, its frontier solid and labelled."""
    from runner.report.rows import simulated, varying_args

    keys = varying_args([r for rs in curves.values() for r in rs])
    fig = _figure(9, 6)
    ax = fig.add_subplot()
    ax.margins(x=0.12, y=0.08)                       # room for the labels of the outermost points
    colors = _colors(len(curves))
    for (name, rows), color in zip(curves.items(), colors):
        pts = frontier.xy(rows)
        on = frontier.pareto(pts)
        off = [p for i, p in enumerate(pts) if i not in on]
        if off:
            ax.scatter([p[0] for p in off], [p[1] for p in off], color=color, alpha=0.25, s=18,
                       label=f"{name} (dominated)")
        fx, fy = [pts[i][0] for i in on], [pts[i][1] for i in on]
        ax.plot(fx, fy, "o-", color=color, label=f"{name} frontier", markersize=5)
        for i in on:
            ax.annotate(point_label(rows[i], keys), pts[i], textcoords="offset points", xytext=(4, 4), fontsize=7,
                        color=color)
    ax.set_xlabel("interactivity (tok/s/user = 1000 / median TPOT ms)")
    ax.set_ylabel("throughput per GPU (total tok/s/GPU)")
    sim = any(simulated(r) for rs in curves.values() for r in rs)
    ax.set_title(f"{SIM_TITLE if sim else ''}Pareto frontier: {model}, {io} tokens in/out")
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def latency_png(rows: Sequence[dict], path: Path) -> Path:
    """2×2: median/p99 TTFT and TPOT (ms) against output tok/s; a line per serving config and in/out."""
    from runner.report.rows import args, completed, engine, ident, shape, simulated, varying_args

    lines: dict[tuple, list[dict]] = {}
    for r in completed(rows, "output_throughput"):
        lines.setdefault(ident(r, ("concurrency", "num_prompts")), []).append(r)
    keys = varying_args(rows)
    engines = len({engine(r) for r in rows}) > 1
    fig = _figure(12, 8)
    axes = fig.subplots(2, 2)
    panels = [("median_ttft_ms", "median TTFT (ms)"), ("p99_ttft_ms", "p99 TTFT (ms)"),
              ("median_tpot_ms", "median TPOT (ms)"), ("p99_tpot_ms", "p99 TPOT (ms)")]
    colors = _colors(len(lines))
    for ax, (metric, label) in zip(axes.flat, panels):
        for n, (rs, color) in enumerate(zip(lines.values(), colors)):
            rs = sorted((r for r in rs if r.get(metric) is not None), key=lambda r: r.get("concurrency") or 0)
            if not rs:
                continue
            r0 = rs[0]
            name = (f"{engine(r0) + ' ' if engines else ''}{r0.get('model')} {r0.get('hardware')} {shape(r0)} "
                    f"{'' if not keys else args(r0, keys) + ' '}{r0.get('input_len')}/{r0.get('output_len')}")
            ax.plot([r["output_throughput"] for r in rs], [r[metric] for r in rs], marker="o", color=color,
                    linestyle=("-", "--", ":", "-.")[n // 20 % 4], label=name, markersize=4)
        ax.set_xlabel("output throughput (tok/s)")
        ax.set_ylabel(label)
        ax.set_title(f"{label} vs output throughput")
        ax.grid(True, alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", fontsize=7, ncol=min(3, len(labels)))
    sim = SIM_TITLE if any(simulated(r) for r in completed(rows, "output_throughput")) else ""
    fig.suptitle(f"{sim}Latency vs throughput as concurrency rises (one line per serving configuration)")
    return _save(fig, path)


def throughput_png(table: Any, path: Path) -> Path:
    """Grouped bars from table 1 (``tables.throughput_table``): a group per model × in/out, a bar
    per hardware (per hardware · engine when engines vary); left the configuration's total
    tok/s, right total tok/s/GPU."""
    h = table.head
    im, ih, ie, io, it, ig = (h.index(c) for c in ("model", "hardware", "engine", "in/out", "total tok/s (config)",
                                                   "total tok/s/GPU"))
    groups = sorted({(r[im], r[io]) for r in table.rows}, key=str)
    by_engine = len({r[ie] for r in table.rows}) > 1          # engines compared: a bar per hardware · engine
    series = lambda r: f"{r[ih]} · {r[ie]}" if by_engine else str(r[ih])  # noqa: E731
    hws = sorted({series(r) for r in table.rows}, key=str)
    val = {(r[im], r[io], series(r)): (r[it], r[ig]) for r in table.rows}
    fig = _figure(max(7, 1.6 * len(groups) * max(1, len(hws)) / 2 + 4), 5)
    axes = fig.subplots(1, 2)
    width = 0.8 / max(1, len(hws))
    panels = (("total tok/s (whole configuration)", "Total tok/s of the best configuration"),
              ("total tok/s per GPU", "Total tok/s per GPU of the best configuration"))
    for k, (ax, (ylabel, title)) in enumerate(zip(axes, panels)):
        for j, (hw, color) in enumerate(zip(hws, _colors(len(hws)))):
            xs = [i + j * width for i in range(len(groups))]
            ys = [(val.get((m, io_, hw)) or (0, 0))[k] or 0 for m, io_ in groups]
            ax.bar(xs, ys, width, label=str(hw), color=color)
        ax.set_xticks([i + width * (len(hws) - 1) / 2 for i in range(len(groups))],
                      [f"{m}\n{io_}" for m, io_ in groups], fontsize=8)
        ax.set_xlabel("model, input/output tokens")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, axis="y", alpha=0.3)
        ax.legend(title="hardware · engine" if by_engine else "hardware", fontsize=8)
    sim = SIM_TITLE if any(str(r[im]).endswith(SIM_MARK) for r in table.rows) else ""
    fig.suptitle(f"{sim}Throughput per model × hardware" + (" × engine" if by_engine else ""))
    return _save(fig, path)


def write_all(rows: Sequence[dict], throughput: Any, d: Path) -> list[Path]:
    """Every plot the rows allow into ``d``; nothing is drawn for a sweep with no completed trial."""
    out = []
    for (model, il, ol), cs in frontier.curves(rows).items():
        out.append(pareto_png(model, f"{il}/{ol}", cs, d / f"pareto_{slug(model, f'{il}x{ol}')}.png"))
    if any(r.get("status") == "COMPLETED" and r.get("output_throughput") is not None for r in rows):
        out.append(latency_png(rows, d / "latency.png"))
    if throughput.rows:
        out.append(throughput_png(throughput, d / "throughput.png"))
    return out


def _colors(n: int) -> list[Any]:
    from matplotlib import colormaps

    cmap = colormaps["tab10" if n <= 10 else "tab20"]
    return [cmap(i % cmap.N) for i in range(max(n, 1))]
