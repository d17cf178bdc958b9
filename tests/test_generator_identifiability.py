"""benchmarks/generator_identifiability.py rebuilds a generated folder's world and scores its
rows: the rebuild must reproduce the truth files, and removing parts must change the truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from conftest import load_file
from pepnet_jax.data import kuairand_synth as synth


def hand_auc(y, score):
  """ROC AUC as the Mann-Whitney U of the positives' scores over the negatives' (ties
  count half), from scipy: an implementation independent of pepnet_jax.evaluation.metrics."""
  from scipy.stats import mannwhitneyu
  y, score = np.asarray(y).astype(bool), np.asarray(score, np.float64)
  return mannwhitneyu(score[y], score[~y]).statistic / (y.sum() * (~y).sum())


@pytest.fixture(scope='module')
def ident():
  return load_file('benchmarks/generator_identifiability.py', 'generator_identifiability')


@pytest.fixture(scope='module')
def folder(tmp_path_factory):
  out = tmp_path_factory.mktemp('ident')
  summary = synth.generate(str(out), 40_000, users=400, videos=300, authors=90, seed=3,
                           progress=False)
  return out, summary


def test_rebuilt_world_scores_the_folder_rows(ident, folder):
  out, summary = folder
  res = ident.measure_folder(str(out), (20220422, 20220508))
  # The whole second file: the rebuilt world's scores rank its rows as the truth file
  # does, by an AUC computed here on the file's own labels and truth (to 1e-5: the file
  # rounds to 8 decimals, which ties a few of the rare tasks' small probabilities).
  name = 'log_standard_4_22_to_5_08_pure.csv'
  log, truth = pd.read_csv(out / name), pd.read_csv(out / 'truth' / name)
  assert res['rows'] == len(log) == summary['rows'][name]
  for t in synth.TASKS:
    assert res['positives'][t] == int(log[t].sum()), t
    assert res['ceiling'][t] == pytest.approx(hand_auc(log[t], truth[f'p_{t}']), abs=1e-5), t
  for part in ident.PARTS:  # each part moves the truth, so the AUC differs
    assert any(abs(res['without'][part][t] - res['ceiling'][t]) > 1e-4 for t in synth.TASKS)
    for t in synth.TASKS:  # and its share kept is (without - 0.5) / (ceiling - 0.5)
      assert res['share_kept'][part][t] == pytest.approx(
          (res['without'][part][t] - 0.5) / (res['ceiling'][t] - 0.5)), (part, t)
  assert '| is_click |' in ident.markdown(res)


def test_a_folder_the_rebuild_does_not_reproduce_is_refused(ident, folder, tmp_path):
  import shutil
  out, _ = folder
  copy = tmp_path / 'copy'
  shutil.copytree(out, copy)
  truth = copy / 'truth' / 'log_standard_4_22_to_5_08_pure.csv'
  lines = truth.read_text().splitlines()
  lines[1] = ','.join(['0.50000000'] * len(lines[1].split(',')))
  truth.write_text('\n'.join(lines) + '\n')
  with pytest.raises(ValueError, match='does not reproduce truth'):
    ident.measure_folder(str(copy), (20220422, 20220508))
