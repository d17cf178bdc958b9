"""Model AUC beside the ceiling AUC, on generated KuaiRand-format data.

  python -m pepnet_jax.oracle --workdir DIR [--split test]

The generator (the ``synth`` package) writes the true probability of
every label of every log row to ``truth/<log file>``: the probability given
what a model can observe (ids, side features, tab, hour; no hidden row noise
since generator version 2). Scoring the split's rows with it gives the
ceiling: the best AUC a model can reach on them, up to sampling noise. This
reads the run's ``config.json`` and ``report.json``, selects the split's rows
as the reader does (dates and tabs), and prints, per task and per tab, the
model's AUC, the ceiling AUC, and the share of the ceiling's lift over 0.5
the model reaches, ``(model - 0.5) / (ceiling - 0.5)``: gaps in AUC points
are not comparable across tasks whose ceilings differ, this share is. Saves
``oracle_vs_model.json`` in the workdir.

  python -m pepnet_jax.oracle --workdir DIR --headroom

also says where the ceiling's lift comes from: the truth is recomputed from
the generator's latent tables (``truth/latent``) with one structure taken
out at a time (the user-item affinity, the per-user / per-author task weights
PPNet targets, the per-video / per-author propensities, the dependence on
the tab that EPNet targets), and each structure's share of the lift is
``(ceiling - ceiling without it) / (ceiling - 0.5)``. A model that cannot
learn a structure from the data at hand gives up about that share. Saves
``oracle_headroom.json``.
"""

from __future__ import annotations

import argparse
import glob
import json
import os

import numpy as np
import pandas as pd

from pepnet_jax.evaluation import metrics


def logs_with_truth(data_dir: str, columns, dates: tuple[int, int], tabs=None):
  """The standard-log rows of a generated folder in ``dates`` (inclusive; and ``tabs`` if
  given), their ``columns`` beside the truth file's p_<task> columns, as one frame."""
  lo, hi = int(dates[0]), int(dates[1])
  frames = []
  for log in sorted(glob.glob(os.path.join(data_dir, 'log_standard_*.csv'))):
    truth = os.path.join(data_dir, 'truth', os.path.basename(log))
    if not os.path.exists(truth):
      raise FileNotFoundError(f'{truth}: no truth file (only generated data has one)')
    f = pd.read_csv(log, usecols=list(dict.fromkeys(['date', 'tab', *columns])))
    t = pd.read_csv(truth)
    if len(t) != len(f):
      raise ValueError(f'{truth} has {len(t)} rows, {log} has {len(f)}')
    keep = f['date'].between(lo, hi)
    if tabs is not None:
      keep &= f['tab'].isin(list(tabs))
    frames.append(pd.concat([f[keep].reset_index(drop=True),
                             t[keep.to_numpy()].reset_index(drop=True)], axis=1))
  df = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
  if not len(df):
    where = f' and tabs {list(tabs)}' if tabs is not None else ''
    raise ValueError(f'{data_dir}: no standard-log rows in dates {lo}..{hi}{where}')
  return df


def oracle_auc(data_dir: str, split: tuple[str, str], tabs, tasks) -> dict:
  """{'all': {task: auc}, '<tab>': {...}} of the truth probabilities on a split: the
  ceiling AUCs (reported under the key 'oracle_auc')."""
  df = logs_with_truth(data_dir, tasks, split, tabs)
  out = {'all': {}, 'rows': int(len(df))}
  for task in tasks:
    out['all'][task] = metrics.auc(df[task].to_numpy(), df[f'p_{task}'].to_numpy())
  for tab in tabs:
    sub = df[df['tab'] == tab]
    out[str(tab)] = {task: metrics.auc(sub[task].to_numpy(), sub[f'p_{task}'].to_numpy())
                     for task in tasks}
  return out


def lift_share(model_auc, ceiling_auc):
  """(model - 0.5) / (ceiling - 0.5); None when undefined (no AUC, or no lift to share)."""
  if model_auc is None or ceiling_auc is None or not np.isfinite(model_auc) \
      or not np.isfinite(ceiling_auc) or ceiling_auc <= 0.5:
    return None
  return (model_auc - 0.5) / (ceiling_auc - 0.5)


def generator_version(data_dir: str) -> int:
  """Version of the generator that wrote data_dir (1: before it was recorded)."""
  try:
    with open(os.path.join(data_dir, 'generator_meta.json')) as f:
      return int(json.load(f).get('args', {}).get('generator_version', 1))
  except FileNotFoundError:
    return 1


def run_data(data: dict, workdir: str) -> tuple[list, list, dict, str]:
  """(tasks, tabs, splits, data directory) of a run's config.json data section, old
  (data.tabs, explicit KuaiRand values) or new (data.domains; empty fields = the format's
  defaults), resolved by ``data.resolve`` like the run's own."""
  from pepnet_jax.data.resolve import resolve
  resolved = resolve(dict(data, format=data.get('format') or 'kuairand'),  # generated: KuaiRand
                     workdir)
  return (list(resolved.spec.tasks), [int(t) for t in resolved.spec.domains],
          dict(resolved.splits), resolved.dir)


def compare(workdir: str, split: str | None = None, report: str | None = None) -> dict:
  cfg = json.load(open(os.path.join(workdir, 'config.json')))
  rep = json.load(open(report or os.path.join(workdir, 'report.json')))
  split = split or rep.get('split', 'test')
  tasks, tabs, splits, data_dir = run_data(cfg['data'], workdir)
  if split not in splits:
    raise ValueError(f'--split={split!r}: the run has splits {sorted(splits)}')
  orc = oracle_auc(data_dir, splits[split], tabs, tasks)
  rows = []
  for dom in ['all'] + [str(t) for t in tabs]:
    model = rep['overall'] if dom == 'all' else rep['domains'][dom]
    for task in tasks:
      m, o = model[task]['auc'], orc[dom][task]
      rows.append({'domain': dom, 'task': task, 'model_auc': m, 'oracle_auc': o,
                   'gap': None if m is None or o is None else o - m,
                   'lift_share': lift_share(m, o)})
  out = {'split': split, 'rows': orc['rows'], 'generator_version': generator_version(data_dir),
         'table': rows}
  if out['generator_version'] < 2:
    out['warning'] = (f'{data_dir} comes from generator version {out["generator_version"]}: '
                      'its truth includes row noise no model can see, so its "ceiling" is '
                      'not reachable; regenerate the data for an attainable one')
  with open(os.path.join(workdir, 'oracle_vs_model.json'), 'w') as f:
    json.dump(out, f, indent=2, default=lambda x: None)
  return out


# Structures of the generator's logit (docs/generator.md), each taken out by editing the
# latent tables: (what it is, how it is removed).
STRUCTURES = {
    'affinity': 'user-item latent affinity P.G_tab.(Q+R), in a per-tab subspace',
    'task_weights': 'per-user and per-author task weights mU, kU, mA (what PPNet targets)',
    'item_propensity': 'per-video and per-author task propensities BV, BA',
    'tab': 'every per-tab coefficient (lambdas, gates, tab effects) but the click intercepts '
           '(what EPNet targets)',
}


def _without(latent: dict, structure: str) -> dict:
  lat = dict(latent)
  mean_over = lambda name, axis: np.broadcast_to(lat[name].mean(axis=axis, keepdims=True),
                                                 lat[name].shape)
  if structure == 'affinity':
    lat['w_aff'] = np.zeros_like(lat['w_aff'])
  elif structure == 'task_weights':
    for name in ('m_user', 'k_user', 'm_item'):
      lat[name] = mean_over(name, 0)
  elif structure == 'item_propensity':
    lat['item_prop'] = np.zeros_like(lat['item_prop'])
  elif structure == 'tab':
    for name in ('user_part', 'item_rest', 'item_prop'):
      lat[name] = mean_over(name, 1)
    for name in ('gates', 'lam_aff'):
      lat[name] = mean_over(name, 0)
  else:
    raise ValueError(f'unknown structure {structure!r}; known: {list(STRUCTURES)}')
  return lat


def headroom(workdir: str, split: str | None = None, report: str | None = None) -> dict:
  """Per task: the ceiling, the ceiling without each structure (STRUCTURES), the share of the
  ceiling's lift each carries, and the model's AUC and share."""
  from pepnet_jax import synth
  cfg = json.load(open(os.path.join(workdir, 'config.json')))
  rep = json.load(open(report or os.path.join(workdir, 'report.json')))
  split = split or rep.get('split', 'test')
  tasks, tabs, splits, data_dir = run_data(cfg['data'], workdir)
  if generator_version(data_dir) < 2:
    raise ValueError(f'{data_dir}: --headroom needs generator version 2 or later (latent tables)')
  lo, hi = (int(x) for x in splits[split])
  latent = synth.load_latent(data_dir)
  intercepts = json.load(open(os.path.join(data_dir, 'generator_meta.json')))['intercepts']
  cols = ['user_id', 'video_id', 'date', 'hourmin', 'tab', 'is_rand', *tasks]
  frames = [f[f['date'].between(lo, hi) & f['tab'].isin(tabs)]
            for f in (pd.read_csv(p, usecols=cols)
                      for p in sorted(glob.glob(os.path.join(data_dir, 'log_standard_*.csv'))))]
  df = pd.concat(frames, ignore_index=True)
  if not len(df):
    raise ValueError(f'no rows in dates {lo}..{hi} and tabs {tabs}')
  args = (df['user_id'].to_numpy(), df['video_id'].to_numpy(), df['tab'].to_numpy(),
          df['hourmin'].to_numpy())

  def aucs(lat):
    p = synth.truth_from_latent(lat, intercepts, *args)
    return {t: metrics.auc(df[t].to_numpy(), p[t]) for t in tasks}
  ceiling = aucs(latent)
  without = {s: aucs(_without(latent, s)) for s in STRUCTURES}
  rows = []
  for t in tasks:
    c, m = ceiling[t], rep['overall'][t]['auc']
    row = {'task': t, 'ceiling': c, 'model_auc': m, 'model_share': lift_share(m, c)}
    for s in STRUCTURES:
      row[f'without_{s}'] = without[s][t]
      row[f'share_{s}'] = None if lift_share(without[s][t], c) is None else \
          1.0 - lift_share(without[s][t], c)
    rows.append(row)
  out = {'split': split, 'rows': int(len(df)), 'structures': STRUCTURES, 'table': rows}
  with open(os.path.join(workdir, 'oracle_headroom.json'), 'w') as f:
    json.dump(out, f, indent=2, default=lambda x: None)
  return out


def format_headroom(out: dict) -> str:
  fmt = lambda v: '-' if v is None or (isinstance(v, float) and np.isnan(v)) else f'{v:.2f}'
  names = list(out['structures'])
  lines = [f'{out["split"]} split, {out["rows"]:,} rows: share of the ceiling\'s AUC lift over '
           '0.5 that each structure carries (the truth recomputed without it), and the '
           "model's share",
           f'{"task":12} {"ceiling":>8} ' + ' '.join(f'{n:>15}' for n in names) + f' {"model":>8}']
  for r in out['table']:
    lines.append(f'{r["task"]:12} {r["ceiling"]:8.4f} '
                 + ' '.join(f'{fmt(r[f"share_{n}"]):>15}' for n in names)
                 + f' {fmt(r["model_share"]):>8}')
  lines += [f'  {n}: {d}' for n, d in out['structures'].items()]
  return '\n'.join(lines)


def format_comparison(out: dict) -> str:
  fmt = lambda v: '-' if v is None or (isinstance(v, float) and np.isnan(v)) else f'{v:.4f}'
  lines = [f'warning: {out["warning"]}'] if out.get('warning') else []
  lines += [f'{out["split"]} split, {out["rows"]:,} rows: model AUC vs ceiling AUC (truth '
            'file); share = (model - 0.5) / (ceiling - 0.5)',
            f'{"domain":8} {"task":12} {"model":>8} {"ceiling":>8} {"gap":>8} {"share":>8}']
  for r in out['table']:
    lines.append(f'{r["domain"]:8} {r["task"]:12} {fmt(r["model_auc"]):>8} '
                 f'{fmt(r["oracle_auc"]):>8} {fmt(r["gap"]):>8} {fmt(r.get("lift_share")):>8}')
  return '\n'.join(lines)


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--workdir', required=True)
  p.add_argument('--split', default=None)
  p.add_argument('--report', default=None, help='report JSON (default: <workdir>/report.json)')
  p.add_argument('--headroom', action='store_true',
                 help="also show the share of the ceiling's lift each structure carries")
  a = p.parse_args(argv)
  out = compare(a.workdir, a.split, a.report)
  print(format_comparison(out))
  if a.headroom:
    out['headroom'] = headroom(a.workdir, a.split, a.report)
    print()
    print(format_headroom(out['headroom']))
  return out


if __name__ == '__main__':
  main()
