"""benchmarks/generator_identifiability.py rebuilds a generated folder's world and scores its
rows: the rebuild must reproduce the truth files, and removing parts must change the truth."""

from __future__ import annotations


import pytest

from conftest import load_file
from pepnet_jax.data import kuairand_synth as synth


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
  # the whole second file: its ceiling is the one the generator recorded
  for t in synth.TASKS:
    assert res['ceiling'][t] == pytest.approx(summary['oracle_auc'][t], abs=1e-6)
  assert res['rows'] == summary['rows']['log_standard_4_22_to_5_08_pure.csv']
  for part in ident.PARTS:  # each part moves the truth, so the AUC differs
    assert any(abs(res['without'][part][t] - res['ceiling'][t]) > 1e-4 for t in synth.TASKS)
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
