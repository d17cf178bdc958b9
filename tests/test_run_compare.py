"""experiments/compare.py takes each model's best search trial, and benchmarks/run_compare.py
keeps finished runs' small files so that another checkout continues the comparison."""

from __future__ import annotations

import json

from conftest import REPO, load_file
from pepnet_jax.sweeps import common, expand


def test_points_take_the_best_trial_and_tab_variants_share_it(tmp_path, monkeypatch, capsys):
  monkeypatch.chdir(tmp_path)
  exp = load_file('experiments/compare.py', 'compare_exp')
  best = {'optim.embedding.lr': 0.3, 'optim.dense.lr': 7e-4, 'model.dropout': 0.1}
  d = tmp_path / 'sweeps' / 'compare_search' / 'mmoe'
  d.mkdir(parents=True)
  (d / 'search.json').write_text(json.dumps({'best': {'name': 'trial=001', 'params': best}}))
  points = {p['_name']: p for p in exp.get_sweep('')['points']}
  for name in ('mmoe', 'mmoe+tab'):
    assert {k: points[name][k] for k in best} == best
  assert points['mmoe+tab']['model.domain_in_input'] is True
  assert 'optim.embedding.lr' not in points['ple']  # no search yet: the recipe's settings
  assert 'compare_search/ple/search.json has no finished trial' in capsys.readouterr().err
  # every point parses and validates (no data is read)
  expand.validate(str(REPO / 'experiments/compare.py'),
                  expand.expand_points(exp.get_sweep('')))


def test_kept_runs_come_back_and_count_as_finished(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  rc = load_file('benchmarks/run_compare.py', 'run_compare')
  done = tmp_path / 'sweeps' / 'compare' / 'pepnet,seed=0'
  done.mkdir(parents=True)
  for f in ('config.json', 'report.json', 'metrics.jsonl'):
    (done / f).write_text('{}')
  (done / 'checkpoints').mkdir()
  (done / 'checkpoints' / 'big').write_text('x' * 100)
  running = tmp_path / 'sweeps' / 'compare' / 'mmoe,seed=0'  # no report: not finished
  running.mkdir()
  (running / 'config.json').write_text('{}')
  assert rc.keep('sweeps/compare') == 3
  kept = sorted(p.relative_to(tmp_path / rc.KEEP).as_posix()
                for p in (tmp_path / rc.KEEP).rglob('*') if p.is_file())
  assert kept == ['compare/pepnet,seed=0/config.json', 'compare/pepnet,seed=0/metrics.jsonl',
                  'compare/pepnet,seed=0/report.json']
  # a fresh checkout: the sweeps are gone, the kept files are not
  import shutil
  shutil.rmtree(tmp_path / 'sweeps')
  assert not common.finished('sweeps/compare', 'pepnet,seed=0')
  assert rc.restore() == 3
  assert common.finished('sweeps/compare', 'pepnet,seed=0')
  assert not common.finished('sweeps/compare', 'mmoe,seed=0')
  (done / 'report.json').write_text('{"newer": 1}')  # a file already there is never replaced
  assert rc.restore() == 0 and json.loads((done / 'report.json').read_text()) == {'newer': 1}


def test_the_best_trial_becomes_the_seed_0_run_once(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  rc = load_file('benchmarks/run_compare.py', 'run_compare')
  search = tmp_path / 'sweeps' / 'compare_search' / 'mmoe'
  for trial, auc in (('trial=000', 0.70), ('trial=001', 0.75)):
    (search / trial).mkdir(parents=True)
    (search / trial / 'report.json').write_text(json.dumps({'mean': {'auc': auc}}))
    (search / trial / 'config.json').write_text('{}')
  (search / 'search.json').write_text(json.dumps({'best': {'name': 'trial=001'}}))
  (tmp_path / 'sweeps' / 'compare_search' / 'ple').mkdir()  # no search.json: nothing to reuse
  assert rc.reuse_best_trials(['mmoe', 'ple']) == ['mmoe']
  report = tmp_path / 'sweeps' / 'compare' / 'mmoe,seed=0' / 'report.json'
  assert json.loads(report.read_text()) == {'mean': {'auc': 0.75}}
  assert rc.reuse_best_trials(['mmoe']) == []  # already there: never copied over


def test_runs_made_with_an_old_best_trial_are_set_aside(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  rc = load_file('benchmarks/run_compare.py', 'run_compare')
  d = tmp_path / 'sweeps' / 'compare_search' / 'mmoe'
  d.mkdir(parents=True)
  (d / 'search.json').write_text(json.dumps(
      {'best': {'name': 'trial=001', 'params': {'optim.dense.lr': 7e-4}}}))
  config = str(REPO / 'experiments/compare.py')
  parsed = expand.validate(config, expand.expand_points(expand.load_sweep(config)))
  for name, dense_lr in (('mmoe,seed=1', 3e-3), ('ple,seed=1', None)):  # mmoe's: an old trial
    saved = json.loads(parsed[name].to_json_best_effort())
    if dense_lr:
      saved['optim']['dense']['lr'] = dense_lr
    for root in (tmp_path / 'sweeps' / 'compare', tmp_path / rc.KEEP / 'compare'):
      (root / name).mkdir(parents=True)
      (root / name / 'config.json').write_text(json.dumps(saved))
  assert rc.retire_stale() == ['mmoe,seed=1']
  assert (tmp_path / 'sweeps' / 'compare' / '.stale' / 'mmoe,seed=1' / 'config.json').exists()
  assert not (tmp_path / 'sweeps' / 'compare' / 'mmoe,seed=1').exists()
  assert not (tmp_path / rc.KEEP / 'compare' / 'mmoe,seed=1').exists()
  assert (tmp_path / rc.KEEP / 'compare' / 'ple,seed=1' / 'config.json').exists()
  assert rc.retire_stale() == []  # the sweep would now accept every remaining run


def test_search_summary_names_the_cap_and_the_judged_tasks(tmp_path, monkeypatch):
  monkeypatch.chdir(tmp_path)
  rc = load_file('benchmarks/run_compare.py', 'run_compare')

  def task(auc, positives):
    return {'auc': auc, 'positives': positives}
  for model, stopped in (('mmoe', 900), ('ple', None)):
    for trial, auc in (('trial=000', 0.70), ('trial=001', 0.74)):
      d = tmp_path / 'sweeps' / 'compare_search' / model / trial
      d.mkdir(parents=True)
      (d / 'report.json').write_text(json.dumps({
          'best_valid': {'mean': {'auc': auc},
                         'overall': {'is_click': task(auc + 0.02, 5000),
                                     'is_hate': task(auc - 0.02, 45)}},
          'selected': {'step': 704, 'stopped_at': stopped}}))
    (d.parent / 'search.json').write_text(json.dumps({
        'best': {'name': 'trial=001'},
        'trials': [{'name': 'trial=000', 'params': {'optim.dense.lr': 1e-3}},
                   {'name': 'trial=001', 'params': {'optim.dense.lr': 3e-4}}]}))
  text = rc.search_summary(['mmoe', 'ple'], out=str(tmp_path / 's.md'))
  assert '1 tasks with at least 100 validation positives (is_click)' in text
  assert '| mmoe | trial=001 | 0.7000 / 0.7200 @ 704 | 0.7400 / 0.7600 @ 704 |' in text
  assert '| ple | trial=001 | 0.7000 / 0.7200 @ 704 (cap) | 0.7400 / 0.7600 @ 704 (cap) |' in text
  assert '- trial=001 (mmoe, ple): optim.dense.lr 0.0003' in text
  assert (tmp_path / 's.md').read_text() == text
