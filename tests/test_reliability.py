"""Unit tests of the trainer's guards: config checks, cold-start ids, the
row-sparse group's regex, skipping non-finite steps, resumed metric logs."""

import json
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax import configs
from pepnet_jax.training import cold_start, interrupts, optim, train, writers
from pepnet_jax.data import synthetic
from pepnet_jax.features import OOV_ID, PAD_ID
from pepnet_jax.models import build_model


@pytest.mark.parametrize('field,value', [('num_epochs', 0.0), ('num_steps', -5),
                                         ('log_every', 0), ('keep_checkpoints', 0),
                                         ('oov_rate', 1.5), ('nonfinite', 'ignore')])
def test_training_config_errors_name_the_field(field, value):
  c = configs.base_config()
  c.train[field] = value
  with pytest.raises(ValueError, match=f'config.train.{field}='):
    configs.validate_train(c)


@pytest.mark.parametrize('recipe', sorted(configs.RECIPES))
def test_each_recipe_and_the_edge_of_each_range_is_accepted(recipe):
  """The base config under every recipe validates, and so does each field at the edge
  of its range (where an off-by-one check would refuse it); one step past it is refused."""
  c = configs.apply_recipe(configs.base_config(), recipe)
  assert configs.validate_train(c) is None
  edges = {'num_steps': (0, -1), 'log_every': (1, 0), 'eval_every': (0, -1),
           'checkpoint_every': (0, -1), 'keep_checkpoints': (1, 0), 'oov_rate': (0.0, 1.0),
           'max_skipped_steps': (0, -1), 'select_min_positives': (0, -1)}
  for field, (ok, bad) in edges.items():
    c = configs.apply_recipe(configs.base_config(), recipe)
    c.train[field] = ok
    configs.validate_train(c)
    c.train[field] = bad
    with pytest.raises(ValueError, match=f'config.train.{field}='):
      configs.validate_train(c)
  c = configs.apply_recipe(configs.base_config(), recipe)
  c.train.num_steps, c.train.num_epochs = 5, 0.0  # num_steps > 0 overrides the epochs
  configs.validate_train(c)
  c.train.select_min_positives, c.train.select_metric = 10, 'loss'
  with pytest.raises(ValueError, match='config.train.select_metric='):
    configs.validate_train(c)
  c.train.select_min_positives, c.data.batch_size = 0, 0
  with pytest.raises(ValueError, match='config.data.batch_size=0'):
    configs.validate_train(c)


def test_drop_entities_makes_whole_users_unseen_deterministically():
  n = 20000
  feats = {'user_id': np.arange(2, n + 2, dtype=np.int32),
           'onehot_feat0': np.full(n, 5, np.int32),
           'follow_user_num': np.full(n, 1.5, np.float32),
           'tag': np.tile(np.array([[5, 6, 7]], np.int32), (n, 1)),
           'video_id': np.full(n, 9, np.int32), 'tab': np.full(n, 3, np.int32)}
  kinds = {'user_id': 'categorical', 'onehot_feat0': 'categorical', 'follow_user_num': 'dense',
           'tag': 'multi', 'video_id': 'categorical', 'tab': 'categorical'}
  ents = {'user': ['user_id', 'onehot_feat0', 'follow_user_num'], 'video': ['video_id', 'tag']}
  a = cold_start.drop_entities(feats, ents, kinds, 0.05, seed=1, step=7)
  b = cold_start.drop_entities(feats, ents, kinds, 0.05, seed=1, step=7)
  c = cold_start.drop_entities(feats, ents, kinds, 0.05, seed=1, step=8)
  for k in feats:
    np.testing.assert_array_equal(a[k], b[k])
  assert not np.array_equal(a['user_id'], c['user_id'])
  cold_user = a['user_id'] == OOV_ID
  assert 0.04 < cold_user.mean() < 0.06
  # A cold user has every user-side feature missing at once, and nothing else.
  assert np.all(a['onehot_feat0'][cold_user] == OOV_ID)
  assert np.all(a['follow_user_num'][cold_user] == 0.0)
  assert np.all(a['onehot_feat0'][~cold_user] == 5)
  cold_video = a['video_id'] == OOV_ID
  assert np.all(a['tag'][cold_video] == [OOV_ID, PAD_ID, PAD_ID])
  assert not np.array_equal(cold_user, cold_video)  # independent draws
  np.testing.assert_array_equal(a['tab'], feats['tab'])
  np.testing.assert_array_equal(feats['user_id'], np.arange(2, n + 2))  # input untouched


def test_entity_columns_match_the_kuairand_feature_files():
  from pepnet_jax.data import formats, kuairand
  cols = formats.get('kuairand').entities
  assert set(cols['user']) | set(cols['video']) == set(kuairand.FEATURE_FILE_COLUMNS)
  assert not set(cols['user']) & set(cols['video'])


def test_entity_features_of_the_kuairand_preset_leave_out_the_domain():
  from pepnet_jax import features
  spec = features.spec_from_config(configs.base_config().data)
  ents = cold_start.entity_features(spec)
  assert 'user_id' in ents['user'] and 'onehot_feat3' in ents['user']
  assert {'video_id', 'author_id', 'tag'} <= set(ents['video'])
  assert 'tab' not in ents['user'] + ents['video']
  assert 'duration' not in ents['video']  # from the log, known for any video


def _model_and_batch(c):
  infos, spec = synthetic.bench_features(video_vocab=300, user_vocab=200, author_vocab=50)
  c.model.tower = (16,)
  c.model.ppnet_hidden = 8
  model = build_model(c.model, infos, spec)
  batch = synthetic.make_batches(infos, spec, 1, 64, seed=3)[0]
  return model, train.device_batch(batch)


def test_sparse_update_honours_the_embedding_regex():
  """A table the embedding regex leaves out is trained by the dense group's
  optimizer (Adam), not by the row-sparse AdaGrad."""
  c = configs.base_config()
  c.optim.embedding.regex = r'^embed/(user_id|video_id)$'
  c.optim.dense.lr = 1e-3
  model, batch = _model_and_batch(c)
  steps = train.make_steps(model, c, 10)
  state = steps.init(jax.random.key(0), batch)
  assert set(state.emb_acc['embed']) == {'user_id', 'video_id'}
  groups = optim.describe(state.params, c.optim)
  assert 'embed/author_id' in groups['dense']
  new, m = jax.jit(steps.train_step)(state, batch)
  assert bool(m['finite'])
  moved = np.abs(np.asarray(new.params['embed']['author_id'])
                 - np.asarray(state.params['embed']['author_id']))
  # Adam's first step moves each touched entry by ~lr; AdaGrad 0.05 would move it by ~0.05.
  assert 0 < moved.max() < 2e-3


def test_sparse_group_regex_on_a_dense_layer_is_refused():
  """The error names the regex, the first three parameters it wrongly takes (in a stable
  order) and the sparse group."""
  c = configs.base_config()
  c.optim.embedding.regex = r'.*'
  model, batch = _model_and_batch(c)
  steps = train.make_steps(model, c, 10)
  params = jax.eval_shape(model.init, jax.random.key(0), batch['features'], batch['domain'])
  dense = sorted('/'.join(str(k.key) for k in path)
                 for path, _ in jax.tree.leaves_with_path(params['params'])
                 if path[0].key != 'embed')
  assert len(dense) > 3
  with pytest.raises(ValueError) as e:
    steps.init(jax.random.key(0), batch)
  assert str(e.value) == (
      f"config.optim.embedding.regex='.*' matches {dense[:3]}, which are not embedding "
      "tables; the row-sparse group (config.optim.sparse_group='embedding') can only hold "
      'tables under embed/')


def test_an_unknown_schedule_of_the_sparse_group_is_named():
  """The row-sparse group's schedule is built apart from optax's groups; its error names
  that group's field like theirs."""
  c = configs.base_config()
  c.optim.embedding.schedule = 'cosinus'
  model, _ = _model_and_batch(c)
  with pytest.raises(ValueError) as e:
    train.make_steps(model, c, 10)
  assert str(e.value) == ("config.optim.embedding.schedule='cosinus': use "
                          'constant|cosine|warmup_cosine|linear')


def _step_on_a_nan_label(c):
  """(steps, initial state, batch, state after one step, its metrics) for a batch whose
  first label is NaN, so that the step's loss is not finite."""
  model, batch = _model_and_batch(c)
  steps = train.make_steps(model, c, 10)
  state = steps.init(jax.random.key(0), batch)
  labels = np.array(batch['labels'])
  labels[0, 0] = np.nan
  new, m = jax.jit(steps.train_step)(state, dict(batch, labels=labels))
  return steps, state, batch, new, m


def _same_params(a, b) -> bool:
  return all(jax.tree.leaves(jax.tree.map(lambda x, y: bool(jnp.array_equal(x, y)),
                                          a.params, b.params)))


@pytest.mark.parametrize('sparse_group', ['embedding', ''])
def test_skip_mode_leaves_the_state_unchanged_on_a_nonfinite_step(sparse_group):
  c = configs.base_config()
  c.optim.sparse_group = sparse_group
  c.train.nonfinite = 'skip'
  steps, state, batch, new, m = _step_on_a_nan_label(c)
  assert not bool(m['finite'])
  assert int(new.step) == 1
  assert _same_params(new, state)
  good, m = jax.jit(steps.train_step)(new, batch)
  assert bool(m['finite']) and not jnp.array_equal(good.params['embed']['user_id'],
                                                   state.params['embed']['user_id'])


def test_without_a_nonfinite_field_a_nonfinite_step_is_not_undone():
  """``config.train.nonfinite`` defaults to 'stop': the step leaves a non-finite update in
  place (the loop then stops the run and saves nothing); it does not keep the old state as
  'skip' does."""
  c = configs.base_config()
  del c.train['nonfinite']
  steps, state, _, new, m = _step_on_a_nan_label(c)
  assert not bool(m['finite'])
  assert not _same_params(new, state)
  c.train.nonfinite = 'ignore'
  with pytest.raises(ValueError) as e:
    train.make_steps(steps.model, c, 10)
  assert str(e.value) == "config.train.nonfinite='ignore': use 'stop' or 'skip'"


@pytest.mark.parametrize('nonfinite', ['stop', 'skip'])
def test_a_step_is_finite_only_when_its_loss_and_its_gradient_norm_both_are(nonfinite):
  """The guard's flag: a finite loss with a non-finite gradient (or the reverse) is a
  non-finite step, and under 'skip' it leaves the state as it was."""
  from pepnet_jax.training.steps import TrainState, _guarded
  old = TrainState(jnp.zeros((), jnp.int32), {'w': jnp.ones(2)}, (), {})
  moved = TrainState(jnp.ones((), jnp.int32), {'w': jnp.full(2, 3.0)}, (), {})
  for loss, norm, finite in ((1.0, 2.0, True), (1.0, np.nan, False), (np.inf, 2.0, False),
                             (np.nan, np.inf, False)):
    step = _guarded(lambda s, b: (moved, (jnp.float32(loss), jnp.zeros(2), jnp.float32(norm))),
                    nonfinite)
    new, m = step(old, None)
    assert bool(m['finite']) == finite, (loss, norm)
    assert int(new.step) == 1
    kept = nonfinite == 'skip' and not finite
    np.testing.assert_array_equal(new.params['w'], old.params['w'] if kept else moved.params['w'])


def test_finite_guard_stops_naming_step_and_tasks():
  class Ckpt:
    directory = '/x/checkpoints'
    def wait(self): pass
    def latest_step(self): return 20
  guard = train._FiniteGuard('stop', ('is_click', 'is_like'), Ckpt(), 10)
  ok = {'finite': True, 'loss': 1.0, 'grad_norm': 1.0, 'task_loss': [0.5, 0.5]}
  bad = {'finite': False, 'loss': float('nan'), 'grad_norm': float('nan'),
         'task_loss': [float('nan'), 0.3]}
  guard.push(21, ok)
  guard.push(22, bad)
  with pytest.raises(interrupts.NonFiniteLoss, match=r'step 22.*is_click nan.*step 20'):
    guard.check()


def test_finite_guard_skip_mode_gives_up_after_max_skipped_in_a_row():
  class Ckpt:
    directory = '/x'
    def wait(self): pass
    def latest_step(self): return None
  guard = train._FiniteGuard('skip', ('t',), Ckpt(), 2)
  bad = {'finite': False, 'loss': float('nan'), 'grad_norm': 1.0, 'task_loss': [float('nan')]}
  ok = {'finite': True, 'loss': 1.0, 'grad_norm': 1.0, 'task_loss': [1.0]}
  for step, m in enumerate([bad, bad, ok, bad, bad], 1):
    guard.push(step, m)
  guard.check()
  assert guard.skipped == 4
  guard.push(6, bad)
  with pytest.raises(interrupts.NonFiniteLoss, match='3 steps in a row'):
    guard.check()


def test_metric_writer_drops_lines_after_the_resumed_step(tmp_path):
  w = writers.MetricWriter(str(tmp_path), tensorboard=False)
  for step in (10, 20, 30, 40):
    w.write(step, 'train', {'loss': 1.0})
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 50, "spl')  # cut short by a kill
  w.drop_after(20)
  steps = [json.loads(l)['step'] for l in open(tmp_path / 'metrics.jsonl')]
  assert steps == [10, 20]


def test_deferred_signal_sets_the_flag_then_restores_the_handler():
  before = signal.getsignal(signal.SIGTERM)
  flag = interrupts.StopFlag()
  with interrupts.deferred(flag):
    signal.raise_signal(signal.SIGTERM)
    assert flag.signum == signal.SIGTERM and flag.name == 'SIGTERM'
  assert signal.getsignal(signal.SIGTERM) is before


def test_throughput_leaves_validation_time_out():
  now = [0.0]
  t = writers.Throughput(clock=lambda: now[0])
  t.add(100)
  now[0] = 1.0
  assert t.rate() == 100.0
  t.add(100)
  now[0] = 2.0           # trained 1 s
  t.pause(10.0)          # then validated for 10 s
  now[0] = 12.0
  t.add(100)
  now[0] = 13.0          # trained 1 s more
  assert t.rate() == pytest.approx(100.0)


def test_progress_report_logs_the_scalars_and_prints_one_line_per_split(tmp_path):
  import io
  import json
  now = [100.0]
  out = io.StringIO()
  writer = writers.MetricWriter(str(tmp_path), tensorboard=False)
  p = writers.Progress(total_steps=110, start_step=10, writer=writer, stream=out,
                       clock=lambda: now[0])
  now[0] = 110.0  # 10 s for steps 11..20: 90 steps left take 90 s
  p.report(20, 'train', {'loss': 0.51234, 'examples_per_sec': 1234.4, 'skipped_steps': 2})
  p.report(20, 'valid', {'mean_auc': 0.71, 'mean_gauc': 0.65, 'mean_logloss': 0.2,
                         'auc/is_click': 0.7}, note='(best)')
  lines = out.getvalue().splitlines()
  assert lines == ['step      20/110 | loss 0.5123 | 1,234 ex/s | ETA 0:01:30 | 2 skipped',
                   '  valid @ 20: mean AUC 0.7100  GAUC 0.6500  logloss 0.2000  (best)']
  records = [json.loads(l) for l in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [(r['step'], r['split']) for r in records] == [(20, 'train'), (20, 'valid')]
  assert records[1]['auc/is_click'] == 0.7 and records[0]['skipped_steps'] == 2


def test_a_cross_with_the_video_goes_cold_with_the_video():
  from pepnet_jax import features
  c = configs.base_config()
  c.data.crosses = ('tab,video_id',)
  ents = cold_start.entity_features(features.spec_from_config(c.data))
  assert 'tab_x_video_id' in ents['video'] and 'tab_x_video_id' not in ents['user']


def test_sparse_group_and_task_weight_errors_name_the_field_word_by_word():
  import re

  import ml_collections
  from pepnet_jax.training import steps
  c = configs.base_config()
  assert steps._checked_sparse_group(c.optim) == 'embedding'
  c.optim.sparse_group = 'tables'
  with pytest.raises(ValueError, match=re.escape(
      "config.optim.sparse_group='tables' is not in config.optim.groups")):
    steps._checked_sparse_group(c.optim)
  c.optim.sparse_group = 'dense'
  with pytest.raises(ValueError, match=re.escape(
      "config.optim.sparse_group='dense' needs optimizer adagrad, "
      "got config.optim.dense.optimizer='adam'")):
    steps._checked_sparse_group(c.optim)
  old = c.optim.to_dict()
  del old['sparse_group']  # a config written before the field: no row-sparse group
  assert steps._checked_sparse_group(ml_collections.ConfigDict(old)) == ''
  weights = steps._task_weights_fn(c)(3)
  assert weights.dtype == jnp.float32
  np.testing.assert_array_equal(weights, [1.0, 1.0, 1.0])
  c.train.task_weights = (1.0, 2.5)
  np.testing.assert_array_equal(steps._task_weights_fn(c)(2), [1.0, 2.5])
  with pytest.raises(ValueError, match=re.escape(
      'config.train.task_weights has 2 values for 3 tasks (config.data.tasks); '
      'use () for all ones')):
    steps._task_weights_fn(c)(3)
