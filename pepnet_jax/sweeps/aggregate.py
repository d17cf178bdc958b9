"""Sweep results: one row per configuration, mean ± std over seeds, and plots. This module
writes the tables and runs the command; the rows are ``aggregate_rows.py``, the plots
``aggregate_plots.py``.

  python -m pepnet_jax.aggregate SWEEP_DIR [--out DIR]

Reads every ``SWEEP_DIR/*/report.json``. A run's overrides come from
``sweep.json`` (written by ``pepnet_jax.sweeps.cli``); without it, from the fields
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
import math
import os
import sys
from typing import Sequence

from pepnet_jax.training.selection import tasks_with_positives  # noqa: F401  (benchmarks/run_compare.py)
from pepnet_jax.sweeps import common
from pepnet_jax.sweeps.aggregate_rows import (  # noqa: F401  (the public names re-exported)
    SEED_FIELDS, Run, Row, load_runs, JUDGED, run_metrics, judged_tasks, _stats, summarize,
    paired, add_search, _columns, _varying, _field_str, _tasks_domains)
from pepnet_jax.sweeps.aggregate_plots import (  # noqa: F401  (the public names re-exported)
    plot_means, plot_paired, plot_per_task, curve_field, plot_curve, plot_all)

__all__ = ['Run', 'Row', 'load_runs', 'run_metrics', 'summarize', 'write_csv', 'write_markdown',
           'plot_all', 'aggregate', 'main']


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


def _csv_num(x: float) -> str:
  return '' if not math.isfinite(x) else f'{float(x):.10g}'  # drops float noise like ...0001


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
