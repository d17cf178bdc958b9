"""How much of the generator's ceiling a model could identify from data of a given size.

  python benchmarks/generator_identifiability.py [--rows 700000] [--seed 0]

The ceiling AUC (docs/generator.md) scores rows with the generator's true probabilities, which
include every user's, video's and author's own random parameters. Some of them no finite log
reveals: a user seen 37 times with a follow rate of 0.002 shows no follow at all, so that
user's own follow propensity cannot be learned, whatever the model. This script rebuilds the
generator's world at KuaiRand-Pure's sizes (27,285 users, 7,583 videos, 6,510 authors), draws
test-period rows and labels, and scores them with the truth recomputed with one group of
per-entity parts removed (the same random draws, the part's weight set to 0):

  task_own   each entity's own per-task part of its propensities and task weights (what is
             left beyond the factor shared by the tasks, which the dense tasks reveal)
  taste_own  the user's, video's and author's own latent taste vectors (beyond the part
             carried by onehot_feat2 and the first tag)
  user_taste_own  the user's own taste vector alone (37 rows a user at Pure's size)
  task_and_taste_own  both of the first two

The share of the ceiling's lift over 0.5 kept without a part is what a model reaches if it
learns that part not at all and the rest perfectly. Prints a table and writes
docs/results/generator_identifiability.{json,md} (--out).

  python benchmarks/generator_identifiability.py --data DIR [--dates 20220429,20220508]

scores a generated folder's own rows in those dates (its test days by default) instead, with
the world rebuilt from the folder's generator_meta.json (checked against its truth files), so
the figures sit beside a run's test AUC on the same rows.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os

import numpy as np

from pepnet_jax.evaluation import oracle
from pepnet_jax import synth
from pepnet_jax.synth.exposures import _sample_rows
from pepnet_jax.synth.labels import _calibrate, _draw_labels
from pepnet_jax.synth import world as synth_world
from pepnet_jax.synth.world import _World
from pepnet_jax.evaluation.metrics import auc

TABS = synth.DEFAULT_TABS
SIZES = dict(users=synth.N_REAL_USERS, videos=synth.N_REAL_VIDEOS, authors=6510)
PARTS = {
    'task_own': dict(RHO_SHARED=np.sign(synth.RHO_SHARED), SIG_SCALE_OWN=0.0, RHO_K=1.0,
                     RHO_SCALE_AUTHOR=1.0),
    'taste_own': dict(P_OWN=0.0, Q_OWN=0.0, R_OWN=0.0),
    'user_taste_own': dict(P_OWN=0.0),
}
PARTS['task_and_taste_own'] = {**PARTS['task_own'], **PARTS['taste_own']}


@contextlib.contextmanager
def _constants(**values):
  """The latent world's constants (as ``synth.world`` reads them) set to ``values`` for the
  block (an analysis knob, not an API: every draw still happens, so the other parts stay
  identical)."""
  saved = {k: getattr(synth_world, k) for k in values}
  try:
    for k, v in values.items():
      setattr(synth_world, k, v)
    yield
  finally:
    for k, v in saved.items():
      setattr(synth_world, k, v)


def _world(seed: int, sizes: dict = SIZES, **values) -> _World:
  rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
  users = synth.make_users(rngs[0], sizes['users'])
  videos = synth.make_videos(rngs[1], sizes['videos'], sizes['authors'])
  with _constants(**values):
    return _World(rngs[2], users, videos)


def _truth(world, user, video, tab, hourmin, calib) -> dict:
  """The truth of every task for the rows, through the generator's own truth_from_latent."""
  tabs = [int(t) for t in np.unique(tab)]
  intercepts = {**calib, 'click': {str(int(k)): v for k, v in calib['click'].items()}}
  return synth.truth_from_latent(world.latent_arrays(tabs), intercepts, user, video, tab,
                                 hourmin)


def _score(seed, sizes, rows, labels, calib, world) -> dict:
  """Ceiling and per-part AUCs of ``rows`` (user, video, tab, hourmin) with their labels."""
  aucs = lambda p: {t: auc(labels[t], p[t]) for t in synth.TASKS}  # noqa: E731
  ceiling = aucs(_truth(world, *rows, calib))
  out = {'positives': {t: int(labels[t].sum()) for t in synth.TASKS}, 'ceiling': ceiling,
         'without': {}, 'share_kept': {}}
  for name, values in PARTS.items():
    a = aucs(_truth(_world(seed, sizes, **values), *rows, calib))
    out['without'][name] = a
    out['share_kept'][name] = {t: (a[t] - 0.5) / (ceiling[t] - 0.5) for t in synth.TASKS}
  out['mean_share_kept'] = {n: float(np.mean(list(s.values())))
                            for n, s in out['share_kept'].items()}
  return out


def measure(rows: int, seed: int) -> dict:
  """Fresh test-period rows at KuaiRand-Pure's sizes."""
  world = _world(seed)
  rng = np.random.default_rng(seed + 1)
  start, _ = synth.PERIODS['4_22_to_5_08']
  shares = {t: float(synth.TAB_STATS[t][0]) for t in TABS}
  sample = _sample_rows(rng, world, rows, start + dt.timedelta(days=7), 10, shares, False)
  calib = _calibrate([sample], [], {t: synth.TAB_STATS[t][1] for t in TABS}, {}, rng)
  _draw_labels(rng, sample, calib, world)
  out = _score(seed, SIZES, (sample.user, sample.video, sample.tab, sample.hourmin),
               sample.labels, calib, world)
  return {'rows': rows, 'seed': seed, 'generator_version': synth.GENERATOR_VERSION,
          'source': 'fresh test-period rows', **out}


def measure_folder(data_dir: str, dates: tuple[int, int]) -> dict:
  """The rows of a generated folder's standard logs in ``dates`` (inclusive), e.g. a run's
  test days, scored with the world rebuilt from the folder's arguments."""
  meta = json.load(open(os.path.join(data_dir, 'generator_meta.json')))
  args = meta['args']
  if args.get('generator_version') != synth.GENERATOR_VERSION:
    raise ValueError(f'{data_dir} was written by generator version {args.get("generator_version")}'
                     f', this is version {synth.GENERATOR_VERSION}: its world cannot be rebuilt')
  sizes = {k: args[k] for k in ('users', 'videos', 'authors')}
  df = oracle.logs_with_truth(data_dir, ['user_id', 'video_id', 'hourmin', *synth.TASKS],
                              dates)
  world = _world(args['seed'], sizes)
  rows = (df['user_id'].to_numpy(), df['video_id'].to_numpy(), df['tab'].to_numpy(),
          df['hourmin'].to_numpy())
  calib = meta['intercepts']
  rebuilt = _truth(world, *rows, calib)
  worst = max(float(np.abs(rebuilt[t] - df[f'p_{t}'].to_numpy()).max()) for t in synth.TASKS)
  if worst > 1e-6:  # the truth files are rounded to 8 decimals
    raise ValueError(f'{data_dir}: the rebuilt world does not reproduce truth/ (max diff '
                     f'{worst:.2g}); was it written by this code?')
  out = _score(args['seed'], sizes, rows, {t: df[t].to_numpy() for t in synth.TASKS}, calib,
               world)
  return {'rows': int(len(df)), 'seed': args['seed'], 'generator_version': args['generator_version'],
          'source': f'{data_dir}, dates {dates[0]}..{dates[1]}', **out}


def markdown(out: dict) -> str:
  names = list(PARTS)
  lines = [f"Generator v{out['generator_version']}, {out['source']}, {out['rows']:,} rows, "
           f"seed {out['seed']}: ceiling AUC, and the share of its lift over 0.5 kept when a "
           'group of per-entity parts is removed.', '',
           '| task | positives | ceiling | ' + ' | '.join(f'without {n}' for n in names) + ' |',
           '|---|---|---|' + '---|' * len(names)]
  for t in synth.TASKS:
    lines.append(f"| {t} | {out['positives'][t]:,} | {out['ceiling'][t]:.4f} | "
                 + ' | '.join(f"{out['without'][n][t]:.4f} ({out['share_kept'][n][t]:.2f})"
                              for n in names) + ' |')
  lines.append('| mean share kept | | | '
               + ' | '.join(f"{out['mean_share_kept'][n]:.2f}" for n in names) + ' |')
  return '\n'.join(lines) + '\n'


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__,
                              formatter_class=argparse.RawDescriptionHelpFormatter)
  p.add_argument('--rows', type=int, default=700_000,
                 help='test-period rows to draw (700,000: the test days of the 1M-row set)')
  p.add_argument('--seed', type=int, default=0)
  p.add_argument('--data', default=None,
                 help="a generated folder: score its own rows in --dates instead")
  p.add_argument('--dates', default='20220429,20220508',
                 help='with --data: first,last date (default: the test days)')
  p.add_argument('--out', default='docs/results/generator_identifiability')
  a = p.parse_args(argv)
  if a.data:
    lo, hi = (int(x) for x in a.dates.split(','))
    out = measure_folder(a.data, (lo, hi))
  else:
    out = measure(a.rows, a.seed)
  text = markdown(out)
  print(text)
  os.makedirs(os.path.dirname(a.out) or '.', exist_ok=True)
  with open(a.out + '.json', 'w') as f:
    json.dump(out, f, indent=1)
  with open(a.out + '.md', 'w') as f:
    f.write(text)


if __name__ == '__main__':
  main()
