"""Pareto frontier of throughput per GPU against interactivity, and iso-interactivity values.

Pure functions: no I/O, no plotting, no MLflow. Units, as the cross-SKU studies use them
(``shared/METRICS.md``): x = interactivity in tok/s/user (``1000 / median TPOT ms``),
y = throughput per GPU in tok/s/GPU (``tput_per_gpu`` = total token throughput / GPUs).

Invariants:
- ``pareto(points)`` returns the indices of the non-dominated points (both axes are "more is
  better"), ordered by x strictly ascending and therefore y strictly descending; of exactly
  equal points only the first is kept.
- ``interpolate`` is linear between consecutive frontier points in the chosen ``space``: in
  ``tpot`` (the default) y is linear in TPOT = 1000 / x, which is how the GB300/GB200 study's
  published iso-interactivity values come out (``shared/data/gb200-nvl72-dsv4pro-8k1k.csv``:
  within 7.5 % at every level, against up to 47 % off linearly in tok/s/user where frontier
  points are far apart); ``interactivity`` is linear in x itself. Above the highest measured x
  it returns ``None`` ("unreachable"). Below the frontier's lowest x it returns ``None`` only
  when the level is also below every *measured* x; between the lowest measured x and the
  frontier's lowest x (points there are dominated: more load, less throughput) the best
  throughput at interactivity >= level is exactly the first frontier point's y.
- A curve is one set of points that share (model, input_len, output_len) and the curve
  dimensions that vary in the data (hardware, engine, lane); a frontier never mixes models
  or context lengths, since per-GPU throughput across them is not comparable.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence
from typing import Any

#: Iso-interactivity levels of the GB300 vs GB200 study, tok/s/user.
DEFAULT_LEVELS: tuple[float, ...] = (16, 18, 20, 22, 25, 27, 28, 32, 36, 50)
#: Dimensions that split points into separate curves when they take more than one value.
CURVE_DIMS = ("hardware", "engine", "lane")
X, Y = "interactivity", "tput_per_gpu"
#: Interpolation spaces for iso-interactivity values: linear in TPOT (ms) or in tok/s/user.
SPACES = ("tpot", "interactivity")
DEFAULT_SPACE = "tpot"

Point = tuple[float, float]


def pareto(points: Sequence[Point]) -> list[int]:
    """Indices of the non-dominated points, ordered by x ascending (y then descends strictly).

    A point is dominated when another has x' >= x and y' >= y with one of them strictly greater.
    """
    order = sorted(range(len(points)), key=lambda i: (-points[i][0], -points[i][1], i))
    keep, best_y = [], float("-inf")
    for i in order:  # x descending; within one x, the highest y comes first
        if points[i][1] > best_y:
            keep.append(i)
            best_y = points[i][1]
    return keep[::-1]


def interpolate(front: Sequence[Point], x: float, lowest: float | None = None,
                space: str = DEFAULT_SPACE) -> float | None:
    """y at interactivity ``x`` along ``front`` (sorted by x ascending), or None if unreachable.

    ``lowest`` is the lowest x measured on the curve (dominated points included); it defaults
    to the frontier's own lowest x. ``space``: one of ``SPACES`` (see the module docstring).
    """
    if space not in SPACES:
        raise ValueError(f"interpolation space {space!r}; allowed: {', '.join(SPACES)}")
    if not front:
        return None
    lo = front[0][0] if lowest is None else min(lowest, front[0][0])
    if x > front[-1][0] or x < lo:
        return None
    if x <= front[0][0]:
        return front[0][1]
    for (x0, y0), (x1, y1) in itertools.pairwise(front):
        if x0 <= x <= x1:
            if x1 == x0:
                return y0
            if space == "tpot":  # x > 0 on every plottable point: TPOT = 1000 / x is finite
                return y0 + (y1 - y0) * (1000 / x - 1000 / x0) / (1000 / x1 - 1000 / x0)
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return front[-1][1]  # not reached: front[0][0] <= x <= front[-1][0] falls in a segment


def iso(points: Sequence[Point], levels: Iterable[float], space: str = DEFAULT_SPACE) -> list[float | None]:
    """y interpolated along the frontier of ``points`` at each level; None = unreachable."""
    front = [points[i] for i in pareto(points)]
    lowest = min((p[0] for p in points), default=None)
    return [interpolate(front, float(lv), lowest, space) for lv in levels]


def ratio(a: float | None, b: float | None) -> float | None:
    """a / b, or None when either is missing or b is not positive."""
    return None if a is None or b is None or b <= 0 else a / b


# -- rows → curves ------------------------------------------------------------------------------
def curve_dims(rows: Sequence[dict[str, Any]]) -> tuple[str, ...]:
    """The curve dimensions that take more than one value among ``rows``; ("hardware",) if none."""
    dims = tuple(d for d in CURVE_DIMS if len({r.get(d) for r in rows}) > 1)
    return dims or ("hardware",)


def curve_label(row: dict[str, Any], dims: Sequence[str]) -> str:
    return " ".join(str(row.get(d)) for d in dims if row.get(d) is not None) or "-"


def plottable(rows: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """COMPLETED rows with a positive interactivity and a per-GPU throughput."""
    return [r for r in rows if r.get("status") == "COMPLETED" and (r.get(X) or 0) > 0
            and r.get(Y) is not None]


def curves(rows: Sequence[dict[str, Any]]) -> dict[tuple[str, int, int], dict[str, list[dict[str, Any]]]]:
    """(model, input_len, output_len) → curve label → its plottable rows (in input order)."""
    usable = plottable(rows)
    dims = curve_dims(usable)
    out: dict[tuple[str, int, int], dict[str, list[dict[str, Any]]]] = {}
    for r in usable:
        key = (str(r.get("model")), r.get("input_len"), r.get("output_len"))
        out.setdefault(key, {}).setdefault(curve_label(r, dims), []).append(r)
    return {k: dict(sorted(v.items())) for k, v in sorted(out.items(), key=lambda kv: str(kv[0]))}


def xy(rows: Sequence[dict[str, Any]]) -> list[Point]:
    return [(float(r[X]), float(r[Y])) for r in rows]


def default_levels(rows: Sequence[dict[str, Any]]) -> list[float]:
    """Iso-interactivity levels when none are asked for: the GB300/GB200 study's levels that
    fall inside the measured interactivity range; when fewer than two do (a CPU demo runs at
    hundreds of tok/s/user), five levels evenly spread over that range, rounded to 2
    significant digits (a single measured x is its own level). Empty when nothing is plottable."""
    xs = [float(r[X]) for r in plottable(rows)]
    if not xs:
        return []
    lo, hi = min(xs), max(xs)
    inside = [lv for lv in DEFAULT_LEVELS if lo <= lv <= hi]
    if len(inside) >= 2 or lo == hi:
        return inside or [lo]
    out = []
    for i in range(5):
        v = float(f"{lo + (hi - lo) * (i + 0.5) / 5:.2g}")
        if lo <= v <= hi and v not in out:
            out.append(v)
    return out


def default_ratio(groups: dict[Any, dict[str, list[dict[str, Any]]]]) -> tuple[str, str] | None:
    """(numerator, denominator): the curves with the highest and the lowest peak tok/s/GPU."""
    peak: dict[str, float] = {}
    for cs in groups.values():
        for name, rs in cs.items():
            peak[name] = max(peak.get(name, float("-inf")), *(float(r[Y]) for r in rs))
    if len(peak) < 2:
        return None
    ranked = sorted(peak, key=lambda n: (-peak[n], n))
    return ranked[0], ranked[-1]


def iso_rows(rows: Sequence[dict[str, Any]], levels: Sequence[float] = DEFAULT_LEVELS,
             pair: tuple[str, str] | None = None,
             space: str = DEFAULT_SPACE) -> tuple[list[str], list[list[Any]], tuple[str, str] | None]:
    """The iso-interactivity table: (curve names, rows, ratio pair).

    Each row is ``[model, "in/out", level, y(curve 1), ..., y(curve n), ratio]`` where a y is
    a float, ``"unreachable"`` (level outside that curve's measured range), or None (the curve
    has no points for this model and context); ratio is ``y(pair[0]) / y(pair[1])`` or None.
    """
    groups = curves(rows)
    names = sorted({n for cs in groups.values() for n in cs})
    pair = pair or default_ratio(groups)
    table = []
    for (model, il, ol), cs in groups.items():
        vals = {n: iso(xy(rs), levels, space) for n, rs in cs.items()}
        for i, lv in enumerate(levels):
            cells: list[Any] = [model, f"{il}/{ol}", lv]
            for n in names:
                cells.append(None if n not in vals else ("unreachable" if vals[n][i] is None else vals[n][i]))
            r = None
            if pair and pair[0] in vals and pair[1] in vals:
                r = ratio(vals[pair[0]][i], vals[pair[1]][i])
            table.append([*cells, r])
    return names, table, pair
