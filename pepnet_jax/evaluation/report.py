"""Human-readable views of ``metrics.evaluate()`` results: table, JSON, PNG.

The table is what gets printed to logs, the JSON is what later analysis and
sweeps read back (nan becomes null so any strict JSON reader accepts it), and
the PNG gives the per-task x per-domain picture at a glance.  All functions
also accept results that went through JSON (None where nan was).
"""

from __future__ import annotations

import json
import math
import os
from typing import Any, Sequence

import numpy as np

__all__ = ["format_table", "to_jsonable", "save_report"]

ALL = "all"  # column / row label of the whole-dataset ("overall") numbers


def _num(v) -> float:
    """Metric value as float, nan for missing (None, absent, non-numeric)."""
    if v is None:
        return math.nan
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _fmt(v) -> str:
    if v is None:
        return "-"
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v))
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    f = _num(v)
    if math.isnan(f):
        return "-"
    if math.isinf(f):
        return "inf" if f > 0 else "-inf"
    return f"{f:.4f}"


def _sections(results) -> list[tuple[str, dict]]:
    """[('all', overall), (domain, metrics), ...] in results order."""
    out = [(ALL, results.get("overall", {}) or {})]
    out += [(str(d), m or {}) for d, m in (results.get("domains", {}) or {}).items()]
    return out


def _task_names(results) -> list[str]:
    names: list[str] = []
    for _, per_task in _sections(results):
        names += [t for t in per_task if t not in names]
    return names


def format_table(results, metrics: Sequence[str] = ("auc", "gauc", "logloss",
                                                   "positives", "impressions")) -> str:
    """Aligned plain-text table: one row per (domain, task), 'all' first.

    Floats get 4 decimals and nan shows as '-', so columns stay aligned and
    missing numbers are obvious; the last line is the mean over tasks.
    """
    header = ["domain", "task", *metrics]
    rows = []
    tasks = _task_names(results)
    for dom, per_task in _sections(results):
        for task in tasks:
            m = per_task.get(task)
            if m is None and dom != ALL:
                continue
            m = m or {}
            rows.append([dom, task, *(_fmt(m.get(k)) for k in metrics)])
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]

    def line(cells):
        left = [c.ljust(w) for c, w in zip(cells[:2], widths[:2])]
        right = [c.rjust(w) for c, w in zip(cells[2:], widths[2:])]
        return "  ".join(left + right).rstrip()

    out = [line(header), "  ".join("-" * w for w in widths)]
    prev = None
    for r in rows:
        if prev is not None and r[0] != prev:
            out.append("")
        out.append(line(r))
        prev = r[0]
    mean = results.get("mean", {}) or {}
    out.append("")
    out.append("mean over tasks (all): " + "  ".join(
        f"{label} {_fmt(mean.get(k))}" for k, label in
        (("auc", "AUC"), ("gauc", "GAUC"), ("logloss", "logloss"))))
    return "\n".join(out)


def to_jsonable(obj) -> Any:
    """Plain-Python copy of ``obj``: numpy scalars/arrays to Python, nan/inf to None."""
    if isinstance(obj, dict):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return to_jsonable(obj.item())
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    return obj


# --------------------------------------------------------------------- PNG

def _grid(results, key, tasks, cols) -> np.ndarray:
    sect = dict(_sections(results))
    return np.array([[_num((sect.get(c, {}).get(t) or {}).get(key)) for c in cols]
                     for t in tasks], dtype=float).reshape(len(tasks), len(cols))


def _heatmap(ax, fig, data, tasks, cols, title, cmap, norm, fmt, cbar_label):
    import matplotlib

    cm = matplotlib.colormaps[cmap].with_extremes(bad="#dddddd")
    im = ax.imshow(np.ma.masked_invalid(data), cmap=cm, norm=norm, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=30 if max(map(len, cols)) > 6 else 0,
                  ha="right" if max(map(len, cols)) > 6 else "center")
    ax.set_yticks(range(len(tasks)), tasks)
    ax.set_title(title, fontsize=11, fontweight="bold")
    ax.tick_params(length=0)
    ax.set_xticks(np.arange(-0.5, len(cols)), minor=True)
    ax.set_yticks(np.arange(-0.5, len(tasks)), minor=True)
    ax.grid(which="minor", color="white", linewidth=1.5)
    ax.tick_params(which="minor", length=0)
    ax.axvline(0.5, color="black", linewidth=1.5)  # separate 'all' from domains
    for spine in ax.spines.values():
        spine.set_visible(False)
    for i in range(data.shape[0]):
        for j in range(data.shape[1]):
            v = data[i, j]
            if math.isnan(v):
                ax.text(j, i, "-", ha="center", va="center", fontsize=11, color="#666666")
                continue
            r, g, b, _ = cm(norm(v))
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.55
            ax.text(j, i, fmt(v), ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
    cb = fig.colorbar(im, ax=ax, fraction=0.06, pad=0.03)
    cb.set_label(cbar_label, fontsize=8)
    cb.ax.tick_params(labelsize=8)


def _plot(results, path, title):
    # A bare Figure renders through the Agg canvas without pyplot, so this is
    # headless-safe and never switches the global backend (which would break
    # inline plots in a notebook that calls save_report).
    from matplotlib.colors import Normalize, TwoSlopeNorm
    from matplotlib.figure import Figure

    tasks = _task_names(results) or ["-"]
    cols = [c for c, _ in _sections(results)]
    auc = _grid(results, "auc", tasks, cols)
    gauc = _grid(results, "gauc", tasks, cols)
    # AUC and GAUC share one colour scale so the two panels compare directly.
    both = np.concatenate([auc.ravel(), gauc.ravel()])
    both = both[np.isfinite(both)]
    lo, hi = (float(both.min()), float(both.max())) if both.size else (0.5, 1.0)
    if hi - lo < 0.02:
        lo, hi = lo - 0.01, hi + 0.01
    rank_norm = Normalize(lo, hi)
    panels = [(auc, "AUC", "viridis", rank_norm, lambda v: f"{v:.3f}", "AUC"),
              (gauc, "GAUC (by user)", "viridis", rank_norm, lambda v: f"{v:.3f}", "GAUC")]

    pos_rate = _grid(results, "pos_rate", tasks, cols)
    mean_pred = _grid(results, "mean_pred", tasks, cols)
    with np.errstate(invalid="ignore", divide="ignore"):
        calib = mean_pred / pos_rate
    calib[~np.isfinite(calib)] = np.nan
    if np.isfinite(calib).any():
        finite = calib[np.isfinite(calib)]
        span = max(abs(float(finite.min()) - 1.0), abs(float(finite.max()) - 1.0), 0.05)
        norm = TwoSlopeNorm(vcenter=1.0, vmin=max(1.0 - span, 1e-3), vmax=1.0 + span)
        panels.append((calib, "Calibration: mean pred / pos rate", "RdBu_r", norm,
                       lambda v: f"{v:.2f}", "ratio (1 = calibrated)"))
    else:
        ll = _grid(results, "logloss", tasks, cols)
        finite = ll[np.isfinite(ll)]
        lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 1.0)
        if hi - lo < 1e-3:  # a flat range would give a meaningless offset colorbar
            lo, hi = lo - 0.005, hi + 0.005
        norm = Normalize(lo, hi)
        panels.append((ll, "Logloss (lower is better)", "magma_r", norm,
                       lambda v: f"{v:.4f}", "logloss"))

    cell_w = 0.95
    width = len(panels) * (cell_w * len(cols) + 2.2) + 0.5
    height = 0.45 * len(tasks) + 2.0
    fig = Figure(figsize=(width, height), layout="constrained")
    axes = fig.subplots(1, len(panels))
    for ax, (data, name, cmap, norm, fmt, cbl) in zip(np.atleast_1d(axes), panels):
        _heatmap(ax, fig, data, tasks, cols, name, cmap, norm, fmt, cbl)
    mean = results.get("mean", {}) or {}
    sub = "mean over tasks: " + "   ".join(
        f"{label} {_fmt(mean.get(k))}" for k, label in
        (("auc", "AUC"), ("gauc", "GAUC"), ("logloss", "logloss")))
    fig.suptitle(f"{title or 'Evaluation report'}\n{sub}", fontsize=12)
    fig.savefig(path, dpi=120)


def save_report(results, workdir, name: str = "report", title: str | None = None) -> dict:
    """Write ``{workdir}/{name}.json`` and ``{workdir}/{name}.png``; return their paths."""
    workdir = os.fspath(workdir)
    os.makedirs(workdir, exist_ok=True)
    json_path = os.path.join(workdir, f"{name}.json")
    png_path = os.path.join(workdir, f"{name}.png")
    with open(json_path, "w") as f:
        json.dump(to_jsonable(results), f, indent=2, allow_nan=False)
        f.write("\n")
    _plot(results, png_path, title)
    return {"json": json_path, "png": png_path}
