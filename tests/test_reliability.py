"""Unit tests of the trainer's guards: config checks, cold-start ids, the
row-sparse group's regex, skipping non-finite steps, resumed metric logs."""

import json
import signal

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax import cold_start, configs, interrupts, optim, synthetic, train, writers
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


def test_base_config_is_valid():
  configs.validate_train(configs.base_config())


def test_drop_ids_is_deterministic_keeps_padding_and_hits_the_rate():
  ids = np.arange(2, 20002, dtype=np.int32)
  multi = np.tile(np.array([[5, 6, PAD_ID]], np.int32), (5000, 1))
  feats = {'user_id': ids, 'tag': multi, 'tab': np.full(20000, 3, np.int32)}
  a = cold_start.drop_ids(feats, ['user_id', 'tag'], 0.05, seed=1, step=7)
  b = cold_start.drop_ids(feats, ['user_id', 'tag'], 0.05, seed=1, step=7)
  c = cold_start.drop_ids(feats, ['user_id', 'tag'], 0.05, seed=1, step=8)
  np.testing.assert_array_equal(a['user_id'], b['user_id'])
  assert not np.array_equal(a['user_id'], c['user_id'])
  share = np.mean(a['user_id'] == OOV_ID)
  assert 0.04 < share < 0.06
  assert np.all(a['tag'][:, 2] == PAD_ID)  # padding never becomes OOV
  np.testing.assert_array_equal(a['tab'], feats['tab'])  # not named: untouched
  kept = a['user_id'] != OOV_ID
  np.testing.assert_array_equal(a['user_id'][kept], ids[kept])


def test_id_features_leave_out_domain_fields():
  infos, _ = synthetic.bench_features(video_vocab=300, user_vocab=200, author_vocab=50)
  names = cold_start.id_features(infos)
  assert names and all(i.shared for i in infos if i.name in names)
  assert all(i.kind in cold_start.ID_KINDS for i in infos if i.name in names)


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
  c = configs.base_config()
  c.optim.embedding.regex = r'.*'
  model, batch = _model_and_batch(c)
  steps = train.make_steps(model, c, 10)
  with pytest.raises(ValueError, match='not embedding tables'):
    steps.init(jax.random.key(0), batch)


@pytest.mark.parametrize('sparse_group', ['embedding', ''])
def test_skip_mode_leaves_the_state_unchanged_on_a_nonfinite_step(sparse_group):
  c = configs.base_config()
  c.optim.sparse_group = sparse_group
  c.train.nonfinite = 'skip'
  model, batch = _model_and_batch(c)
  steps = train.make_steps(model, c, 10)
  state = steps.init(jax.random.key(0), batch)
  labels = np.array(batch['labels'])
  labels[0, 0] = np.nan
  bad = dict(batch, labels=labels)
  new, m = jax.jit(steps.train_step)(state, bad)
  assert not bool(m['finite'])
  assert int(new.step) == 1
  same = jax.tree.map(lambda a, b: bool(jnp.array_equal(a, b)), new.params, state.params)
  assert all(jax.tree.leaves(same))
  good, m = jax.jit(steps.train_step)(new, batch)
  assert bool(m['finite']) and not jnp.array_equal(good.params['embed']['user_id'],
                                                   state.params['embed']['user_id'])


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
