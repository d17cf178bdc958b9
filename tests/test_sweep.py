"""Sweep expansion, naming, command lines and the skip / resume / parallel runner.

No training here: a fake runner stands in for ``python run.py`` and writes the
files a finished run leaves behind (report.json, config.json).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time

import pytest

from conftest import import_cycles, import_graph
from pepnet_jax.sweeps import cli as sw

EXPERIMENT = '''
from pepnet_jax import configs


def get_config(preset=''):
  c = configs.base_config()
  c.train.num_steps = 3 if preset == 'tiny' else 100
  return c


def get_sweep(preset=''):
  return dict(product={'model.gamma': [1.0, 2.0]},
              points=[{}, {'_name': 'no_epnet', 'model.use_epnet': False}], seeds=[0, 1])
'''


def fake_report(auc=0.7, gauc=0.6, tasks=('is_click',), domains=('0',)) -> dict:
  m = dict(auc=auc, gauc=gauc, logloss=0.3, positives=1, impressions=2, pos_rate=.5, mean_pred=.5)
  return {'overall': {t: dict(m) for t in tasks},
          'domains': {d: {t: dict(m) for t in tasks} for d in domains},
          'mean': {'auc': auc, 'gauc': gauc, 'logloss': 0.3}, 'split': 'test', 'step': 3}


def workdir_of(cmd):
  return cmd[cmd.index('--workdir') + 1]


class FakeRunner:
  """Records calls; finishes a run by writing report.json (thread-safe)."""

  def __init__(self, crash_first=(), delay=0.0):
    self.calls, self.crash_first, self.delay = [], set(crash_first), delay
    self.lock = threading.Lock()
    self.active = self.max_active = 0

  def __call__(self, cmd, point, log_path):
    with self.lock:
      self.calls.append(point.name)
      self.active += 1
      self.max_active = max(self.max_active, self.active)
    try:
      time.sleep(self.delay)
      wd = workdir_of(cmd)
      ckpt = os.path.join(wd, 'checkpoints', 'marker')
      with open(log_path, 'a') as f:
        f.write(f'fake run of {point.name}\n')
      if point.name in self.crash_first and not os.path.exists(ckpt):
        os.makedirs(os.path.dirname(ckpt), exist_ok=True)
        open(ckpt, 'w').close()  # got as far as a checkpoint, then died
        return 1
      if point.name in self.crash_first:
        assert os.path.exists(ckpt), 'the rerun must find the first attempt\'s checkpoint'
      with open(os.path.join(wd, 'config.json'), 'w') as f:
        json.dump({'model': {'gamma': point.overrides.get('model.gamma', 2.0)}}, f)
      with open(os.path.join(wd, 'report.json'), 'w') as f:
        json.dump(fake_report(), f)
      return 0
    finally:
      with self.lock:
        self.active -= 1


# ----------------------------------------------------------------- expansion

def test_product_is_cartesian_first_field_slowest():
  pts = sw.expand({'product': {'model.gamma': [1.0, 2.0], 'model.embed_dim': [8, 16, 32]}})
  assert len(pts) == 6
  assert pts[0] == {'model.gamma': 1.0, 'model.embed_dim': 8}
  assert pts[1] == {'model.gamma': 1.0, 'model.embed_dim': 16}
  assert pts[5] == {'model.gamma': 2.0, 'model.embed_dim': 32}


def test_zip_steps_lists_in_lockstep():
  pts = sw.expand({'zip': {'model.name': ['pepnet', 'mmoe', 'ple'],
                           'optim.dense.lr': [1e-3, 2e-3, 3e-3]}})
  assert pts == [{'model.name': 'pepnet', 'optim.dense.lr': 1e-3},
                 {'model.name': 'mmoe', 'optim.dense.lr': 2e-3},
                 {'model.name': 'ple', 'optim.dense.lr': 3e-3}]


def test_zip_length_mismatch_names_the_field():
  with pytest.raises(ValueError, match=r"'optim\.dense\.lr' has 3 values but 'model\.name' has 2"):
    sw.expand({'zip': {'model.name': ['pepnet', 'mmoe'], 'optim.dense.lr': [1e-3, 1e-3, 1e-4]}})


def test_points_product_zip_seeds_combine_as_product():
  decl = dict(points=[{}, {'model.use_epnet': False}, {'model.use_ppnet': False}],
              product={'model.gamma': [1.0, 2.0]},
              zip={'model.embed_dim': [8, 16], 'model.ppnet_hidden': [32, 64]},
              seeds=[0, 1, 2])
  pts = sw.expand_points(decl)
  assert len(pts) == 3 * 2 * 2 * 3
  # seeds vary slowest, so the first 12 points are seed 0 of every configuration
  assert {p.seed for p in pts[:12]} == {0}
  assert len({p.config_name for p in pts[:12]}) == 12
  assert pts[0].overrides == {'model.gamma': 1.0, 'model.embed_dim': 8, 'model.ppnet_hidden': 32,
                              'train.seed': 0, 'data.seed': 0}
  assert pts[4].overrides['model.use_epnet'] is False
  assert all(p.overrides['train.seed'] == p.overrides['data.seed'] == p.seed for p in pts)
  assert len({p.name for p in pts}) == len(pts)


def test_empty_declaration_is_one_base_run():
  [p] = sw.expand_points({})
  assert (p.name, p.overrides, p.seed) == ('base', {}, None)


@pytest.mark.parametrize('decl, msg', [
    ({'product': {'model.gamma': [1.0]}, 'zip': {'model.gamma': [2.0]}}, "'model.gamma' is set by both"),
    ({'product': {'train.seed': [1]}, 'seeds': [0]}, "'train.seed' is set by both"),
    ({'points': [{'model.gamma': 1.0}], 'product': {'model.gamma': [2.0]}}, 'model.gamma'),
    ({'product': {'model.gamma': 1.5}}, 'must be a list'),
    ({'product': {'model.gamma': []}}, 'is empty'),
    ({'prodcut': {'model.gamma': [1.0]}}, 'unknown keys'),
    ({'product': {'config.model.gamma': [1.0]}}, 'without "config."'),
    ({'points': [{'model.gamma': 1.0}, {'model.gamma': 1.0}]}, 'both named'),
])
def test_bad_declarations_raise_clear_errors(decl, msg):
  with pytest.raises(ValueError, match=msg):
    sw.expand(decl)


# -------------------------------------------------------------------- names

def test_names_are_readable_stable_and_filesystem_safe():
  decl = dict(product={'model.gamma': [1.5], 'model.tower': [(128, 64)],
                       'model.use_epnet': [False], 'data.dir': ['/a b/c'],
                       'optim.dense.lr': [1e-5]}, seeds=[0])
  [p] = sw.expand_points(decl)
  assert p.name == ('model.gamma=1.5,model.tower=128-64,model.use_epnet=false,'
                    'data.dir=_a_b_c,optim.dense.lr=1e-05,seed=0')
  assert p.config_name == p.name[:-len(',seed=0')]
  assert [q.name for q in sw.expand_points(decl)] == [p.name]  # stable
  assert sw.point_name(p.overrides, seed=0) == p.name
  long = sw.expand_points({'product': {'data.dir': ['x' * 300, 'x' * 299 + 'y']}})
  assert all(len(q.name) <= 150 for q in long) and long[0].name != long[1].name


def test_point_labels_aliases_and_callable_names():
  pts = sw.expand_points(dict(points=[{}, {'_name': 'no_epnet', 'model.use_epnet': False}],
                              product={'model.gamma': [1.0]}, names={'model.gamma': 'gamma'},
                              seeds=[3]))
  assert [p.name for p in pts] == ['gamma=1.0,seed=3', 'no_epnet,gamma=1.0,seed=3']
  assert '_name' not in pts[1].overrides
  pts = sw.expand_points(dict(product={'model.gamma': [1.0, 2.5]},
                              names=lambda o: f"g{o['model.gamma']}", seeds=[0]))
  assert [p.name for p in pts] == ['g1.0,seed=0', 'g2.5,seed=0']


# ---------------------------------------------------------- command lines

@pytest.fixture
def experiment(tmp_path):
  path = tmp_path / 'exp.py'
  path.write_text(EXPERIMENT)
  return str(path)


def test_command_line_values_parse_back_through_config_flags(experiment):
  over = {'model.gamma': 1.5, 'model.tower': (128, 64), 'data.tabs': (1,),
          'model.use_epnet': False, 'model.name': 'mmoe', 'optim.dense.lr': 1e-5,
          'model.embed_dim': 8}
  args = sw.cli_args(over)
  assert '--config.model.use_epnet=false' in args and '--config.model.tower=(128,64)' in args
  cfg = sw.parse_config(experiment + ':tiny', args)
  assert cfg.train.num_steps == 3  # the preset reached get_config
  for k, v in over.items():
    section, field = k.rsplit('.', 1)
    node = cfg
    for part in section.split('.'):
      node = node[part]
    assert node[field] == v and type(node[field]) is type(v), k
  cmd = sw.command(experiment, '/tmp/w', {'model.gamma': 2.0}, ['--config.train.num_steps=5'])
  assert cmd[0] == sys.executable and cmd[1].endswith('run.py')
  assert cmd[2:] == ['--config', experiment, '--workdir', '/tmp/w',
                     '--config.train.num_steps=5', '--config.model.gamma=2.0']


def test_validate_rejects_unknown_fields(experiment):
  with pytest.raises(ValueError, match='gama'):
    sw.validate(experiment, sw.expand_points({'product': {'model.gama': [1.0]}}))


def test_default_runner_logs_output_and_returns_exit_code(tmp_path):
  log = tmp_path / 'log.txt'
  rc = sw.default_runner([sys.executable, '-c', 'import sys; print("out"); '
                          'print("err", file=sys.stderr); sys.exit(3)'], None, str(log))
  assert rc == 3
  assert 'out' in log.read_text() and 'err' in log.read_text()


# ------------------------------------------------------------------ running

def test_skips_finished_points(tmp_path, experiment):
  sweep_dir = tmp_path / 'sweep'
  points = sw.expand_points({'product': {'model.gamma': [1.0, 2.0, 3.0]}})
  done = sweep_dir / points[1].name
  done.mkdir(parents=True)
  (done / 'report.json').write_text(json.dumps(fake_report()))
  fake = FakeRunner()
  recs = sw.run_sweep(experiment, str(sweep_dir), points, runner=fake, aggregate=False,
                      out=lambda *_: None)
  assert fake.calls == [points[0].name, points[2].name]
  assert [r['status'] for r in recs] == ['done'] * 3
  assert 'fake run of' in (sweep_dir / points[0].name / 'log.txt').read_text()
  state = json.loads((sweep_dir / 'sweep.json').read_text())
  assert [p['name'] for p in state['points']] == [p.name for p in points]
  assert state['points'][0]['overrides'] == {'model.gamma': 1.0}
  fake2 = FakeRunner()
  sw.run_sweep(experiment, str(sweep_dir), points, runner=fake2, aggregate=False,
               out=lambda *_: None)
  assert fake2.calls == []  # everything finished: nothing reruns


def test_interrupted_point_is_rerun_and_resumes(tmp_path, experiment):
  sweep_dir = tmp_path / 'sweep'
  points = sw.expand_points({'product': {'model.gamma': [1.0, 2.0]}})
  fake = FakeRunner(crash_first={points[0].name})
  recs = sw.run_sweep(experiment, str(sweep_dir), points, runner=fake, aggregate=False,
                      out=lambda *_: None)
  assert [r['status'] for r in recs] == ['failed', 'done']  # one crash did not stop the sweep
  assert recs[0]['returncode'] == 1
  state = json.loads((sweep_dir / 'sweep.json').read_text())
  assert state['points'][0]['status'] == 'failed'
  recs = sw.run_sweep(experiment, str(sweep_dir), points, runner=fake, aggregate=False,
                      out=lambda *_: None)
  assert fake.calls == [points[0].name, points[1].name, points[0].name]
  assert [r['status'] for r in recs] == ['done', 'done']
  assert recs[0]['attempts'] == 2


def test_retries_rerun_a_failed_point_in_the_same_invocation(tmp_path, experiment):
  points = sw.expand_points({'product': {'model.gamma': [1.0]}})
  fake = FakeRunner(crash_first={points[0].name})
  [rec] = sw.run_sweep(experiment, str(tmp_path), points, runner=fake, retries=1,
                       aggregate=False, out=lambda *_: None)
  assert rec['status'] == 'done' and len(fake.calls) == 2


def test_parallel_runs_all_points_two_at_a_time(tmp_path, experiment):
  points = sw.expand_points({'product': {'model.gamma': [1.0, 2.0, 3.0, 4.0]}, 'seeds': [0]})
  fake = FakeRunner(delay=0.3)
  recs = sw.run_sweep(experiment, str(tmp_path), points, runner=fake, parallel=2,
                      aggregate=False, out=lambda *_: None)
  assert sorted(fake.calls) == sorted(p.name for p in points)
  assert all(r['status'] == 'done' for r in recs)
  assert fake.max_active == 2
  assert all((tmp_path / p.name / 'report.json').exists() for p in points)


def test_cli_runs_the_files_sweep_with_extra_overrides_and_aggregates(tmp_path, experiment,
                                                                      capsys):
  sweep_dir = tmp_path / 'sweep'
  seen = []

  def runner(cmd, point, log_path):
    seen.append(cmd)
    return FakeRunner()(cmd, point, log_path)

  argv = ['--config', experiment + ':tiny', '--workdir', str(sweep_dir),
          '--config.train.num_steps=7', '--only', 'no_epnet']
  assert sw.main(argv + ['--dry_run'], runner=runner) == 0
  assert seen == [] and not sweep_dir.exists()
  assert 'no_epnet,model.gamma=1.0,seed=0' in capsys.readouterr().out
  assert sw.main(argv, runner=runner) == 0
  assert len(seen) == 4  # 2 gammas x 2 seeds of the no_epnet point
  for cmd in seen:
    assert cmd[cmd.index('--config') + 1].endswith('exp.py:tiny')
    assert '--config.train.num_steps=7' in cmd and '--config.model.use_epnet=false' in cmd
  state = json.loads((sweep_dir / 'sweep.json').read_text())
  assert len(state['points']) == 8 and state['extra_overrides'] == ['--config.train.num_steps=7']
  assert sum(p['status'] == 'done' for p in state['points']) == 4
  assert (sweep_dir / 'results.csv').exists() and (sweep_dir / 'results.md').exists()
  # overriding a swept field for every point is a contradiction
  assert sw.main(['--config', experiment, '--workdir', str(sweep_dir),
                  '--config.model.gamma=3.0'], runner=runner) == 2
  assert 'model.gamma is swept' in capsys.readouterr().err


def test_runs_of_another_configuration_are_refused_not_skipped(tmp_path, experiment, capsys):
  """A finished point whose config.json differs from this sweep's (here: another
  preset) must not be counted as done; the error names the point and field."""
  sweep_dir = tmp_path / 'sweep'
  points = sw.expand_points(sw.load_sweep(experiment))
  cfg = json.loads(sw.parse_config(experiment + ':tiny',
                                   sw.cli_args(points[0].overrides)).to_json_best_effort())
  cfg['model']['field_added_later'] = 1  # only one side has it: ignored
  run = sweep_dir / points[0].name
  run.mkdir(parents=True)
  (run / 'config.json').write_text(json.dumps(cfg))
  (run / 'report.json').write_text(json.dumps(fake_report()))
  assert sw.stale_points(sw.validate(experiment + ':tiny', points), str(sweep_dir)) == []
  fake = FakeRunner()
  assert sw.main(['--config', experiment, '--workdir', str(sweep_dir)], runner=fake) == 2
  err = capsys.readouterr().err
  assert points[0].name in err and 'train.num_steps (was 3, now 100)' in err
  assert fake.calls == []


# ------------------------------------------------------- compilation cache

def test_points_share_a_jax_compilation_cache(tmp_path):
  env = sw.point_env(str(tmp_path), environ={'PATH': '/bin'})
  assert env['JAX_COMPILATION_CACHE_DIR'] == str(tmp_path / '.jax_cache')
  assert env['JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS'] == '0'
  assert env['JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'] == '0'
  assert env['PATH'] == '/bin' and 'XLA_PYTHON_CLIENT_MEM_FRACTION' not in env
  mine = sw.point_env(str(tmp_path), 2, environ={'JAX_COMPILATION_CACHE_DIR': '/mine'})
  assert mine['JAX_COMPILATION_CACHE_DIR'] == '/mine'  # the user's setting wins
  assert mine['XLA_PYTHON_CLIENT_MEM_FRACTION'] == '0.450'
  assert sw.point_env(str(tmp_path), compile_cache=False, environ={}) is None
  # the subprocess sees them
  log = tmp_path / 'log.txt'
  sw.default_runner([sys.executable, '-c', 'import os; print(os.environ["JAX_COMPILATION_CACHE_DIR"])'],
                    None, str(log), env=env)
  assert str(tmp_path / '.jax_cache') in log.read_text()
  # and they are the names this jax reads its options from
  jax = pytest.importorskip('jax')
  for name in ('JAX_COMPILATION_CACHE_DIR', 'JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS',
               'JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES'):
    assert name.lower() in jax.config.values, name


def test_sweep_modules_import_each_other_without_a_cycle():
  """aggregate and sweep once imported each other; the shared parts now live
  in pepnet_jax.sweeps.common, which imports neither. Imports inside functions count."""
  names = {'pepnet_jax.sweeps.cli', 'pepnet_jax.sweeps.aggregate'}
  graph = {m: {d for d in deps if d in names or d.startswith('pepnet_jax.sweeps.')}
           for m, deps in import_graph(function_level=True).items()
           if m in names or m.startswith('pepnet_jax.sweeps.')}
  assert 'pepnet_jax.sweeps.common' in graph and 'pepnet_jax.sweeps.search' in graph
  assert 'pepnet_jax.sweeps.cli' not in graph['pepnet_jax.sweeps.aggregate']
  assert graph['pepnet_jax.sweeps.common'] == set()
  assert not import_cycles(graph), import_cycles(graph)
