"""Sweep results: one row per configuration, mean ± std over seeds, and plots.

  python -m pepnet_jax.aggregate SWEEP_DIR [--out DIR]

Reads every ``SWEEP_DIR/*/report.json``. A run's overrides come from
``sweep.json`` (written by ``pepnet_jax.sweep``); without it, from the fields
whose values differ between the runs' ``config.json``; without those, from
the directory name. Runs that differ only by seed (``train.seed`` /
``data.seed``) form one configuration. Writes into ``--out`` (default
SWEEP_DIR):

  results.csv            one row per configuration: its varying fields,
                         ``n_seeds``, ``seeds``, then for every metric ``<m>``
                         (mean over seeds) and ``<m>_std``. Metrics:
                         ``mean_auc``, ``mean_gauc``, ``mean_logloss`` (each run's
                         mean over tasks), ``auc/<task>``, ``gauc/<task>`` and
                         ``auc/<task>/domain_<d>``, ``gauc/<task>/domain_<d>``.
  results.md             the same as README-ready tables, ``mean ± std`` with
                         4 decimals, best mean per column in bold.
  mean_auc_gauc.png      bars per configuration, std error bars.
  gauc_per_task.png      per-task GAUC, bars grouped by task.
  curve_<field>.png      only when exactly one numeric field varies (a list-valued
                         field such as model.tower counts by its length): mean AUC /
                         GAUC vs that field with ±std bands (one line per
                         combination of any other varying fields).

A search's directory (``sweep --search``) also has ``search.json``: then
results.csv gets ``search_<metric>`` (the trial's validation value, mean and
std over seeds) and results.md a "Search" table of the trials, best first.

The std is the sample standard deviation (ddof=1) over seeds, the usual
estimate of run-to-run spread; with one seed it is empty. Missing metrics
(null in report.json, e.g. a task without positives) are left out of both.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import re
import sys
from typing import Sequence

import numpy as np

from pepnet_jax import configs
from pepnet_jax.selection import tasks_with_positives
from pepnet_jax.sweeps import common

__all__ = ['Run', 'Row', 'load_runs', 'run_metrics', 'summarize', 'write_csv', 'write_markdown',
           'plot_all', 'aggregate', 'main']

SEED_FIELDS = common.SEED_FIELDS
_SEED_SUFFIX = re.compile(r'(^|,)seed=(-?\d+)$')


class Run:
  """One finished run: its report, overrides (seeds excluded) and seed."""

  def __init__(self, name, config_name, overrides, seed, report, config=None):
    self.name, self.config_name, self.overrides = name, config_name, overrides
    self.seed, self.report, self.config = seed, report, config or {}


class Row:
  """One configuration: its fields and {metric: (mean, std, n)} over seeds."""

  def __init__(self, config_name, fields, runs, stats):
    self.config_name, self.fields, self.runs, self.stats = config_name, fields, runs, stats

  @property
  def seeds(self):
    return [r.seed for r in self.runs]


# ------------------------------------------------------------------ loading

def _hashable(v):
  if isinstance(v, list):
    return tuple(_hashable(x) for x in v)
  if isinstance(v, dict):
    return json.dumps(v, sort_keys=True)
  return v


def _flatten(d: dict) -> dict:
  return {k: _hashable(v) for k, v in configs.flat_fields(d).items()}


def load_runs(sweep_dir: str) -> list[Run]:
  """Every finished run under ``sweep_dir``, in sweep order when sweep.json exists."""
  names = sorted(d for d in os.listdir(sweep_dir)
                 if os.path.isfile(os.path.join(sweep_dir, d, common.REPORT)))
  declared = common.status_points(sweep_dir)
  if declared:  # sweep order; runs outside the declaration are stale, leave them out
    order = {n: i for i, n in enumerate(declared)}
    names = sorted((n for n in names if n in declared), key=order.get)
  cfgs = {n: common.read_json(os.path.join(sweep_dir, n, 'config.json')) for n in names}
  flat = {n: _flatten(c) for n, c in cfgs.items() if isinstance(c, dict)}
  varying = []
  if len(flat) == len(names) and names:
    keys = list(dict.fromkeys(k for f in flat.values() for k in f))
    varying = [k for k in keys if len({repr(f.get(k)) for f in flat.values()}) > 1
               and k not in SEED_FIELDS]
  runs = []
  for n in names:
    report = common.read_json(os.path.join(sweep_dir, n, common.REPORT))
    if not isinstance(report, dict):
      continue
    cfg = flat.get(n, {})
    if n in declared:
      p = declared[n]
      over = {k: _hashable(v) for k, v in (p.get('overrides') or {}).items()
              if k not in SEED_FIELDS}
      config_name, seed = p.get('config_name') or n, p.get('seed')
    elif varying:
      over = {k: cfg.get(k) for k in varying}
      seed = cfg.get('train.seed')
      config_name = common.point_name(over) if over else 'base'
    else:
      m = _SEED_SUFFIX.search(n)
      seed = int(m.group(2)) if m else cfg.get('train.seed')
      config_name = (n[:m.start()] or 'base') if m else n
      over = {}
    runs.append(Run(n, config_name, over, seed, report, cfg))
  return runs


JUDGED = 'mean_auc_judged'


def run_metrics(report: dict, judged: Sequence[str] = ()) -> dict[str, float]:
  """Flat metrics of one report.json: mean_*, auc/<task>, gauc/<task>/domain_<d>, ...;
  with ``judged`` tasks, also their mean AUC under JUDGED."""
  out = common.report_metrics(report)
  if judged:
    out[JUDGED] = float(np.mean([out.get(f'auc/{t}', math.nan) for t in judged]))
  return out


def judged_tasks(runs: Sequence[Run], min_positives: int) -> list[str]:
  """The tasks with at least ``min_positives`` positives in every run's evaluation split:
  an AUC on a few dozen positives moves by several hundredths from seed to seed and can
  decide a mean over tasks on its own."""
  return tasks_with_positives((run.report.get('overall') for run in runs), min_positives)


def _stats(values: Sequence[float]) -> tuple[float, float, int]:
  v = np.asarray([x for x in values if math.isfinite(x)], dtype=float)
  if not v.size:
    return math.nan, math.nan, 0
  return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else math.nan, int(v.size)


def summarize(runs: Sequence[Run], judged: Sequence[str] = ()) -> list[Row]:
  """Groups runs by configuration (seeds together), in first-seen order."""
  groups: dict[str, list[Run]] = {}
  for r in runs:
    groups.setdefault(r.config_name, []).append(r)
  fields = list(dict.fromkeys(k for r in runs for k in r.overrides if k != '_name'))
  rows = []
  for name, members in groups.items():
    per_run = [run_metrics(r.report, judged) for r in members]
    cols = list(dict.fromkeys(k for m in per_run for k in m))
    stats = {c: _stats([m.get(c, math.nan) for m in per_run]) for c in cols}
    vals = {}
    for f in fields:  # a field a point did not override has its config.json value
      v = members[0].overrides.get(f, members[0].config.get(f))
      vals[f] = v
    rows.append(Row(name, vals, members, stats))
  return rows


def paired(rows: Sequence[Row], baseline: str,
           judged: Sequence[str] = ()) -> list[tuple[Row, dict[str, list[float]]]]:
  """[(row, {metric: [row minus baseline, one per seed]})] for every row but ``baseline``,
  over the seeds both have. A seed fixes the data order and the initialisation for both
  runs, so the spread of these differences, not of each row alone, says whether a difference
  is more than seed noise."""
  named = {r.config_name: r for r in rows}
  if baseline not in named:
    raise ValueError(f'baseline {baseline!r}: no such configuration; have '
                   + ', '.join(named))
  by_seed = {run.seed: run_metrics(run.report, judged) for run in named[baseline].runs}
  out = []
  for r in rows:
    if r.config_name == baseline:
      continue
    diffs: dict[str, list[float]] = {}
    for run in r.runs:
      base = by_seed.get(run.seed)
      if base is None:
        continue
      for k, v in run_metrics(run.report, judged).items():
        if k != 'num_params' and k in base:
          diffs.setdefault(k, []).append(v - base[k])
    out.append((r, diffs))
  return out


def _paired_section(rows: Sequence[Row], baseline: str, tasks: Sequence[str],
                    judged: Sequence[str] = ()) -> list[str]:
  first = ('mean_auc', JUDGED) if judged else ('mean_auc',)
  keys = (*first, 'mean_gauc', 'mean_logloss', *[f'auc/{t}' for t in tasks])
  heads = ['ΔAUC'] + (['ΔAUC judged'] if judged else []) + ['ΔGAUC', 'Δlogloss'] \
      + [f'ΔAUC {t}' for t in tasks]
  lines = ['', f'## Paired with {baseline}', '',
           f'Configuration minus {baseline} on the same seed: mean ± sample standard deviation '
           f'over the seeds both have; "below" counts the seeds whose mean AUC'
           + (' over the judged tasks' if judged else '') + f" is below {baseline}'s.", '',
           '| configuration | seeds | below | ' + ' | '.join(heads) + ' |',
           '|---|---:|---:|' + '---:|' * len(keys)]
  for r, d in paired(rows, baseline, judged):
    auc = d.get(first[-1], [])
    below = sum(1 for x in auc if x < 0)
    cells = [_cell(_stats(d.get(k, []))) for k in keys]
    lines.append(f'| {r.config_name} | {len(auc)} | {below}/{len(auc)} | '
                 + ' | '.join(cells) + ' |')
  return lines


def add_search(rows: Sequence[Row], search: dict) -> str | None:
  """Puts each trial's search value (mean, std over its seeds) into its row
  as ``search_<metric>``; returns that column's name (None: not a search)."""
  trials = search.get('trials') if isinstance(search, dict) else None
  if not isinstance(trials, list):
    return None
  col = f'search_{search.get("metric") or "value"}'
  by_name = {t.get('name'): t for t in trials if isinstance(t, dict)}
  for r in rows:
    t = by_name.get(r.config_name)
    if t is not None:
      values = [common.num(v) for v in (t.get('values') or [])] or [common.num(t.get('value'))]
      r.stats[col] = _stats(values)
  return col


def _search_section(search: dict) -> list[str]:
  """The trials, best first, with their parameters and validation values."""
  metric, direction = search.get('metric'), search.get('direction', 'maximize')
  trials = [t for t in search.get('trials') or [] if isinstance(t, dict)]
  fields = list(dict.fromkeys(f for t in trials for f in (t.get('params') or {})))
  def key(t):
    v = common.num(t.get('value'))
    return (not math.isfinite(v), -v if direction == 'maximize' else v, t.get('number', 0))
  best = (search.get('best') or {}).get('name')
  lines = ['', f'## Search: validation {metric} ({direction})', '',
           f'{len(trials)} trials, {search.get("sampler")} sampler'
           + (f', best {best} in bold' if best else '')
           + '. Values are each trial\'s validation result (mean over its seeds); the tables '
           'above are the report split.', '',
           '| trial | value | status | ' + ' | '.join(fields) + ' |',
           '|---|---:|---|' + '---|' * len(fields)]
  for t in sorted(trials, key=key):
    v = common.num(t.get('value'))
    cell = f'{v:.4f}' if math.isfinite(v) else '-'
    name = t.get('name', '?')
    if name == best:
      cell, name = f'**{cell}**', f'**{name}**'
    params = t.get('params') or {}
    lines.append(f'| {name} | {cell} | {t.get("status", "?")} | '
                 + ' | '.join(_field_str(params.get(f)) or '-' for f in fields) + ' |')
  return lines


def _columns(rows: Sequence[Row]) -> list[str]:
  return list(dict.fromkeys(c for r in rows for c in r.stats))


def _varying(rows: Sequence[Row]) -> list[str]:
  fields = list(dict.fromkeys(f for r in rows for f in r.fields))
  return [f for f in fields if len({repr(r.fields.get(f)) for r in rows}) > 1] or fields


# ---------------------------------------------------------------- tables

def _csv_num(x: float) -> str:
  return '' if not math.isfinite(x) else f'{float(x):.10g}'  # drops float noise like ...0001


def _field_str(v) -> str:
  return '' if v is None else common.cli_value(v)


def write_csv(rows: Sequence[Row], path: str):
  fields = list(dict.fromkeys(f for r in rows for f in r.fields))
  cols = _columns(rows)
  with open(path, 'w', newline='') as f:
    w = csv.writer(f)
    w.writerow(['config', *fields, 'n_seeds', 'seeds', *(x for c in cols for x in (c, f'{c}_std'))])
    for r in rows:
      cells = [r.config_name, *(_field_str(r.fields.get(k)) for k in fields), len(r.runs),
               ' '.join(str(s) for s in r.seeds)]
      for c in cols:
        mean, std, _ = r.stats.get(c, (math.nan, math.nan, 0))
        cells += [_csv_num(mean), _csv_num(std)]
      w.writerow(cells)


def _cell(stat, best: bool = False, count: bool = False) -> str:
  mean, std, _ = stat
  if not math.isfinite(mean):
    return '-'
  if count:  # a count (the parameters): the same for every seed, no spread to show
    return f'{mean:,.0f}'
  s = f'{mean:.4f}' + (f' ± {std:.4f}' if math.isfinite(std) else '')
  return f'**{s}**' if best else s


def _md_table(rows: Sequence[Row], cols: Sequence[tuple[str, str]], lower_better=(),
              counts=()) -> list[str]:
  """Markdown rows; ``cols`` = [(metric key, header)]; ``counts`` are shown whole, never bold."""
  best = {}
  for key, _ in cols:
    if key in counts:
      continue
    means = [r.stats.get(key, (math.nan,))[0] for r in rows]
    finite = [m for m in means if math.isfinite(m)]
    if len(rows) > 1 and finite:
      best[key] = min(finite) if key in lower_better else max(finite)
  out = ['| configuration | seeds | ' + ' | '.join(h for _, h in cols) + ' |',
         '|---|---:|' + '---:|' * len(cols)]
  for r in rows:
    cells = []
    for key, _ in cols:
      st = r.stats.get(key, (math.nan, math.nan, 0))
      cells.append(_cell(st, key in best and st[0] == best[key], key in counts))
    out.append(f'| {r.config_name} | {len(r.runs)} | ' + ' | '.join(cells) + ' |')
  return out


def _tasks_domains(rows: Sequence[Row]) -> tuple[list[str], list[str]]:
  tasks, domains = [], []
  for c in _columns(rows):
    parts = c.split('/')
    if len(parts) >= 2 and parts[0] in ('auc', 'gauc'):
      tasks.append(parts[1])
      if len(parts) == 3 and parts[2].startswith('domain_'):
        domains.append(parts[2][len('domain_'):])
  return list(dict.fromkeys(tasks)), list(dict.fromkeys(domains))


def write_markdown(rows: Sequence[Row], path: str, title: str = 'Sweep results',
                   search: dict | None = None, baseline: str | None = None,
                   judged: Sequence[str] = (), min_positives: int | None = None):
  """``judged``: the tasks with at least ``min_positives`` positives in the split, whose
  mean AUC gets its own column (see judged_tasks)."""
  tasks, domains = _tasks_domains(rows)
  n_runs = sum(len(r.runs) for r in rows)
  splits = {str(run.report.get('split')) for r in rows for run in r.runs if run.report.get('split')}
  lines = [f'# {title}', '',
           f'{len(rows)} configurations, {n_runs} runs'
           + (f', {"/".join(sorted(splits))} split' if splits else '')
           + '. Cells are mean ± sample standard deviation (ddof=1) over seeds; '
           'the best mean per column is bold.'
           + (f' "AUC judged" is the mean AUC over the tasks with at least {min_positives} '
              f'positives in the split ({", ".join(judged)}).' if judged else ''), '',
           '## Mean over tasks', '',
           *_md_table(rows, [('mean_auc', 'AUC')]
                      + ([(JUDGED, 'AUC judged')] if judged else [])
                      + [('mean_gauc', 'GAUC'),
                             ('mean_logloss', 'logloss')]
                      + ([('num_params', 'parameters')] if 'num_params' in _columns(rows) else []),
                      lower_better={'mean_logloss'}, counts={'num_params'})]
  for m, label in (('auc', 'AUC'), ('gauc', 'GAUC')):
    lines += ['', f'## {label} per task (all domains)', '',
              *_md_table(rows, [(f'{m}/{t}', t) for t in tasks])]
  for d in domains:
    for m, label in (('gauc', 'GAUC'), ('auc', 'AUC')):
      lines += ['', f'## {label} per task, domain {d}', '',
                *_md_table(rows, [(f'{m}/{t}/domain_{d}', t) for t in tasks])]
  if baseline:
    lines += _paired_section(rows, baseline, tasks, judged)
  if isinstance(search, dict) and isinstance(search.get('trials'), list):
    lines += _search_section(search)
  field_rows = _varying(rows)
  if field_rows:
    lines += ['', '## Configurations', '',
              '| configuration | ' + ' | '.join(field_rows) + ' |',
              '|---|' + '---|' * len(field_rows)]
    lines += [f'| {r.config_name} | ' + ' | '.join(_field_str(r.fields.get(f)) or '-'
                                                   for f in field_rows) + ' |' for r in rows]
  with open(path, 'w') as f:
    f.write('\n'.join(lines) + '\n')


# ----------------------------------------------------------------- plots

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


def aggregate(sweep_dir: str, out: str | None = None, plots: bool = True,
              baseline: str | None = None, min_positives: int | None = None) -> dict[str, str]:
  """Writes results.csv, results.md (with differences paired by seed against the
  configuration named ``baseline``, and the mean AUC over tasks with at least
  ``min_positives`` positives, if given) and the plots; returns their paths."""
  runs = load_runs(sweep_dir)
  if not runs:
    raise FileNotFoundError(f'no finished runs (*/report.json) under {sweep_dir}')
  judged = judged_tasks(runs, min_positives) if min_positives else []
  rows = summarize(runs, judged)
  search = common.read_json(os.path.join(sweep_dir, common.SEARCH_JSON))
  add_search(rows, search)
  out = out or sweep_dir
  os.makedirs(out, exist_ok=True)
  paths = {'csv': os.path.join(out, 'results.csv'), 'md': os.path.join(out, 'results.md')}
  write_csv(rows, paths['csv'])
  title = f'Sweep results: {os.path.basename(os.path.abspath(sweep_dir))}'
  write_markdown(rows, paths['md'], title=title, search=search, baseline=baseline,
                 judged=judged, min_positives=min_positives)
  if plots:
    paths.update(plot_all(rows, out, baseline, judged))
  return paths


def main(argv: Sequence[str] | None = None) -> int:
  ap = argparse.ArgumentParser(prog='python -m pepnet_jax.aggregate',
                               description='Results table and plots of a sweep directory.')
  ap.add_argument('sweep_dir')
  ap.add_argument('--out', default=None, help='output folder (default: SWEEP_DIR)')
  ap.add_argument('--no_plots', action='store_true')
  ap.add_argument('--baseline', default=None, metavar='CONFIGURATION',
                  help='add each configuration minus this one, paired by seed '
                       '(e.g. pepnet for the ablations)')
  ap.add_argument('--min_positives', type=int, default=None, metavar='N',
                  help='add the mean AUC over the tasks with at least N positives in the '
                       'evaluation split (an AUC on fewer moves a lot from seed to seed)')
  args = ap.parse_args(argv)
  try:
    paths = aggregate(args.sweep_dir, args.out, plots=not args.no_plots,
                      baseline=args.baseline, min_positives=args.min_positives)
  except (FileNotFoundError, ValueError) as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  print('\n'.join(paths.values()))
  return 0


if __name__ == '__main__':
  sys.exit(main())
