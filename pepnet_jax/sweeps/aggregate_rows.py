"""Sweep results as rows: the runs of a sweep directory, grouped into configurations (runs
that differ only by seed), their metrics' mean and std over seeds, paired differences
against a baseline, and a search's trials (``aggregate.py`` describes the files written)."""

from __future__ import annotations

import json
import math
import os
import re
from typing import Sequence

import numpy as np

from pepnet_jax import configs
from pepnet_jax.training.selection import tasks_with_positives
from pepnet_jax.sweeps import common


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


def _columns(rows: Sequence[Row]) -> list[str]:
  return list(dict.fromkeys(c for r in rows for c in r.stats))


def _varying(rows: Sequence[Row]) -> list[str]:
  fields = list(dict.fromkeys(f for r in rows for f in r.fields))
  return [f for f in fields if len({repr(r.fields.get(f)) for r in rows}) > 1] or fields


def _field_str(v) -> str:
  return '' if v is None else common.cli_value(v)


def _tasks_domains(rows: Sequence[Row]) -> tuple[list[str], list[str]]:
  tasks, domains = [], []
  for c in _columns(rows):
    parts = c.split('/')
    if len(parts) >= 2 and parts[0] in ('auc', 'gauc'):
      tasks.append(parts[1])
      if len(parts) == 3 and parts[2].startswith('domain_'):
        domains.append(parts[2][len('domain_'):])
  return list(dict.fromkeys(tasks)), list(dict.fromkeys(domains))
