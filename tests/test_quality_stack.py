"""benchmarks/quality_stack.py: the validation-fitted stack of models' outputs, scored on the
test days against the ceiling."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from conftest import load_file
from pepnet_jax.data import kuairand_synth as synth

LOG = 'log_standard_4_22_to_5_08_pure.csv'


@pytest.fixture(scope='module')
def stack():
  return load_file('benchmarks/quality_stack.py', 'quality_stack')


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  out = tmp_path_factory.mktemp('stack')
  synth.generate(str(out), 60_000, users=400, videos=300, authors=90, seed=5, progress=False)
  return out


def hand_auc(y, score):
  """ROC AUC as the Mann-Whitney U of the positives' scores over the negatives' (ties
  count half), from scipy: an implementation independent of pepnet_jax.evaluation.metrics."""
  from scipy.stats import mannwhitneyu
  y, score = np.asarray(y).astype(bool), np.asarray(score, np.float64)
  return mannwhitneyu(score[y], score[~y]).statistic / (y.sum() * (~y).sum())


def write_pred(path, log, probs):
  frame = log[['user_id', 'video_id']].copy()
  for t in synth.TASKS:
    frame[f'p_{t}'] = probs[t]
  frame.to_csv(path, index=False)


def test_truth_as_a_model_reaches_the_ceiling_and_a_stack_repairs_a_scrambled_one(
    stack, folder, tmp_path):
  log = pd.read_csv(folder / LOG)
  truth = pd.read_csv(folder / 'truth' / LOG)
  write_pred(tmp_path / 'truth.csv', log, {t: truth[f'p_{t}'] for t in synth.TASKS})
  # a "model" whose every output is the truth of the next task: alone it ranks badly, but
  # the stack, fitted on the validation days, can take each task's truth from its neighbour.
  shifted = {t: truth[f'p_{synth.TASKS[(i + 1) % len(synth.TASKS)]}']
             for i, t in enumerate(synth.TASKS)}
  write_pred(tmp_path / 'shifted.csv', log, shifted)
  table, share = stack.main(str(folder), LOG, [('truth', str(tmp_path / 'truth.csv')),
                                               ('shifted', str(tmp_path / 'shifted.csv'))],
                            '20220428', str(tmp_path / 'out'))
  # By hand: the test rows are the log's days after valid_end; the ceiling is the truth's
  # AUC on them, the truth "model" ranks them the same (its probabilities pass through
  # logits), and the shifted one scores each task with its neighbour's truth.
  test = (log['date'] > 20220428).to_numpy()
  shares = {'truth': [], 'shifted': []}
  for i, t in enumerate(synth.TASKS):
    y = log[t].to_numpy()[test]
    assert table[t]['test_positives'] == int(y.sum())
    ceiling = hand_auc(y, truth[f'p_{t}'].to_numpy()[test])
    nxt = hand_auc(y, truth[f'p_{synth.TASKS[(i + 1) % len(synth.TASKS)]}'].to_numpy()[test])
    assert table[t]['ceiling'] == pytest.approx(ceiling, abs=1e-9), t
    assert table[t]['truth'] == pytest.approx(ceiling, abs=1e-6), t
    assert table[t]['shifted'] == pytest.approx(nxt, abs=1e-6), t
    shares['truth'].append((table[t]['truth'] - 0.5) / (ceiling - 0.5))
    shares['shifted'].append((nxt - 0.5) / (ceiling - 0.5))
  assert share['truth'] == pytest.approx(np.mean(shares['truth']), abs=1e-6)
  assert share['truth'] == pytest.approx(1.0, abs=1e-5)
  assert share['shifted'] == pytest.approx(np.mean(shares['shifted']), abs=1e-6)
  assert share['stack shifted'] > share['shifted'] + 0.2
  assert share['stack shifted'] > 0.9
  saved = json.loads((tmp_path / 'out' / 'quality_stack.json').read_text())
  assert saved['mean_lift_share']['truth'] == pytest.approx(1.0, abs=1e-6)
  assert '| is_click |' in (tmp_path / 'out' / 'quality_stack.md').read_text()


def test_predictions_of_another_log_are_refused(stack, folder, tmp_path):
  log = pd.read_csv(folder / LOG)
  short = log.iloc[:-5]
  write_pred(tmp_path / 'short.csv', short, {t: np.full(len(short), 0.5) for t in synth.TASKS})
  with pytest.raises(ValueError, match='short.csv.*not the'):
    stack.main(str(folder), LOG, [('m', str(tmp_path / 'short.csv'))], '20220428',
               str(tmp_path / 'out'))
