"""Regularisers of the training recipe: tower dropout and L2 on touched embedding rows."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax import configs
from pepnet_jax.data import synthetic
from pepnet_jax.training import train
from pepnet_jax.models import build_model


def setup(dropout=0.0, embed_l2=0.0, name='pepnet', sparse_group='embedding', optimizer=None,
          dense_group=None, leave_out=()):
  infos, spec = synthetic.bench_features(video_vocab=300, user_vocab=200, author_vocab=50)
  c = configs.base_config()
  c.model.name = name
  c.model.tower = (32, 16)
  c.model.ppnet_hidden = 8
  c.model.dropout = dropout
  c.train.embed_l2 = embed_l2
  c.optim.sparse_group = sparse_group
  if optimizer:  # (name, rate) for every group
    for g in c.optim.groups:
      c.optim[g].optimizer, c.optim[g].lr = optimizer
  if dense_group:  # fields of the dense group
    c.optim.dense.update(dense_group)
  for field in leave_out:  # 'section.name': a field a config may leave out
    section, name = field.split('.')
    del c[section][name]
  model = build_model(c.model, infos, spec)
  batch = train.device_batch(synthetic.make_batches(infos, spec, 1, 128, seed=5)[0])
  steps = train.make_steps(model, c, 10)
  return steps, steps.init(jax.random.key(0), batch), batch


# PEPNet on the row-sparse path, MMoE on the dense one (both paths pass the step to dropout).
@pytest.mark.parametrize('name,sparse_group', [('pepnet', 'embedding'), ('mmoe', '')])
def test_dropout_acts_in_training_only_and_is_reproducible(name, sparse_group):
  plain_steps, state, batch = setup(0.0, name=name, sparse_group=sparse_group)
  drop_steps, _, _ = setup(0.5, name=name, sparse_group=sparse_group)
  _, m0 = jax.jit(plain_steps.train_step)(state, batch)
  _, m1 = jax.jit(drop_steps.train_step)(state, batch)
  _, m2 = jax.jit(drop_steps.train_step)(state, batch)
  assert float(m0['loss']) != float(m1['loss'])
  assert float(m1['loss']) == float(m2['loss'])  # same step, same masks
  _, m3 = jax.jit(drop_steps.train_step)(state.replace(step=state.step + 1), batch)
  assert float(m3['loss']) != float(m1['loss'])  # the next step draws new masks
  np.testing.assert_array_equal(drop_steps.eval_step(state.params, batch),
                                plain_steps.eval_step(state.params, batch))


def test_a_config_without_dropout_or_embed_l2_trains_without_them():
  plain, state, batch = setup(0.0, 0.0)
  bare, _, _ = setup(leave_out=('model.dropout', 'train.embed_l2'))
  _, m0 = jax.jit(plain.train_step)(state, batch)
  _, m1 = jax.jit(bare.train_step)(state, batch)
  assert float(m1['loss']) == float(m0['loss'])


@pytest.mark.parametrize('sparse_group', ['embedding', ''])
def test_embed_l2_adds_the_touched_rows_norm_to_the_loss(sparse_group):
  plain, state, batch = setup(0.0, 0.0, sparse_group=sparse_group)
  reg, _, _ = setup(0.0, 0.5, sparse_group=sparse_group)
  _, m0 = jax.jit(plain.train_step)(state, batch)
  new, m1 = jax.jit(reg.train_step)(state, batch)
  rows = plain.model.apply({'params': state.params}, batch['features'], method='lookup')
  expected = 0.0
  for name, r in rows.items():
    sq = np.sum(np.square(np.asarray(r)), -1) * (np.asarray(batch['features'][name]) != 0)
    expected += np.sum(sq.reshape(len(sq), -1), -1)
  expected = np.sum(expected * batch['weight']) / np.sum(batch['weight'])
  assert float(m1['loss']) - float(m0['loss']) == pytest.approx(0.5 * expected, rel=1e-4)
  # Per-task losses (what the log shows) leave the penalty out.
  np.testing.assert_allclose(m1['task_loss'], m0['task_loss'], rtol=1e-6)
  # Rows the batch did not touch are not regularised (row-sparse semantics).
  touched = np.unique(np.asarray(batch['features']['user_id']))
  untouched = np.setdiff1d(np.arange(state.params['embed']['user_id'].shape[0]), touched)
  np.testing.assert_array_equal(np.asarray(new.params['embed']['user_id'])[untouched],
                                np.asarray(state.params['embed']['user_id'])[untouched])


@pytest.mark.parametrize('name,values', [('converge', configs.CONVERGE),
                                         ('converge_fast', configs.CONVERGE_FAST),
                                         ('budget', configs.BUDGET)])
def test_recipes_set_their_rates_and_regularisers(name, values):
  c = configs.apply_recipe(configs.base_config(), name, max_epochs=7)
  got = dict(embed_lr=c.optim.embedding.lr, dense_lr=c.optim.dense.lr,
             embed_l2=c.train.embed_l2, dropout=c.model.dropout)
  assert got == values
  # 'budget' ends on its best step: one validation, after it; the others stop early.
  assert (c.train.recipe, c.train.num_epochs, c.train.patience, c.train.valid_at_end) == (
      name, 7.0, 0 if name == 'budget' else 2, name == 'budget')
  assert f"recipe '{name}'" in configs.describe_recipe(c)
  with pytest.raises(ValueError, match='config.train.recipe'):
    configs.apply_recipe(c, 'convergent')


def test_rows_l2_is_the_mean_over_real_rows_of_every_touched_rows_squared_norm():
  """Single and multi-valued fields, padding ids left out, padding rows (weight 0) out of
  the mean, and a batch with one real row averaged over that row alone."""
  from pepnet_jax.training import steps
  rng = np.random.default_rng(3)
  single = rng.normal(size=(4, 5)).astype(np.float32)
  multi = rng.normal(size=(4, 3, 5)).astype(np.float32)
  ids = {'user_id': np.array([7, 0, 2, 9]),
         'tag': np.array([[1, 4, 0], [0, 0, 0], [3, 3, 5], [2, 0, 0]])}
  rows = {'user_id': jnp.asarray(single), 'tag': jnp.asarray(multi)}
  per_row = (np.square(single).sum(-1) * (ids['user_id'] != 0)
             + (np.square(multi).sum(-1) * (ids['tag'] != 0)).sum(-1))
  for weight in ([1, 1, 1, 0], [0, 0, 1, 0]):
    w = np.asarray(weight, np.float32)
    got = float(steps.rows_l2(rows, {'features': ids, 'weight': jnp.asarray(w)}))
    assert got == pytest.approx(float((per_row * w).sum() / w.sum()), rel=1e-6), weight


def test_budget_recipe_decays_the_towers_rate_to_zero_at_the_last_step():
  from pepnet_jax.training import optim
  c = configs.apply_recipe(configs.base_config(), 'budget', max_epochs=2)
  assert c.optim.embedding.schedule == 'constant'
  sched = optim.schedule(c.optim.dense, 1000, 'dense')
  lr = configs.BUDGET['dense_lr']
  assert float(sched(0)) == 0.0 and float(sched(100)) == pytest.approx(lr)
  assert float(sched(550)) == pytest.approx(lr / 2) and float(sched(1000)) == 0.0
  assert 'linear' in configs.describe_recipe(c)


def test_a_renamed_recipe_with_the_same_settings_is_the_same_run():
  """The sweep's stale-point check and a resume compare fields: train.recipe is a label."""
  import json
  old = json.loads(configs.apply_recipe(configs.base_config(), 'converge_fast').to_json())
  new = json.loads(json.dumps(old))
  new['train']['recipe'] = 'renamed'
  assert configs.changed_fields(old, new) == {}
  new['model']['dropout'] = 0.5
  assert configs.changed_fields(old, new) == {'model.dropout': (0.3, 0.5)}


def test_dropout_mask_keeps_the_share_asked_for_independently_per_element():
  from pepnet_jax.models import layers
  shape = (7, 300, 97)
  key = jax.random.key(11)
  m = np.asarray(layers.dropout_mask(key, shape, 0.6))
  n = m.size
  assert abs(m.mean() - 0.6) < 4 * (0.24 / n) ** 0.5
  flat = m.reshape(-1).astype(float)
  # Neighbours along each axis are independent draws: both kept about keep^2 of the time.
  for lag in (1, shape[-1], shape[-1] * shape[-2]):
    both = (flat[:-lag] * flat[lag:]).mean()
    assert abs(both - 0.36) < 4 * (0.36 * 0.64 / (n - lag)) ** 0.5, lag
  np.testing.assert_array_equal(m, np.asarray(layers.dropout_mask(key, shape, 0.6)))
  other = np.asarray(layers.dropout_mask(jax.random.fold_in(key, 1), shape, 0.6))
  assert abs((m == other).mean() - 0.52) < 0.01  # a new key: a new, independent mask
  assert not np.asarray(layers.dropout_mask(key, shape, 0.0)).any()
  assert np.asarray(layers.dropout_mask(key, shape, 1.0)).all()


def test_dropout_keeps_the_expected_activation():
  from pepnet_jax.models import layers
  import flax.linen as nn

  class Drop(nn.Module):
    @nn.compact
    def __call__(self, x):
      return layers.dropout(self, x, 0.4)

  x = jnp.full((200, 500), 3.0)
  y = np.asarray(Drop().apply({}, x, rngs={'dropout': jax.random.key(2)}))
  assert set(np.unique(y)) == {0.0, np.float32(3.0 / 0.6)}
  assert abs(y.mean() - 3.0) < 4 * 3.0 / 0.6 * (0.24 / y.size) ** 0.5
  np.testing.assert_array_equal(Drop().apply({}, x), x)  # no rng: evaluation, no dropout


def test_scale_to_batch_moves_the_rates_by_the_rule():
  c = configs.apply_recipe(configs.base_config(), 'converge')
  s = configs.apply_recipe(configs.base_config(), 'converge', batch_size=4 * configs.RECIPE_BATCH)
  assert s.data.batch_size == 4096
  assert s.optim.embedding.lr == pytest.approx(4 * c.optim.embedding.lr)
  assert s.optim.dense.lr == pytest.approx(4 * c.optim.dense.lr)
  assert s.optim.dense.warmup_steps == c.optim.dense.warmup_steps // 4
  same = configs.apply_recipe(configs.base_config(), 'converge', batch_size=configs.RECIPE_BATCH)
  assert same.optim.to_dict() == c.optim.to_dict()
  assert 'batch 4096' in configs.describe_recipe(s)
  with pytest.raises(ValueError, match='batch_size'):
    configs.scale_to_batch(c, 0)


def _np_mix32(h):
  """lowbias32, written again in NumPy uint32 arithmetic."""
  h = h ^ (h >> np.uint32(16))
  h = h * np.uint32(0x7FEB352D)
  h = h ^ (h >> np.uint32(15))
  h = h * np.uint32(0x846CA68B)
  return h ^ (h >> np.uint32(16))


@pytest.mark.parametrize('shape,keep', [((5, 7, 3), 0.6), ((64,), 0.9), ((3, 4), 1.0)])
def test_dropout_mask_is_the_documented_hash_of_each_elements_index(shape, keep):
  """The mask, element by element, against the documented construction computed in NumPy:
  two words w from the key; h = mix(mix(i * 0x9E3779B9 + w0) ^ w1) for the row-major flat
  index i; kept where h < min(round(keep * 2^32), 2^32 - 1). Pins the function the
  resume and multi-device exactness rely on (the same bits on every backend)."""
  from pepnet_jax.models import layers
  key = jax.random.key(5)
  w = np.asarray(jax.random.bits(key, (2,), jnp.uint32))
  i = np.arange(int(np.prod(shape)), dtype=np.uint32).reshape(shape)
  with np.errstate(over='ignore'):
    h = _np_mix32(_np_mix32(i * np.uint32(0x9E3779B9) + w[0]) ^ w[1])
  want = h < np.uint32(min(int(round(keep * 2.0**32)), 2**32 - 1))
  got = np.asarray(layers.dropout_mask(key, shape, keep))
  np.testing.assert_array_equal(got, want)
  assert keep == 1.0 or 0 < want.mean() < 1


def test_logged_grad_norm_is_the_norm_of_the_step_taken_by_sgd_at_rate_one():
  """SGD at rate 1 moves every parameter by minus its gradient, so the logged global
  gradient norm must equal the norm of the change of all parameters."""
  steps, state, batch = setup(sparse_group='', optimizer=('sgd', 1.0))
  new, m = jax.jit(steps.train_step)(state, batch)
  moved = np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64) - np.asarray(b, np.float64)))
                      for a, b in zip(jax.tree.leaves(new.params), jax.tree.leaves(state.params))))
  assert float(m['grad_norm']) > 0
  assert float(m['grad_norm']) == pytest.approx(moved, rel=1e-4)
  # The row-sparse path takes the tables' part over the rows looked up, one gradient per
  # lookup: on a batch where no id repeats, the same norm as the dense path's.
  distinct = jax.tree.map(lambda x: x[:2], batch)
  distinct['features'] = {k: jnp.asarray([2, 3], v.dtype)  # every field single-valued
                          for k, v in distinct['features'].items()}
  _, m = jax.jit(steps.train_step)(state, distinct)
  sparse_steps, sparse_state, _ = setup(sparse_group='embedding')
  _, ms = jax.jit(sparse_steps.train_step)(sparse_state, distinct)
  assert float(m['grad_norm']) > 0
  assert float(ms['grad_norm']) == pytest.approx(float(m['grad_norm']), rel=1e-5)


@pytest.mark.parametrize('sparse_group', ['', 'embedding'])
def test_both_paths_give_adamw_the_parameters_for_its_weight_decay(sparse_group):
  """An AdamW dense group's first step is -lr * (g / (|g| + eps) + weight_decay * p):
  Adam's first step is the gradient's sign, and the decay needs the parameters the step
  hands to the optimizer, on the dense and the row-sparse path. g from SGD at rate 1 (the
  dense path, where every group can be SGD)."""
  sgd, state, batch = setup(sparse_group='', optimizer=('sgd', 1.0))
  after_sgd, _ = jax.jit(sgd.train_step)(state, batch)
  lr, decay = 1e-3, 0.5
  adamw, state, _ = setup(sparse_group=sparse_group,
                          dense_group=dict(optimizer='adamw', lr=lr, weight_decay=decay))
  after, _ = jax.jit(adamw.train_step)(state, batch)
  checked = 0
  for name in ('towers_0', 'epnet_gate'):
    for p0, p_sgd, p1 in zip(*(jax.tree.leaves(s.params[name])
                               for s in (state, after_sgd, after))):
      p0, g = np.asarray(p0, np.float64), np.asarray(p0, np.float64) - np.asarray(p_sgd)
      sure = np.abs(g) > 1e-4  # where float32 differences give the gradient's sign for sure
      want = -lr * (np.sign(g) + decay * p0)
      np.testing.assert_allclose((np.asarray(p1) - p0)[sure], want[sure], rtol=1e-3, atol=1e-7)
      checked += sure.sum()
  assert checked > 1000
