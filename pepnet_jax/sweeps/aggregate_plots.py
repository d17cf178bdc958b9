"""Plots of sweep results: means with std bars, paired differences, per-task GAUC, and the
metrics against the one numeric field that varies."""

from __future__ import annotations

import math
import os
from typing import Sequence

import numpy as np

from pepnet_jax.sweeps import common
from pepnet_jax.sweeps.aggregate_rows import JUDGED, Row, _field_str, _tasks_domains, paired


def _save(fig, path):
  # A bare Figure renders through Agg without pyplot: headless-safe, and the
  # global backend (a notebook's inline one) stays untouched.
  from matplotlib.backends.backend_agg import FigureCanvasAgg
  FigureCanvasAgg(fig)
  fig.savefig(path, dpi=110)


def _limits(means, stds, pad=0.15):
  lo = [m - (s if math.isfinite(s) else 0) for m, s in zip(means, stds) if math.isfinite(m)]
  hi = [m + (s if math.isfinite(s) else 0) for m, s in zip(means, stds) if math.isfinite(m)]
  if not lo:
    return 0.0, 1.0
  a, b = min(lo), max(hi)
  span = max(b - a, 0.01)
  return a - pad * span - 0.002, b + pad * span + 0.002


def _err(stds):
  return [s if math.isfinite(s) else 0.0 for s in stds]


def plot_means(rows: Sequence[Row], path: str):
  from matplotlib.figure import Figure
  names = [r.config_name for r in rows]
  width = max(7.0, 2 * (1.6 + 0.55 * len(rows)))
  fig = Figure(figsize=(width, 4.8), layout='constrained')
  axes = fig.subplots(1, 2)
  for ax, (key, label) in zip(axes, (('mean_auc', 'mean AUC'), ('mean_gauc', 'mean GAUC'))):
    means = [r.stats.get(key, (math.nan,))[0] for r in rows]
    stds = [r.stats.get(key, (math.nan, math.nan))[1] for r in rows]
    x = np.arange(len(rows))
    colors = [f'C{i % 10}' for i in range(len(rows))]
    ax.bar(x, np.nan_to_num(means), yerr=_err(stds), capsize=4, color=colors, alpha=0.85)
    ax.set_ylim(*_limits(means, stds))
    for xi, m, s in zip(x, means, _err(stds)):
      if math.isfinite(m):  # above the error bar so the two do not overlap
        ax.annotate(f'{m:.4f}', (xi, m + s), xytext=(0, 3), textcoords='offset points',
                    ha='center', va='bottom', fontsize=7)
    ax.set_xticks(x, names, rotation=30 if len(rows) > 2 else 0,
                  ha='right' if len(rows) > 2 else 'center', fontsize=8)
    ax.set_title(f'{label} (± std over seeds)', fontsize=10)
    ax.grid(axis='y', alpha=0.3)
  _save(fig, path)


def plot_paired(rows: Sequence[Row], baseline: str, path: str, judged: Sequence[str] = ()):
  """Each configuration minus ``baseline`` (mean AUC, and over the judged tasks if any),
  paired by seed: a dot per seed and the mean, so a difference inside seed noise shows."""
  from matplotlib.figure import Figure
  diffs = paired(rows, baseline, judged)
  keys = [('mean_auc', 'mean AUC, all tasks')]
  if judged:
    keys.append((JUDGED, f'mean AUC, {len(judged)} judged tasks'))
  fig = Figure(figsize=(4.2 * len(keys) + 1.5, 1.2 + 0.34 * len(diffs)), layout='constrained')
  axes = np.atleast_1d(fig.subplots(1, len(keys), sharey=True))
  y = np.arange(len(diffs))[::-1]
  for ax, (key, label) in zip(axes, keys):
    for yi, (_, d) in zip(y, diffs):
      v = d.get(key, [])
      if v:
        ax.scatter(v, [yi] * len(v), s=12, color='0.55', zorder=2)
        ax.scatter([np.mean(v)], [yi], s=40, marker='D',
                   color='C3' if np.mean(v) < 0 else 'C2', zorder=3)
    ax.axvline(0, color='k', lw=0.8)
    ax.set_title(f'{label}: configuration − {baseline}', fontsize=9)
    ax.grid(axis='x', alpha=0.3)
  axes[0].set_yticks(y, [r.config_name for r, _ in diffs], fontsize=8)
  _save(fig, path)


def plot_per_task(rows: Sequence[Row], path: str, metric: str = 'gauc'):
  from matplotlib.figure import Figure
  tasks, _ = _tasks_domains(rows)
  tasks = tasks or ['-']
  width = max(7.0, 1.5 + len(tasks) * (0.6 + 0.25 * len(rows)))
  fig = Figure(figsize=(width, 4.8), layout='constrained')
  ax = fig.subplots()
  bar = 0.8 / max(len(rows), 1)
  x = np.arange(len(tasks))
  all_m, all_s = [], []
  for i, r in enumerate(rows):
    means = [r.stats.get(f'{metric}/{t}', (math.nan,))[0] for t in tasks]
    stds = [r.stats.get(f'{metric}/{t}', (math.nan, math.nan))[1] for t in tasks]
    all_m += means
    all_s += stds
    ax.bar(x - 0.4 + bar * (i + 0.5), np.nan_to_num(means), bar, yerr=_err(stds), capsize=2,
           label=r.config_name, color=f'C{i % 10}', alpha=0.85)
  ax.set_ylim(*_limits(all_m, all_s, pad=0.08))
  ax.set_xticks(x, tasks, fontsize=9, rotation=20 if len(tasks) > 4 else 0,
                ha='right' if len(tasks) > 4 else 'center')
  ax.set_title(f'{metric.upper()} per task (all domains, ± std over seeds)', fontsize=10)
  ax.grid(axis='y', alpha=0.3)
  ax.legend(fontsize=7, ncols=1 if len(rows) < 8 else 2, loc='upper left',
            bbox_to_anchor=(1.0, 1.0))
  _save(fig, path)


def _is_number(v) -> bool:
  return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _curve_x(v) -> float | None:
  """Where a field value sits on a curve's x axis: a number, or a list's length
  (``model.tower`` widths plot against depth); None when it has no place."""
  if _is_number(v):
    return float(v)
  if isinstance(v, (list, tuple)) and v:
    return float(len(v))
  return None


def curve_field(rows: Sequence[Row]) -> str | None:
  """The one numeric (or list-valued) field the sweep varies, if exactly one does."""
  varying = [f for f in list(dict.fromkeys(f for r in rows for f in r.fields))
             if len({repr(r.fields.get(f)) for r in rows}) > 1]
  numeric = []
  for f in varying:
    vals = {repr(r.fields.get(f)): _curve_x(r.fields.get(f)) for r in rows}
    xs = list(vals.values())
    # distinct values must land on distinct x (two towers of one depth would not)
    if None not in xs and len(set(xs)) == len(xs):
      numeric.append(f)
  return numeric[0] if len(numeric) == 1 else None


def plot_curve(rows: Sequence[Row], field: str, path: str):
  from matplotlib.figure import Figure
  others = [f for f in dict.fromkeys(f for r in rows for f in r.fields)
            if f != field and len({repr(r.fields.get(f)) for r in rows}) > 1]
  series: dict[str, list[Row]] = {}
  for r in rows:
    label = ','.join(f'{f}={_field_str(r.fields.get(f))}' for f in others) or 'mean'
    series.setdefault(label, []).append(r)
  def x_of(r):
    return _curve_x(r.fields[field])
  xs = [x_of(r) for r in rows]
  by_length = not _is_number(rows[0].fields[field])
  x_label = f'len({field})' if by_length else field
  log_x = not by_length and min(xs) > 0 and max(xs) / min(xs) >= 100
  fig = Figure(figsize=(11, 4.5), layout='constrained')
  axes = fig.subplots(1, 2)
  for ax, (key, label) in zip(axes, (('mean_auc', 'mean AUC'), ('mean_gauc', 'mean GAUC'))):
    for i, (name, members) in enumerate(series.items()):
      members = sorted(members, key=x_of)
      x = np.array([x_of(r) for r in members])
      m = np.array([r.stats.get(key, (math.nan,))[0] for r in members])
      s = np.nan_to_num(np.array([r.stats.get(key, (math.nan, math.nan))[1] for r in members]))
      ax.plot(x, m, marker='o', color=f'C{i % 10}', label=name)
      ax.fill_between(x, m - s, m + s, color=f'C{i % 10}', alpha=0.2, linewidth=0)
    if log_x:
      ax.set_xscale('log')
    if by_length:
      ax.set_xticks(sorted(set(xs)))
    ax.set_xlabel(x_label)
    ax.set_title(f'{label} vs {x_label} (band: ± std over seeds)', fontsize=10)
    ax.grid(alpha=0.3)
    if len(series) > 1:
      ax.legend(fontsize=7)
  _save(fig, path)


def plot_all(rows: Sequence[Row], out: str, baseline: str | None = None,
             judged: Sequence[str] = ()) -> dict[str, str]:
  paths = {'bars': os.path.join(out, 'mean_auc_gauc.png'),
           'per_task': os.path.join(out, 'gauc_per_task.png')}
  plot_means(rows, paths['bars'])
  plot_per_task(rows, paths['per_task'])
  if baseline:
    paths['paired'] = os.path.join(out, f'paired_{common.safe(baseline)}.png')
    plot_paired(rows, baseline, paths['paired'], judged)
  field = curve_field(rows)
  if field is not None:
    paths['curve'] = os.path.join(out, f'curve_{common.safe(field)}.png')
    plot_curve(rows, field, paths['curve'])
  return paths
