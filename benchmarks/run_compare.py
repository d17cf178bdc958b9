"""Runs experiments/compare.py's tuned comparison end to end, resumable across machines.

  python benchmarks/run_compare.py [--parallel 2] [--only-search] [--only REGEX]

1. Each model's random search (experiments/compare.py get_search), `--parallel` models at a
   time, into sweeps/compare_search/<model>.
2. The 3-seed sweep of every model with its best trial's settings, into sweeps/compare;
   its results.{csv,md} and charts go to docs/results/compare_v3/, the table with every model
   minus PEPNet paired by seed and the mean AUC over the tasks with at least 100 test
   positives (`python -m pepnet_jax.aggregate sweeps/compare --baseline pepnet
   --min_positives 100` redoes it). A
   model's seed-0 run is its best trial itself (same config: the search ran seed 0), so
   selection on the validation days and the test report share that run, as usual.

Every finished run's small files (config.json, report.json, metrics.jsonl) and each
search.json are copied to docs/results/compare_v3/runs/ as soon as its sweep returns, and put
back into sweeps/ (never over a file already there) before anything runs. A run is finished
when its report.json exists, so a fresh checkout that has those files skips every finished
run and trial and goes on with the rest: the whole comparison (33 search trials, then 40 more runs) need not fit
one sitting. The sweeps' own stale-point check still refuses a kept run whose config no
longer matches its point.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import glob
import importlib.util
import json
import os
import shutil
import subprocess
import sys

from pepnet_jax.sweeps import aggregate
from pepnet_jax.sweeps import common

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXPERIMENT = 'experiments/compare.py'
KEEP = 'docs/results/compare_v3/runs'
RESULTS = 'docs/results/compare_v3'
SMALL_FILES = ('config.json', 'report.json', 'metrics.jsonl')
MIN_POSITIVES = 100  # the bar for a task to be judged


def _experiment():
  spec = importlib.util.spec_from_file_location('compare_experiment',
                                                os.path.join(ROOT, EXPERIMENT))
  mod = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(mod)
  return mod


def restore() -> int:
  """Kept files back into sweeps/ (existing files win). Returns how many were copied."""
  n = 0
  for src in glob.glob(os.path.join(KEEP, '**', '*'), recursive=True):
    if os.path.isfile(src):
      dst = os.path.join('sweeps', os.path.relpath(src, KEEP))
      if not os.path.exists(dst):
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        shutil.copy2(src, dst)
        n += 1
  return n


def keep(sweep_dir: str) -> int:
  """The finished runs' small files (and search.json) of a sweep directory into KEEP."""
  n = 0
  rel = os.path.relpath(sweep_dir, 'sweeps')
  paths = glob.glob(os.path.join(sweep_dir, 'search.json'))
  for report in glob.glob(os.path.join(sweep_dir, '*', 'report.json')):
    paths += [os.path.join(os.path.dirname(report), f) for f in SMALL_FILES]
  for src in paths:
    if os.path.isfile(src):
      dst = os.path.join(KEEP, rel, os.path.relpath(src, sweep_dir))
      os.makedirs(os.path.dirname(dst), exist_ok=True)
      shutil.copy2(src, dst)
      n += 1
  return n


def reuse_best_trials(models) -> list[str]:
  """Each model's best search trial as its seed-0 run of the comparison: the same config
  (the trial ran seed 0 with those settings), so it is not trained twice. Copies its small
  files into sweeps/compare/<model>,seed=0 unless that run exists; returns the models."""
  reused = []
  for model in models:
    search = os.path.join('sweeps', 'compare_search', model, 'search.json')
    dst = os.path.join('sweeps', 'compare', f'{model},seed=0')
    if not os.path.exists(search) or os.path.exists(os.path.join(dst, 'report.json')):
      continue
    with open(search) as f:
      best = json.load(f).get('best') or {}
    src = os.path.join(os.path.dirname(search), str(best.get('name')))
    if not os.path.exists(os.path.join(src, 'report.json')):
      continue
    os.makedirs(dst, exist_ok=True)
    for name in SMALL_FILES:
      if os.path.exists(os.path.join(src, name)):
        shutil.copy2(os.path.join(src, name), os.path.join(dst, name))
    reused.append(model)
  return reused


def retire_stale(sweep_dir: str = 'sweeps/compare') -> list[str]:
  """Final runs made with settings their model's search no longer picks (a resumed search
  can change its best trial) are stale: the sweep would refuse them. Moves each to
  <sweep_dir>/.stale/ and drops its kept copy, so that it is run again; returns the names."""
  from pepnet_jax.sweeps import expand, run
  config = os.path.join(ROOT, EXPERIMENT)
  points = expand.expand_points(expand.load_sweep(config))
  changed = run.changed_points(expand.validate(config, points), sweep_dir)
  for name, fields in changed.items():
    print(f'stale: {name} ({", ".join(fields)} changed); running it again', flush=True)
    aside = os.path.join(sweep_dir, '.stale', name)
    shutil.rmtree(aside, ignore_errors=True)
    os.makedirs(os.path.dirname(aside), exist_ok=True)
    shutil.move(os.path.join(sweep_dir, name), aside)
    shutil.rmtree(os.path.join(KEEP, os.path.relpath(sweep_dir, 'sweeps'), name),
                  ignore_errors=True)
  return list(changed)


def sweep(args: list[str], log: str) -> int:
  cmd = [sys.executable, '-m', 'pepnet_jax.sweep', *args]
  print('$ ' + ' '.join(cmd) + f'  (log: {log})', flush=True)
  with open(log, 'a') as f:
    return subprocess.call(cmd, stdout=f, stderr=subprocess.STDOUT)


def search(model: str) -> int:
  workdir = os.path.join('sweeps', 'compare_search', model)
  os.makedirs(workdir, exist_ok=True)
  rc = sweep(['--config', f'{EXPERIMENT}:model={model}', '--workdir', workdir, '--search',
              '--parallel', '1'], os.path.join('sweeps', 'compare_search', f'{model}.log'))
  print(f'search {model}: exit {rc}; kept {keep(workdir)} files', flush=True)
  return rc


def search_summary(models, out: str | None = None) -> str:
  """A markdown table of each model's search on the validation days: every trial's best
  validation mean AUC over all tasks (what selected it) and over the tasks with at least
  MIN_POSITIVES validation positives, the step it came from and whether early stopping ended
  the trial. Written to ``out`` too, if given."""
  runs, searches = {}, {}
  for model in models:
    searches[model] = common.read_json(
        os.path.join('sweeps', 'compare_search', model, 'search.json')) or {}
    for report in sorted(glob.glob(os.path.join('sweeps', 'compare_search', model,
                                                'trial=*', 'report.json'))):
      with open(report) as f:
        runs.setdefault(model, []).append((os.path.basename(os.path.dirname(report)),
                                           json.load(f)))
  judged = aggregate.tasks_with_positives(
      (r['best_valid']['overall'] for trials in runs.values() for _, r in trials), MIN_POSITIVES)
  names = list(dict.fromkeys(n for trials in runs.values() for n, _ in trials))
  lines = ['| model | best | ' + ' | '.join(names) + ' |', '|---|---|' + '---|' * len(names)]
  for model, trials in runs.items():
    best = searches[model].get('best') or {}
    cells = ['-'] * len(names)
    for name, r in trials:
      bv, sel = r['best_valid'], r['selected']
      j = aggregate.run_metrics(bv, judged).get(aggregate.JUDGED, float('nan'))
      cells[names.index(name)] = (f"{bv['mean']['auc']:.4f} / {j:.4f} @ {sel['step']}"
                                  + ('' if sel.get('stopped_at') else ' (cap)'))
    lines.append(f'| {model} | {best.get("name", "-")} | ' + ' | '.join(cells) + ' |')
  groups = {}  # models whose trials had the same settings (same space, same sampler seed)
  for model in runs:
    trials = searches[model].get('trials') or []
    key = json.dumps({t.get('name'): t.get('params') for t in trials}, sort_keys=True)
    groups.setdefault(key, []).append(model)
  shown = []
  for key, members in groups.items():
    for name, prm in json.loads(key).items():
      shown.append(f'{name} ({", ".join(members)}): ' + ', '.join(
          f'{k} {v:.3g}' if isinstance(v, float) else f'{k} {v}' for k, v in (prm or {}).items()))
  text = ('Validation days, seed 0: each trial\'s best mean AUC over all tasks (the search '
          f'selects on it) / over the {len(judged)} tasks with at least {MIN_POSITIVES} '
          f'validation positives ({", ".join(judged)}), at the step early stopping kept; '
          '"(cap)": the epoch cap, not early stopping, ended the trial.\n\n'
          + '\n'.join(lines) + '\n'
          + ''.join(f'\n- {x}' for x in shown) + ('\n' if shown else ''))
  if out:
    with open(out, 'w') as f:
      f.write(text)
  return text


def main(argv=None) -> int:
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--parallel', type=int, default=2, help='runs at once (default 2)')
  p.add_argument('--only-search', action='store_true', help='stop after the searches')
  p.add_argument('--only', default=None, metavar='REGEX',
                 help="final runs whose name matches, e.g. '^pepnet' to finish PEPNet's "
                      'ablations (all seeds) before the baselines')
  a = p.parse_args(argv)
  os.chdir(ROOT)
  os.makedirs('sweeps/compare_search', exist_ok=True)
  print(f'restored {restore()} kept files from {KEEP}', flush=True)
  models = list(_experiment().MODELS)
  with concurrent.futures.ThreadPoolExecutor(max(1, a.parallel)) as pool:
    codes = dict(zip(models, pool.map(search, models)))
  failed = [m for m, rc in codes.items() if rc]
  if failed:
    print(f'error: the searches of {", ".join(failed)} failed (see their logs); '
          'rerun to continue', file=sys.stderr)
    return 1
  print(search_summary(models, os.path.join(RESULTS, 'searches.md')), flush=True)
  if a.only_search:
    return 0
  retire_stale()
  print(f'seed 0 of {", ".join(reuse_best_trials(models)) or "no model"} taken from the best '
        'search trial', flush=True)
  rc = sweep(['--config', EXPERIMENT, '--workdir', 'sweeps/compare', '--parallel',
              str(a.parallel), *(['--only', a.only] if a.only else [])], 'sweeps/compare.log')
  print(f'comparison: exit {rc}; kept {keep("sweeps/compare")} files', flush=True)
  # the table again, with every model minus PEPNet paired by seed, and the mean AUC over the
  # tasks with enough test positives to judge (is_hate has about 60 at this size)
  paths = aggregate.aggregate('sweeps/compare', out=RESULTS, baseline='pepnet',
                              min_positives=MIN_POSITIVES)
  print('results: ' + ', '.join(paths.values()), flush=True)
  return rc


if __name__ == '__main__':
  sys.exit(main())
