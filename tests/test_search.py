"""Search mode: space declarations, the validation-metric reader, the random
and TPE samplers, resuming and the files a search writes.

No training: a fake runner writes the files a finished run leaves behind,
with a validation AUC that is a known function of the trial's parameters.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading

import pytest

from pepnet_jax.sweeps import cli as sw
from pepnet_jax.sweeps import search as search_lib

EXPERIMENT = '''
from pepnet_jax import configs


def get_config(preset=''):
  c = configs.base_config()
  c.train.num_steps = 3
  c.train.report_split = 'valid'
  return c


def get_search(preset=''):
  return dict(space={'optim.dense.lr': ('log', 1e-5, 1e-2),
                     'model.dropout': ('float', 0.0, 0.3),
                     'model.tower': ('choice', [(256, 128), (128, 64)])},
              trials=4, seeds=[0, 1])
'''


def valid_auc(over) -> float:
  """Peaks at lr = 1e-3 and the (128, 64) tower; the seed adds a little."""
  lr = over.get('optim.dense.lr', 1e-3)
  return (0.8 - 0.02 * (math.log10(lr) + 3) ** 2
          + (0.01 if tuple(over.get('model.tower', ())) == (128, 64) else 0.0)
          + 0.001 * over.get('train.seed', 0))


def report(auc, split='valid', **extra) -> dict:
  m = dict(auc=auc, gauc=auc - 0.1, logloss=0.3)
  return {'overall': {'is_click': dict(m)}, 'domains': {'0': {'is_click': dict(m)}},
          'mean': dict(m), 'split': split, 'step': 3, **extra}


class FakeRunner:
  """Records point names; writes report.json and a valid line in metrics.jsonl."""

  def __init__(self, crash=()):
    self.calls, self.crash = [], set(crash)
    self.lock = threading.Lock()

  def __call__(self, cmd, point, log_path):
    with self.lock:
      self.calls.append(point.name)
    if point.name in self.crash:
      self.crash.discard(point.name)  # fails once, then works
      return 1
    wd = cmd[cmd.index('--workdir') + 1]
    auc = valid_auc(point.overrides)
    with open(os.path.join(wd, 'metrics.jsonl'), 'w') as f:
      f.write(json.dumps({'step': 1, 'split': 'valid', 'mean_auc': auc - 0.05}) + '\n')
      f.write(json.dumps({'step': 3, 'split': 'valid', 'mean_auc': auc}) + '\n')
    with open(os.path.join(wd, 'report.json'), 'w') as f:
      json.dump(report(0.5, split='test'), f)  # the test split: must not be chosen on
    return 0


def quiet(*_):
  pass


@pytest.fixture
def experiment(tmp_path):
  path = tmp_path / 'exp.py'
  path.write_text(EXPERIMENT)
  return str(path)


def run(experiment, sweep_dir, runner, **kw):
  return search_lib.run_search(experiment, str(sweep_dir), search_lib.load_search(experiment),
                               runner=runner, aggregate=False, out=quiet, **kw)


# ------------------------------------------------------------ declaration

def test_space_declaration_is_checked():
  s = search_lib.parse_search({'model.gamma': ('float', 0, 2), 'data.tabs': ('choice', [(1,), (2,)])})
  assert [d.kind for d in s.dims] == ['float', 'choice'] and s.trials == 20
  assert (s.metric, s.direction, s.seeds, s.sampler) == ('mean_auc', 'maximize', [None], 'random')
  assert search_lib.parse_search({'space': {'model.gamma': ('int', 1, 3)},
                                  'metric': 'mean_logloss'}).direction == 'minimize'
  bad = [({'space': {'model.gamma': ('normal', 0, 1)}}, 'kind one of'),
         ({'space': {'optim.dense.lr': ('log', 0.0, 1.0)}}, 'low > 0'),
         ({'space': {'model.gamma': ('float', 2.0, 1.0)}}, 'low < high'),
         ({'space': {'model.tower': ('choice', [])}}, 'choice'),
         ({'space': {'train.seed': ('int', 0, 9)}}, 'seeds'),
         ({'space': {'model.gamma': ('float', 0, 1)}, 'trails': 3}, 'unknown keys'),
         ({'space': {'model.gamma': ('float', 0, 1)}, 'sampler': 'grid'}, 'sampler'),
         ({'space': {}}, 'non-empty')]
  for decl, msg in bad:
    with pytest.raises(ValueError, match=msg):
      search_lib.parse_search(decl)


def test_file_without_get_search_is_a_clear_error(tmp_path, capsys):
  path = tmp_path / 'grid.py'
  path.write_text("def get_config(p=''):\n  return None\n\n\n"
                  "def get_sweep(p=''):\n  return {'product': {'model.gamma': [1.0]}}\n")
  assert sw.main(['--config', str(path), '--workdir', str(tmp_path / 's'), '--search']) == 2
  assert 'defines no get_search' in capsys.readouterr().err
  assert sw.main(['--config', str(path), '--workdir', str(tmp_path / 's'), '--trials', '3']) == 2
  assert '--trials apply to --search only' in capsys.readouterr().err


# ----------------------------------------------------------------- metric

def test_metric_reader_prefers_best_valid_then_valid_lines_then_report(tmp_path):
  wd = tmp_path
  (wd / 'report.json').write_text(json.dumps(report(0.61, split='test')))
  assert search_lib.read_metric(str(wd)) == (0.61, 'report.json test split')
  assert search_lib.not_validation('report.json test split')
  (wd / 'metrics.jsonl').write_text(
      '{"step": 1, "split": "valid", "mean_auc": 0.70}\n'
      '{"step": 2, "split": "train", "mean_auc": 0.99}\n'
      '{"step": 3, "split": "valid", "mean_auc": 0.68, "auc/is_click": 0.9}\n{"step": 4, "spl')
  assert search_lib.read_metric(str(wd)) == (0.70, 'metrics.jsonl valid step 1')
  assert search_lib.read_metric(str(wd), direction='minimize')[0] == 0.68
  assert search_lib.read_metric(str(wd), 'auc/is_click')[0] == 0.9
  (wd / 'report.json').write_text(json.dumps(report(0.61, best_valid=report(0.72))))
  assert search_lib.read_metric(str(wd)) == (0.72, 'report.json best_valid')
  assert search_lib.read_metric(str(wd), 'gauc/is_click/domain_0')[0] == pytest.approx(0.62)
  (wd / 'report.json').write_text(json.dumps(report(0.61, best_valid={'mean_auc': 0.73})))
  assert search_lib.read_metric(str(wd))[0] == 0.73  # a flat best_valid works too
  assert search_lib.read_metric(str(tmp_path / 'none')) == (None, 'missing')


# --------------------------------------------------------- random search

def test_random_search_is_seeded_kept_and_continued(tmp_path, experiment, monkeypatch):
  sweep_dir = tmp_path / 'search'
  fake = FakeRunner()
  result = run(experiment, sweep_dir, fake)
  trials = result['trials']
  assert [t['name'] for t in trials] == ['trial=000', 'trial=001', 'trial=002', 'trial=003']
  assert fake.calls == [f'trial=00{i},seed={s}' for i in range(4) for s in (0, 1)]
  for t in trials:
    p = t['params']
    assert 1e-5 <= p['optim.dense.lr'] <= 1e-2 and 0.0 <= p['model.dropout'] <= 0.3
    assert p['model.tower'] in ([256, 128], [128, 64]) and t['status'] == 'done'
    over = dict(p, **{'model.tower': tuple(p['model.tower'])})
    want = [valid_auc(dict(over, **{'train.seed': s})) for s in (0, 1)]
    assert t['values'] == pytest.approx(want)  # the valid lines' best, not report.json's 0.5
    assert t['value'] == pytest.approx(sum(want) / 2)
    assert t['metric_source'] == ['metrics.jsonl valid step 3']
  best = max(trials, key=lambda t: t['value'])
  saved = json.loads((sweep_dir / 'search.json').read_text())
  assert saved['best']['name'] == best['name'] and saved['sampler'] == 'random'
  assert saved['space']['optim.dense.lr'] == ['log', 1e-5, 1e-2]
  state = json.loads((sweep_dir / 'sweep.json').read_text())
  assert len(state['points']) == 8 and state['points'][1]['config_name'] == 'trial=000'
  assert state['points'][1]['overrides']['train.seed'] == 1
  # the same seed draws the same trials elsewhere
  again = run(experiment, tmp_path / 'other', FakeRunner())
  assert [t['params'] for t in again['trials']] == [t['params'] for t in trials]
  # rerun: nothing runs, and search.json stays as it was (its time included); more
  # trials: only the new ones run, the old ones are kept
  before = (sweep_dir / 'search.json').read_text()
  monkeypatch.setattr(search_lib.time, 'strftime', lambda *a: 'a later time')
  fake2 = FakeRunner()
  run(experiment, sweep_dir, fake2)
  assert fake2.calls == []
  assert (sweep_dir / 'search.json').read_text() == before
  more = run(experiment, sweep_dir, fake2, trials=6)
  assert fake2.calls == [f'trial=00{i},seed={s}' for i in (4, 5) for s in (0, 1)]
  assert [t['params'] for t in more['trials'][:4]] == [t['params'] for t in trials]


def test_random_search_reruns_a_failed_trial_and_refuses_a_changed_space(tmp_path, experiment):
  sweep_dir = tmp_path / 'search'
  fake = FakeRunner(crash={'trial=001,seed=0'})
  result = run(experiment, sweep_dir, fake, trials=2)
  assert [t['status'] for t in result['trials']] == ['done', 'failed']
  assert result['failed_now'] == 1
  result = run(experiment, sweep_dir, fake, trials=2)
  assert [t['status'] for t in result['trials']] == ['done', 'done']
  assert fake.calls[4:] == ['trial=001,seed=0']  # its finished seed is not run again
  changed = tmp_path / 'changed.py'
  changed.write_text(EXPERIMENT.replace("('log', 1e-5, 1e-2)", "('log', 1e-6, 1e-2)"))
  with pytest.raises(ValueError, match='space or sampler seed changed'):
    run(str(changed), sweep_dir, fake, trials=2)


def test_cli_search_prints_the_best_trial_and_aggregates(tmp_path, experiment, capsys):
  sweep_dir = tmp_path / 'search'
  argv = ['--config', experiment, '--workdir', str(sweep_dir), '--search', '--trials', '3',
          '--config.train.num_steps=5']
  assert sw.main(argv + ['--dry_run'], runner=FakeRunner()) == 0
  assert 'trial=002,seed=1: to run' in capsys.readouterr().out and not sweep_dir.exists()
  fake = FakeRunner()
  assert sw.main(argv + ['--parallel', '2'], runner=fake) == 0
  out = capsys.readouterr().out
  assert len(fake.calls) == 6 and 'Best trial: trial=00' in out and '--config.optim.dense.lr=' in out
  saved = json.loads((sweep_dir / 'search.json').read_text())
  assert saved['extra_overrides'] == ['--config.train.num_steps=5']
  assert out.count('Best trial: ' + saved['best']['name']) == 1
  md = (sweep_dir / 'results.md').read_text()
  assert '## Search: validation mean_auc (maximize)' in md
  assert f'| **{saved["best"]["name"]}** | **{saved["best"]["value"]:.4f}** | done |' in md
  header = (sweep_dir / 'results.csv').read_text().splitlines()[0].split(',')
  assert 'search_mean_auc' in header and 'search_mean_auc_std' in header
  assert sw.main(argv + ['--only', 'x']) == 2
  assert sw.main(argv + ['--storage', 'sqlite:///x.db']) == 2
  assert 'tpe only' in capsys.readouterr().err


def test_a_test_split_metric_is_used_with_a_warning(tmp_path, experiment):
  def runner(cmd, point, log_path):  # no validation anywhere: only a test report
    wd = cmd[cmd.index('--workdir') + 1]
    with open(os.path.join(wd, 'report.json'), 'w') as f:
      json.dump(report(0.6, split='test'), f)
    return 0
  lines = []
  search_lib.run_search(experiment, str(tmp_path), search_lib.load_search(experiment), trials=1,
                        runner=runner, aggregate=False, out=lines.append)
  assert any('warning' in x and 'report.json test split' in x for x in lines)
  saved = json.loads((tmp_path / 'search.json').read_text())
  assert saved['trials'][0]['value'] == 0.6
  assert saved['trials'][0]['metric_source'] == ['report.json test split']


# -------------------------------------------------------------------- TPE

def test_tpe_without_optuna_names_the_extra(tmp_path, experiment, monkeypatch, capsys):
  monkeypatch.setitem(sys.modules, 'optuna', None)  # import optuna -> ImportError
  assert sw.main(['--config', experiment, '--workdir', str(tmp_path), '--search',
                  '--sampler', 'tpe'], runner=FakeRunner()) == 2
  assert 'pip install "pepnet-jax[search]"' in capsys.readouterr().err


def test_tpe_search_in_sqlite_resumes_retries_and_shares_a_study(tmp_path, experiment):
  optuna = pytest.importorskip('optuna', reason='optuna (the [search] extra) is not installed')
  sweep_dir = tmp_path / 'tpe'
  fake = FakeRunner(crash={'trial=001,seed=0'})
  result = run(experiment, sweep_dir, fake, sampler='tpe', trials=3)
  assert (sweep_dir / 'study.db').exists() and result['storage'].endswith('tpe/study.db')
  assert [t['status'] for t in result['trials']] == ['done', 'failed', 'done']
  url = f'sqlite:///{sweep_dir / "study.db"}'
  study = optuna.load_study(study_name='tpe', storage=url)
  assert [t.state.name for t in study.trials] == ['COMPLETE', 'FAIL', 'COMPLETE']
  # a process of this host that died mid-trial left a RUNNING trial behind
  dead = subprocess.Popen([sys.executable, '-c', 'pass'])
  dead.wait()
  lost = study.ask({'optim.dense.lr': optuna.distributions.FloatDistribution(1e-5, 1e-2, log=True),
                    'model.dropout': optuna.distributions.FloatDistribution(0.0, 0.3),
                    'model.tower': optuna.distributions.CategoricalDistribution(
                        ['[256, 128]', '[128, 64]'])})
  for k, v in dict(point='trial=003', host=socket.gethostname(), pid=dead.pid).items():
    lost.set_user_attr(k, v)
  # rerun: finished trials are read back; the failed and the lost one run again, in place
  fake2 = FakeRunner()
  result = run(experiment, sweep_dir, fake2, sampler='tpe', trials=4)
  assert sorted(fake2.calls) == ['trial=001,seed=0', 'trial=003,seed=0', 'trial=003,seed=1']
  by_name = {t['name']: t for t in result['trials']}
  assert len(result['trials']) == 4 and all(t['status'] == 'done' for t in by_name.values())
  assert by_name['trial=001']['retry_of'] == 1 and by_name['trial=003']['retry_of'] == 3
  best = max(by_name.values(), key=lambda t: t['value'])
  assert result['best']['name'] == best['name']
  # another process (here: another sweep dir) joins the same study and adds trials up to 6
  other = FakeRunner()
  result = run(experiment, tmp_path / 'elsewhere', other, sampler='tpe', trials=6,
               storage=url, study='tpe')
  assert len(other.calls) == 4 and len(result['trials']) == 6
  assert json.loads((tmp_path / 'elsewhere' / 'search.json').read_text())['study'] == 'tpe'
  fake3 = FakeRunner()
  run(experiment, sweep_dir, fake3, sampler='tpe', trials=6)
  assert fake3.calls == []  # the study has 6 trials: nothing left to do


@pytest.mark.parametrize('extra,warned', [
    ([], False),
    (['--config.train.report_split=test'], True),
    (['--config.train.report_split=test', '--config.train.valid_at_end=True'], False),
    (['--config.train.report_split=test', '--config.train.eval_every=2'], False),
])
def test_the_search_warns_up_front_when_no_trial_would_validate(experiment, extra, warned):
  """train.valid_at_end (the 'budget' recipe) validates after the last step: no warning."""
  lines = []
  search_lib._check_validation_reported(experiment, search_lib.load_search(experiment), extra,
                                        lines.append)
  assert any('warning: runs evaluate on validation data only' in x for x in lines) == warned
