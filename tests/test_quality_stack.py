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
  for t in synth.TASKS:
    assert table[t]['truth'] == pytest.approx(table[t]['ceiling'], abs=1e-6)
  assert share['truth'] == pytest.approx(1.0, abs=1e-6)
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
