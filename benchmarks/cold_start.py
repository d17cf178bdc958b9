"""Cold start: how a trained model scores users it never saw, by config.train.oov_rate.

  python benchmarks/cold_start.py [--workdir runs/cold_start] [--rates 0,0.02,0.05]

Trains experiments/demo.py:quick once per rate, then predicts the first
20,000 test-day rows twice: as they are, and with every user_id shifted out
of the vocabulary (so the user and all user-side features are unknown).
Prints and saves (<workdir>/cold_start.json) the mean predicted follow and
click probabilities for known and unseen users beside the true rates, and
the click AUC on each. Well-trained OOV rows give unseen users scores near
the base rates; untrained ones give arbitrary scores.
"""

import argparse
import json
import os
import subprocess
import sys

import pandas as pd

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def cli(*args):
  cmd = [sys.executable, os.path.join(REPO, 'run.py'), '--config',
         os.path.join(REPO, 'experiments', 'demo.py') + ':quick', *args]
  subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def main():
  ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  ap.add_argument('--workdir', default='runs/cold_start')
  ap.add_argument('--rates', default='0,0.02,0.05')
  args = ap.parse_args()
  from pepnet_jax.evaluation import metrics
  root = os.path.abspath(args.workdir)
  data = os.path.join(root, 'data')
  rows = []
  for rate in args.rates.split(','):
    wd = os.path.join(root, f'oov{rate}')
    common = [f'--workdir={wd}', f'--config.data.dir={data}', f'--config.train.oov_rate={rate}']
    cli(*common)
    if not os.path.exists(os.path.join(root, 'known.csv')):
      log = pd.read_csv(os.path.join(data, 'log_standard_4_22_to_5_08_pure.csv'))
      log = log[log.date >= 20220429].head(20000)
      log.to_csv(os.path.join(root, 'known.csv'), index=False)
      log.assign(user_id=log.user_id + 10_000_000).to_csv(os.path.join(root, 'unseen.csv'),
                                                          index=False)
    for users in ('known', 'unseen'):
      inp, out = os.path.join(root, f'{users}.csv'), os.path.join(wd, f'pred_{users}.csv')
      cli(*common, '--mode=predict', f'--input={inp}', f'--output={out}')
      p, y = pd.read_csv(out), pd.read_csv(inp)
      rows.append(dict(oov_rate=float(rate), users=users,
                       mean_p_follow=round(float(p.p_is_follow.mean()), 4),
                       true_follow_rate=round(float(y.is_follow.mean()), 4),
                       mean_p_click=round(float(p.p_is_click.mean()), 4),
                       true_click_rate=round(float(y.is_click.mean()), 4),
                       click_auc=round(metrics.auc(y.is_click.values, p.p_is_click.values), 4)))
      print(rows[-1], flush=True)
  with open(os.path.join(root, 'cold_start.json'), 'w') as f:
    json.dump(rows, f, indent=1)
  print(pd.DataFrame(rows).to_string(index=False))


if __name__ == '__main__':
  main()
