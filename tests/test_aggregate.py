"""Aggregation of fabricated sweep directories with known numbers.

The std in results.csv / results.md is the sample standard deviation over
seeds (ddof=1), so the expected values below are computed that way.
"""

from __future__ import annotations

import csv
import json
import math
import struct

import numpy as np
import pytest

from pepnet_jax.sweeps import aggregate as agg
from pepnet_jax.sweeps import cli as sw

TASKS = ('is_click', 'long_view')
DOMAINS = ('0', '1')
# gamma -> per-seed mean AUC; per-task / per-domain numbers are derived from it
MEAN_AUC = {1.0: [0.70, 0.72, 0.74], 2.0: [0.75, 0.76, 0.77]}


def report(auc: float, seed: int) -> dict:
  def m(a, g):
    return dict(auc=a, gauc=g, logloss=0.4, positives=5, impressions=10, pos_rate=.5, mean_pred=.5)
  overall = {'is_click': m(auc + 0.01, auc - 0.1), 'long_view': m(auc - 0.01, None)}
  domains = {d: {'is_click': m(auc + 0.02 * i, auc - 0.1 + 0.01 * i),
                 'long_view': m(auc - 0.02 * i, auc - 0.2)} for i, d in enumerate(DOMAINS)}
  return {'overall': overall, 'domains': domains,
          'mean': {'auc': auc, 'gauc': auc - 0.1, 'logloss': 0.4 + 0.01 * seed},
          'split': 'test', 'step': 10}


def fabricate(root, with_sweep_json: bool):
  points = sw.expand_points({'product': {'model.gamma': list(MEAN_AUC)}, 'seeds': [0, 1, 2]})
  for p in points:
    d = root / p.name
    d.mkdir(parents=True)
    gamma = p.overrides['model.gamma']
    (d / 'report.json').write_text(json.dumps(report(MEAN_AUC[gamma][p.seed], p.seed)))
    (d / 'config.json').write_text(json.dumps(
        {'model': {'gamma': gamma, 'tower': [64, 32], 'name': 'pepnet'},
         'train': {'seed': p.seed}, 'data': {'seed': p.seed, 'dir': ''}}))
  if with_sweep_json:
    (root / 'sweep.json').write_text(json.dumps({'points': [
        dict(name=p.name, config_name=p.config_name, overrides=p.overrides, seed=p.seed,
             status='done') for p in points]}))
  # an unfinished point (no report.json) must be ignored
  (root / 'model.gamma=9.0,seed=0').mkdir()
  return points


def read_csv(path):
  with open(path) as f:
    return list(csv.DictReader(f))


def is_png(path) -> tuple[int, int]:
  data = path.read_bytes()
  assert data[:8] == b'\x89PNG\r\n\x1a\n' and data[12:16] == b'IHDR'
  return struct.unpack('>II', data[16:24])


@pytest.mark.parametrize('with_sweep_json', [True, False])
def test_results_table_mean_and_sample_std_over_seeds(tmp_path, with_sweep_json):
  fabricate(tmp_path, with_sweep_json)
  paths = agg.aggregate(str(tmp_path), plots=False)
  rows = read_csv(paths['csv'])
  assert [r['config'] for r in rows] == ['model.gamma=1.0', 'model.gamma=2.0']
  assert [r['model.gamma'] for r in rows] == ['1.0', '2.0']
  for r, (gamma, aucs) in zip(rows, MEAN_AUC.items()):
    assert r['n_seeds'] == '3' and r['seeds'] == '0 1 2'
    assert float(r['mean_auc']) == pytest.approx(np.mean(aucs))
    assert float(r['mean_auc_std']) == pytest.approx(np.std(aucs, ddof=1))
    assert float(r['mean_gauc']) == pytest.approx(np.mean(aucs) - 0.1)
    assert float(r['mean_logloss_std']) == pytest.approx(0.01)  # std of 0.40, 0.41, 0.42
    assert float(r['auc/is_click']) == pytest.approx(np.mean(aucs) + 0.01)
    assert float(r['gauc/is_click/domain_1']) == pytest.approx(np.mean(aucs) - 0.09)
    assert float(r['auc/long_view/domain_1']) == pytest.approx(np.mean(aucs) - 0.02)
    assert r['gauc/long_view'] == '' and r['gauc/long_view_std'] == ''  # null in every seed
  # the hand-computed values: 0.72 ± 0.02 and 0.76 ± 0.01
  assert float(rows[0]['mean_auc_std']) == pytest.approx(0.02)
  assert float(rows[1]['mean_auc_std']) == pytest.approx(0.01)


def test_markdown_has_formatted_mean_and_std(tmp_path):
  fabricate(tmp_path, True)
  md = open(agg.aggregate(str(tmp_path), plots=False)['md']).read()
  assert '| model.gamma=1.0 | 3 | 0.7200 ± 0.0200 | 0.6200 ± 0.0200 |' in md
  assert '**0.7600 ± 0.0100**' in md  # best mean AUC in bold
  assert '## GAUC per task, domain 1' in md
  assert 'ddof=1' in md


def test_one_seed_has_no_std_and_nan_metrics_are_skipped():
  runs = [agg.Run('a,seed=0', 'a', {}, 0, report(0.7, 0)),
          agg.Run('a,seed=1', 'a', {}, 1, {**report(0.8, 1), 'mean': {'auc': None}}),
          agg.Run('b', 'b', {}, None, report(0.6, 0))]
  rows = agg.summarize(runs)
  mean, std, n = rows[0].stats['mean_auc']
  assert (mean, n) == (pytest.approx(0.7), 1) and math.isnan(std)
  assert rows[0].stats['auc/is_click'][0] == pytest.approx(0.76)  # both seeds count here
  assert agg._cell(rows[1].stats['mean_auc']) == '0.6000'


def test_plots_are_valid_pngs_including_the_curve(tmp_path):
  fabricate(tmp_path, True)
  out = tmp_path / 'out'
  paths = agg.aggregate(str(tmp_path), out=str(out))
  assert set(paths) == {'csv', 'md', 'bars', 'per_task', 'curve'}
  assert paths['curve'].endswith('curve_model.gamma.png')
  for key in ('bars', 'per_task', 'curve'):
    w, h = is_png(out / paths[key].split('/')[-1])
    assert w > 300 and h > 200
  assert agg.main([str(tmp_path), '--out', str(tmp_path / 'cli'), '--no_plots']) == 0
  assert (tmp_path / 'cli' / 'results.csv').exists()


def test_no_curve_without_exactly_one_numeric_field():
  def row(name, **fields):
    return agg.Row(name, fields, [], {})
  assert agg.curve_field([row('a', **{'model.gamma': 1.0}), row('b', **{'model.gamma': 2})]) \
      == 'model.gamma'
  assert agg.curve_field([row('a', **{'model.use_epnet': True}),
                          row('b', **{'model.use_epnet': False})]) is None
  assert agg.curve_field([row('a', g=1.0, d=8), row('b', g=2.0, d=16)]) is None
  # a categorical field alongside still gives a curve (one line per category)
  assert agg.curve_field([row('a', g=1.0, m='pepnet'), row('b', g=2.0, m='mmoe')]) == 'g'


def test_list_valued_field_curves_by_length(tmp_path):
  def row(name, **fields):
    return agg.Row(name, fields, [], {'mean_auc': (0.7, 0.01, 3), 'mean_gauc': (0.6, 0.01, 3)})
  towers = [row(f'd{n}', **{'model.tower': [256, 128, 64, 32][:n]}) for n in (2, 3, 4)]
  assert agg.curve_field(towers) == 'model.tower'
  # two lists of one length would share an x: no curve
  assert agg.curve_field([row('a', t=[1, 2]), row('b', t=[3, 4])]) is None
  path = tmp_path / 'curve.png'
  agg.plot_curve(towers, 'model.tower', str(path))
  w, h = is_png(path)
  assert w > 300 and h > 200


def test_empty_sweep_dir_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match='no finished runs'):
    agg.aggregate(str(tmp_path))
  assert agg.main([str(tmp_path)]) == 1


def test_search_trials_get_their_validation_values(tmp_path):
  """A search directory: the table gains search_<metric> (mean and std over
  the trial's seeds, from search.json) and results.md a Search section."""
  values = {'trial=000': [0.70, 0.74], 'trial=001': [0.80, 0.81]}
  points = []
  for name, vals in values.items():
    for seed, v in enumerate(vals):
      p = sw.Point(f'{name},seed={seed}', name, {'optim.dense.lr': 1e-3 if name[-1] == '0' else 1e-4,
                                                 'train.seed': seed}, seed)
      points.append(p)
      (tmp_path / p.name).mkdir()
      (tmp_path / p.name / 'report.json').write_text(json.dumps(report(0.6, seed)))
  (tmp_path / 'sweep.json').write_text(json.dumps({'points': [
      dict(name=p.name, config_name=p.config_name, overrides=p.overrides, seed=p.seed)
      for p in points]}))
  trials = [dict(number=i, name=n, params={'optim.dense.lr': 1e-3 if i == 0 else 1e-4},
                 status='done', value=sum(v) / 2, values=v) for i, (n, v) in enumerate(values.items())]
  trials.append(dict(number=2, name='trial=002', params={'optim.dense.lr': 1e-2},
                     status='failed', value=None, values=[]))
  (tmp_path / 'search.json').write_text(json.dumps(dict(
      sampler='random', metric='mean_auc', direction='maximize', trials=trials, best=trials[1])))
  paths = agg.aggregate(str(tmp_path), plots=False)
  rows = read_csv(paths['csv'])
  assert [r['config'] for r in rows] == ['trial=000', 'trial=001']
  assert float(rows[0]['search_mean_auc']) == pytest.approx(0.72)
  assert float(rows[0]['search_mean_auc_std']) == pytest.approx(np.std([0.70, 0.74], ddof=1))
  assert float(rows[0]['mean_auc']) == pytest.approx(0.6)  # the report split, unchanged
  md = open(paths['md']).read()
  section = md[md.index('## Search: validation mean_auc (maximize)'):]
  assert section.index('**trial=001**') < section.index('trial=000') < section.index('trial=002')
  assert '| trial=002 | - | failed | 0.01 |' in section


def test_parameter_count_is_a_whole_column_never_bold(tmp_path):
  points = fabricate(tmp_path, True)
  for p in points:  # gamma 1 models are smaller
    path = tmp_path / p.name / 'report.json'
    r = json.loads(path.read_text())
    r['num_params'] = 1000 if p.overrides['model.gamma'] == 1.0 else 123456
    path.write_text(json.dumps(r))
  md = open(agg.aggregate(str(tmp_path), plots=False)['md']).read()
  assert '| configuration | seeds | AUC | GAUC | logloss | parameters |' in md
  assert '| 1,000 |' in md and '| 123,456 |' in md and '**123,456**' not in md


def test_paired_differences_and_the_judged_mean(tmp_path):
  fabricate(tmp_path, with_sweep_json=True)
  rep = tmp_path / 'model.gamma=1.0,seed=1' / 'report.json'
  r = json.loads(rep.read_text())
  r['overall']['long_view']['positives'] = 2  # too few in one run: not judged
  rep.write_text(json.dumps(r))
  runs = agg.load_runs(str(tmp_path))
  assert agg.judged_tasks(runs, 5) == ['is_click']
  assert agg.judged_tasks(runs, 3) == ['is_click']
  assert agg.judged_tasks(runs, 2) == ['is_click', 'long_view']
  rows = agg.summarize(runs, ['is_click'])
  [(row, d)] = agg.paired(rows, 'model.gamma=2.0', ['is_click'])
  assert row.config_name == 'model.gamma=1.0'
  want = [a - b for a, b in zip(MEAN_AUC[1.0], MEAN_AUC[2.0])]  # -0.05, -0.04, -0.03
  assert d['mean_auc'] == pytest.approx(want)
  assert d[agg.JUDGED] == pytest.approx(want)  # is_click = mean + 0.01 in both
  assert rows[0].stats[agg.JUDGED][0] == pytest.approx(np.mean(MEAN_AUC[1.0]) + 0.01)
  paths = agg.aggregate(str(tmp_path), plots=False, baseline='model.gamma=2.0',
                        min_positives=5)
  md = open(paths['md']).read()
  assert 'at least 5 positives in the split (is_click)' in md
  line = next(l for l in md.splitlines() if l.startswith('| model.gamma=1.0 | 3 | 3/3 |'))
  assert '-0.0400 ± 0.0100' in line
  with pytest.raises(ValueError, match='no such configuration'):
    agg.aggregate(str(tmp_path), plots=False, baseline='model.gamma=7.0')


def test_paired_plot_is_a_png(tmp_path):
  fabricate(tmp_path, with_sweep_json=True)
  paths = agg.aggregate(str(tmp_path), plots=True, baseline='model.gamma=2.0', min_positives=1)
  assert paths['paired'] == str(tmp_path / 'paired_model.gamma=2.0.png')
  w, h = is_png(tmp_path / 'paired_model.gamma=2.0.png')
  assert w > 100 and h > 100
