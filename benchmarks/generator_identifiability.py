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

The share of the ceiling's lift over 0.5 kept without a part bounds what a model can reach if
it learns nothing of that part. Prints a table and writes
docs/results/generator_identifiability.{json,md}.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os

import numpy as np

from pepnet_jax.data import kuairand_synth as synth
from pepnet_jax.metrics import auc

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
  """The generator's module constants set to ``values`` for the block (an analysis knob, not
  an API: every draw still happens, so the other parts stay identical)."""
  saved = {k: getattr(synth, k) for k in values}
  try:
    for k, v in values.items():
      setattr(synth, k, v)
    yield
  finally:
    for k, v in saved.items():
      setattr(synth, k, v)


def _world(seed: int, **values) -> synth._World:
  rngs = [np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)]
  users = synth.make_users(rngs[0], SIZES['users'])
  videos = synth.make_videos(rngs[1], SIZES['videos'], SIZES['authors'])
  with _constants(**values):
    return synth._World(rngs[2], users, videos)


def measure(rows: int, seed: int) -> dict:
  world = _world(seed)
  rng = np.random.default_rng(seed + 1)
  start, _ = synth.PERIODS['4_22_to_5_08']
  shares = {t: float(synth.TAB_STATS[t][0]) for t in TABS}
  sample = synth._sample_rows(rng, world, rows, start + dt.timedelta(days=7), 10, shares, False)
  calib = synth._calibrate([sample], [], {t: synth.TAB_STATS[t][1] for t in TABS}, {}, rng)
  synth._draw_labels(rng, sample, calib, world)
  labels = sample.labels
  hour = sample.hourmin // 100
  a_click = np.zeros(len(synth.TAB_STATS))
  for t, a in calib['click'].items():
    a_click[t] = a
  alpha = {k: calib[k] for k in synth.CHAIN}

  def aucs(w):
    base = w.logits(sample.user, sample.video, sample.tab, hour)
    p = synth._chain_marginals(a_click[sample.tab] + base[:, 0], base, alpha)
    return {t: auc(labels[t], p[t]) for t in synth.TASKS}

  ceiling = aucs(world)
  out = {'rows': rows, 'seed': seed, 'generator_version': synth.GENERATOR_VERSION,
         'positives': {t: int(labels[t].sum()) for t in synth.TASKS}, 'ceiling': ceiling,
         'without': {}, 'share_kept': {}}
  for name, values in PARTS.items():
    a = aucs(_world(seed, **values))
    out['without'][name] = a
    out['share_kept'][name] = {t: (a[t] - 0.5) / (ceiling[t] - 0.5) for t in synth.TASKS}
  out['mean_share_kept'] = {n: float(np.mean(list(s.values())))
                            for n, s in out['share_kept'].items()}
  return out


def markdown(out: dict) -> str:
  names = list(PARTS)
  lines = [f"Generator v{out['generator_version']}, KuaiRand-Pure sizes, {out['rows']:,} "
           f"test-period rows, seed {out['seed']}: ceiling AUC, and the share of its lift "
           'over 0.5 kept when a group of per-entity parts is removed.', '',
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
  p.add_argument('--out', default='docs/results/generator_identifiability')
  a = p.parse_args(argv)
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
