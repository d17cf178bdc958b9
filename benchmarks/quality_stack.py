"""How far do trained models get when combined? A per-task stack fitted on the validation days.

  python benchmarks/quality_stack.py --data DIR --log log_standard_4_22_to_5_08_pure.csv \
      --pred pepnet=PRED.csv [--pred sb_tab=PRED2.csv ...] [--valid_end 20220428] [--out DIR]

Each PRED.csv is predict mode's output on the generated log ``--log`` of ``--data`` (run.py
--mode=predict --input DIR/LOG --output PRED.csv): one row per log row, in order. For each
task the script fits an L2-regularised logistic regression on the rows dated up to
``--valid_end`` (the validation days), whose inputs are every given model's logits for all
seven tasks and the tab one-hot, and scores the later rows (the test days). It prints, per
task, the test AUC and the share of the ceiling's AUC lift over 0.5 of: each model alone, the
mean of the models' logits, each model's own stack and the stack of all of them; and saves
the table as quality_stack.md and quality_stack.json in --out.

Why: an upper reference for what these models' outputs hold. The stack uses the validation
labels (as model selection does) and never the test days', so its figures are honest
test-day figures, but of a post-hoc combination, not of a model one would serve.
"""

import argparse
import json
import os

import numpy as np
import pandas as pd
from scipy import optimize

from pepnet_jax.evaluation import metrics, oracle
from pepnet_jax.synth import TASKS


def read_logits(path: str, log: pd.DataFrame) -> np.ndarray:
  """[rows, tasks] logits of one predict output, checked against the log it scored."""
  pred = pd.read_csv(path)
  missing = [f'p_{t}' for t in TASKS if f'p_{t}' not in pred.columns]
  if missing:
    raise ValueError(f'{path}: no column(s) {missing}; pass predict mode\'s output')
  if len(pred) != len(log) or not (
      (pred['user_id'].to_numpy() == log['user_id'].to_numpy()).all()
      and (pred['video_id'].to_numpy() == log['video_id'].to_numpy()).all()):
    raise ValueError(f'{path}: its {len(pred):,} rows are not the {len(log):,} rows of the log '
                     '(user_id, video_id in order); predict on the same --log file')
  p = np.clip(pred[[f'p_{t}' for t in TASKS]].to_numpy(np.float64), 1e-7, 1 - 1e-7)
  return np.log(p / (1 - p))


def fit_logistic(x: np.ndarray, y: np.ndarray, l2: float = 1e-4):
  """Weights (last: the intercept) of an L2-regularised logistic regression, by L-BFGS."""
  xb = np.concatenate([x, np.ones((len(x), 1))], 1)

  def loss(w):
    z = xb @ w
    p = 1.0 / (1.0 + np.exp(-z))
    reg = np.r_[w[:-1], 0.0]
    return (np.mean(np.logaddexp(0.0, z) - y * z) + l2 * reg @ reg,
            xb.T @ (p - y) / len(y) + 2 * l2 * reg)
  return optimize.minimize(loss, np.zeros(xb.shape[1]), jac=True, method='L-BFGS-B').x


def apply_logistic(w: np.ndarray, x: np.ndarray) -> np.ndarray:
  return x @ w[:-1] + w[-1]


def main(data_dir, log_name, preds, valid_end, out_dir):
  # The rows of the log the predictions scored: the standard-log rows in its dates.
  dates = pd.read_csv(os.path.join(data_dir, log_name), usecols=['date'])['date']
  lo, hi = int(dates.min()), int(dates.max())
  log = oracle.logs_with_truth(data_dir, ['user_id', 'video_id', *TASKS], (lo, hi))
  logits = {name: read_logits(path, log) for name, path in preds}
  val = log['date'].to_numpy() <= int(valid_end)
  test = ~val
  if not val.any() or not test.any():
    raise ValueError(f'--valid_end {valid_end}: {log_name} spans {lo}..{hi}; both the '
                     'validation and the test rows must be non-empty')
  tabs = pd.get_dummies(log['tab']).to_numpy(np.float64)
  scores = {name: (lambda i, n=name: logits[n][:, i]) for name in logits}
  if len(logits) > 1:
    scores['mean'] = lambda i: np.mean([v[:, i] for v in logits.values()], axis=0)
  inputs = {f'stack {n}': np.concatenate([v, tabs], 1) for n, v in logits.items()}
  if len(logits) > 1:
    inputs['stack all'] = np.concatenate([*logits.values(), tabs], 1)
  table = {}
  for i, task in enumerate(TASKS):
    y = log[task].to_numpy(np.float64)
    ceiling = metrics.auc(y[test], log[f'p_{task}'].to_numpy()[test])
    r = {name: metrics.auc(y[test], f(i)[test]) for name, f in scores.items()}
    for name, x in inputs.items():
      w = fit_logistic(x[val], y[val])
      r[name] = metrics.auc(y[test], apply_logistic(w, x[test]))
    table[task] = dict(r, ceiling=ceiling, test_positives=int(y[test].sum()))
  names = list(scores) + list(inputs)
  def lift(t, n):  # None (no test positives, no lift to share) is left out of the mean
    v = oracle.lift_share(table[t][n], table[t]['ceiling'])
    return np.nan if v is None else v
  share = {n: float(np.nanmean([lift(t, n) for t in TASKS])) for n in names}
  lines = ['| task | test positives | ' + ' | '.join(names) + ' | ceiling |',
           '|---|---|' + '---|' * (len(names) + 1)]
  for t in TASKS:
    lines.append(f'| {t} | {table[t]["test_positives"]} | '
                 + ' | '.join(f'{table[t][n]:.4f}' for n in names)
                 + f' | {table[t]["ceiling"]:.4f} |')
  lines.append('| mean lift share | | ' + ' | '.join(f'{share[n]:.3f}' for n in names) + ' | 1 |')
  text = '\n'.join(lines)
  print(f'{int(val.sum()):,} validation rows (fit, dates {lo}..{valid_end}), '
        f'{int(test.sum()):,} test rows (scored); test AUC:')
  print(text)
  os.makedirs(out_dir, exist_ok=True)
  with open(os.path.join(out_dir, 'quality_stack.md'), 'w') as f:
    f.write(text + '\n')
  with open(os.path.join(out_dir, 'quality_stack.json'), 'w') as f:
    json.dump({'tasks': table, 'mean_lift_share': share, 'valid_end': int(valid_end),
               'predictions': dict(preds)}, f, indent=1)
  return table, share


if __name__ == '__main__':
  ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  ap.add_argument('--data', required=True, help='the generated data folder (with truth/)')
  ap.add_argument('--log', default='log_standard_4_22_to_5_08_pure.csv',
                  help='the log the predictions scored (a file name in --data)')
  ap.add_argument('--pred', action='append', required=True, metavar='NAME=CSV',
                  help="a model's predict output on --log; repeat for more models")
  ap.add_argument('--valid_end', default='20220428', help='last validation day (YYYYMMDD)')
  ap.add_argument('--out', default='.', help='folder for quality_stack.md / .json')
  a = ap.parse_args()
  pairs = []
  for p in a.pred:
    if '=' not in p:
      ap.error(f'--pred {p!r}: use NAME=CSV')
    pairs.append(tuple(p.split('=', 1)))
  main(a.data, a.log, pairs, a.valid_end, a.out)
