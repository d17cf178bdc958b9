"""The quality table of experiments/quality.py: each model's test AUC per task
beside the ceiling, and the share of the ceiling's AUC lift over 0.5 it reaches.

  python benchmarks/quality_table.py SWEEP_DIR

Reads every finished point of the sweep (report.json, the generator's truth
files through pepnet_jax.oracle), prints a markdown table and saves it with
the figures as SWEEP_DIR/quality.md and quality.json.
"""

import json
import os
import sys

from pepnet_jax import oracle


def main(sweep_dir: str):
  status = json.load(open(os.path.join(sweep_dir, 'sweep.json')))
  elapsed = {p['name']: p.get('elapsed_s') for p in status.get('points', [])}
  models, ceiling, positives, meta = {}, {}, {}, {}
  for name in sorted(os.listdir(sweep_dir)):
    wd = os.path.join(sweep_dir, name)
    if not os.path.exists(os.path.join(wd, 'report.json')):
      continue
    out = oracle.compare(wd)
    rep = json.load(open(os.path.join(wd, 'report.json')))
    rows = [r for r in out['table'] if r['domain'] == 'all']
    models[name] = {r['task']: r['model_auc'] for r in rows}
    ceiling.update({r['task']: r['oracle_auc'] for r in rows})
    positives.update({t: v.get('positives') for t, v in rep['overall'].items()})
    sel = rep.get('selected') or {}
    meta[name] = dict(step=rep.get('step'), stopped_at=sel.get('stopped_at'),
                      wall_s=elapsed.get(name), generator_version=out['generator_version'])
  if not models:
    raise SystemExit(f'no finished point in {sweep_dir}')
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
  with open(os.path.join(sweep_dir, 'quality.md'), 'w') as f:
    f.write(text + '\n')
  with open(os.path.join(sweep_dir, 'quality.json'), 'w') as f:
    json.dump(dict(models=models, ceiling=ceiling, positives=positives, meta=meta), f, indent=1)


if __name__ == '__main__':
  main(sys.argv[1])
