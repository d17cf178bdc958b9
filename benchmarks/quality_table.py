"""The quality table of experiments/quality.py: each model's test AUC per task
beside the ceiling, and the share of the ceiling's AUC lift over 0.5 it reaches.

  python benchmarks/quality_table.py DIR [DIR ...] [--out DIR]

Each DIR is a run's workdir or a sweep directory (then every finished point in it).
Reads each run's report.json and the generator's truth files (through
pepnet_jax.evaluation.oracle), prints a markdown table and saves it with the figures as
quality.md and quality.json in --out (default: the first DIR). A run's wall time is
the sweep's record of it, or else the time from its config.json (written when it
starts) to its report.json (its last act).
"""

import argparse
import json
import os

from pepnet_jax.evaluation import oracle


def _runs(dirs):
  """(name, workdir, wall seconds or None) of every finished run under ``dirs``."""
  for d in dirs:
    if os.path.exists(os.path.join(d, 'report.json')):
      wall = (os.path.getmtime(os.path.join(d, 'report.json'))
              - os.path.getmtime(os.path.join(d, 'config.json')))
      yield os.path.basename(os.path.normpath(d)), d, wall
      continue
    status = json.load(open(os.path.join(d, 'sweep.json')))
    elapsed = {p['name']: p.get('elapsed_s') for p in status.get('points', [])}
    for name in sorted(os.listdir(d)):
      if os.path.exists(os.path.join(d, name, 'report.json')):
        yield name, os.path.join(d, name), elapsed.get(name)


def main(dirs, out_dir=None):
  models, ceiling, positives, meta = {}, {}, {}, {}
  for name, wd, wall in _runs(dirs):
    out = oracle.compare(wd)
    rep = json.load(open(os.path.join(wd, 'report.json')))
    rows = [r for r in out['table'] if r['domain'] == 'all']
    models[name] = {r['task']: r['model_auc'] for r in rows}
    ceiling.update({r['task']: r['oracle_auc'] for r in rows})
    positives.update({t: v.get('positives') for t, v in rep['overall'].items()})
    sel = rep.get('selected') or {}
    meta[name] = dict(step=rep.get('step'), stopped_at=sel.get('stopped_at'),
                      wall_s=wall, generator_version=out['generator_version'])
  if not models:
    raise SystemExit(f'no finished run in {", ".join(dirs)}')
  tasks = list(ceiling)
  names = list(models)
  lines = ['| task | test positives | ' + ' | '.join(f'{n} AUC' for n in names)
           + ' | ceiling | ' + ' | '.join(f'{n} lift share' for n in names) + ' |',
           '|---' * (3 + 2 * len(names)) + '|']
  shares = {n: [] for n in names}
  for t in tasks:
    s = {n: oracle.lift_share(models[n][t], ceiling[t]) for n in names}
    for n in names:
      if s[n] is not None:
        shares[n].append(s[n])
    fmt = lambda x: '-' if x is None else f'{x:.4f}'
    lines.append(f'| {t} | {positives.get(t)} | ' + ' | '.join(fmt(models[n][t]) for n in names)
                 + f' | {fmt(ceiling[t])} | ' + ' | '.join(fmt(s[n]) for n in names) + ' |')
  lines.append('| mean | | ' + ' | '.join(
      f'{sum(models[n][t] for t in tasks) / len(tasks):.4f}' for n in names) + ' | '
      f'{sum(ceiling.values()) / len(tasks):.4f} | ' + ' | '.join(
          f'{sum(shares[n]) / max(len(shares[n]), 1):.3f}' for n in names) + ' |')
  lines.append('')
  for n in names:
    m = meta[n]
    lines.append(f'- {n}: report from step {m["step"]}'
                 + (f', stopped early at step {m["stopped_at"]}' if m['stopped_at'] else '')
                 + (f', {m["wall_s"] / 60:.1f} min' if m['wall_s'] else '')
                 + f', generator v{m["generator_version"]}')
  text = '\n'.join(lines)
  print(text)
  out_dir = out_dir or dirs[0]
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'quality.md'), 'w') as f:
    f.write(text + '\n')
  with open(os.path.join(out_dir, 'quality.json'), 'w') as f:
    json.dump(dict(models=models, ceiling=ceiling, positives=positives, meta=meta), f, indent=1)


if __name__ == '__main__':
  ap = argparse.ArgumentParser(description=__doc__,
                               formatter_class=argparse.RawDescriptionHelpFormatter)
  ap.add_argument('dirs', nargs='+', help='run workdirs and/or sweep directories')
  ap.add_argument('--out', default=None, help='where quality.md / quality.json go')
  a = ap.parse_args()
  main(a.dirs, a.out)
