"""Optimizer groups, the jitted train step, and row-sparse == dense AdaGrad."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from pepnet_jax import configs
from pepnet_jax.training import optim, train
from pepnet_jax.data import synthetic
from pepnet_jax.models import build_model

INFOS, SPEC = synthetic.bench_features(video_vocab=300, user_vocab=200, author_vocab=50)


def small_config(sparse_group='embedding'):
  c = configs.base_config()
  c.model.tower = (32, 16)
  c.model.ppnet_hidden = 8
  c.mesh.num_devices = 1
  c.optim.sparse_group = sparse_group
  return c


def make(c, batch):
  model = build_model(c.model, INFOS, SPEC)
  steps = train.make_steps(model, c, total_steps=100)
  return train.jit_steps(steps, c, train.device_batch(batch), jax.random.key(0))


def test_every_table_is_adagrad_and_everything_else_adam():
  c = small_config(sparse_group='')
  batch = synthetic.make_batches(INFOS, SPEC, 1, 32)[0]
  model = build_model(c.model, INFOS, SPEC)
  params = model.init(jax.random.key(0), batch['features'], batch['domain'])['params']
  groups = optim.describe(params, c.optim)
  tables = {f'embed/{f.name}' for f in INFOS}
  assert set(groups['embedding']) == tables
  assert groups['dense'] and not set(groups['dense']) & tables
  assert all(not p.startswith('embed/') for p in groups['dense'])
  # One update on a known gradient (all ones): AdaGrad(0.05, acc0=0.1) moves
  # each table entry by -0.05/sqrt(1.1); Adam(5e-6) moves the rest by -5e-6.
  tx = optim.build_optimizer(c.optim, total_steps=10)
  grads = jax.tree.map(jnp.ones_like, params)
  updates, _ = tx.update(grads, tx.init(params), params)
  for path, u in jax.tree_util.tree_flatten_with_path(updates)[0]:
    p = optim.param_path(path)
    expected = -0.05 / np.sqrt(1.1 + 1e-7) if p.startswith('embed/') else -5e-6 / (1 + 1e-8)
    np.testing.assert_allclose(np.asarray(u), expected, rtol=2e-5, err_msg=p)  # float32 Adam


def test_unmatched_parameter_is_named_in_the_error():
  c = small_config()
  c.optim.dense.regex = r'^towers'
  with pytest.raises(ValueError, match=r"parameter 'epnet_gate/.*' matches no regex"):
    optim.param_labels({'epnet_gate': {'hidden': {'kernel': jnp.ones(2)}}}, c.optim)


def test_jit_steps_shards_the_tables_config_mesh_names_with_a_default_of_4096_rows(monkeypatch):
  """jit_steps lays the state out with ``config.mesh.shard_min_rows`` (4096 where the field
  or the whole ``mesh`` section is missing) and the embedding scope's regex. (That the layout
  holds through the steps on 8 devices: tests/test_multidevice.py.)"""
  from pepnet_jax.training import sharding

  class Seen(Exception):
    pass

  def record(abstract, mesh, table_regex, min_rows):
    raise Seen(table_regex, min_rows)
  monkeypatch.setattr(sharding, 'state_shardings', record)
  batch = train.device_batch(synthetic.make_batches(INFOS, SPEC, 1, 16)[0])
  without_field, without_mesh = small_config(), small_config()
  del without_field.mesh['shard_min_rows']
  del without_mesh['mesh']
  with_field = small_config()
  with_field.mesh.shard_min_rows = 1000
  assert train.make_steps(build_model(without_mesh.model, INFOS, SPEC), without_mesh,
                          total_steps=10).mesh.size == 1  # one device where mesh is left out
  for c, want in ((with_field, 1000), (without_field, 4096), (without_mesh, 4096)):
    steps = train.make_steps(build_model(c.model, INFOS, SPEC), with_field, total_steps=10)
    with pytest.raises(Seen) as e:
      train.jit_steps(steps, c, batch, jax.random.key(0))
    assert e.value.args == ('^embed/', want)


@pytest.mark.parametrize('sparse_group', ['embedding', ''])
def test_the_steps_train_on_a_models_own_loss_and_score_its_own_probabilities(sparse_group):
  """A model with its own ``loss`` and ``probabilities`` (the contract allows both) is
  trained on that loss and evaluated with those probabilities, on both update paths."""
  import flax.linen as nn
  from pepnet_jax.models import layers

  class OwnLossAndProbabilities(nn.Module):
    features: tuple

    def setup(self):
      self.embed = layers.FeatureEmbeddings(self.features, {'vec': 4})
      self.out = nn.Dense(len(SPEC.tasks))

    def lookup(self, inputs):
      return self.embed(inputs)

    def head(self, rows, inputs, domain):
      return self.out(jnp.concatenate([rows[f.name]['vec'] for f in self.features], -1))

    def __call__(self, inputs, domain):
      return self.head(self.lookup(inputs), inputs, domain)

    def loss(self, outputs, labels, label_mask, weight, task_weights):
      per_task = jnp.mean(jnp.square(outputs), axis=0) * task_weights
      return jnp.sum(per_task), per_task

    def probabilities(self, outputs):
      return jax.nn.sigmoid(2.0 * outputs)

  c = small_config(sparse_group)
  batch = train.device_batch(synthetic.make_batches(INFOS, SPEC, 1, 32, seed=3)[0])
  model = OwnLossAndProbabilities(features=tuple(INFOS))
  steps, state = train.jit_steps(train.make_steps(model, c, total_steps=10), c, batch,
                                 jax.random.key(0))
  outputs = np.asarray(model.apply({'params': state.params}, batch['features'],
                                   batch['domain']), np.float64)
  np.testing.assert_allclose(steps.eval_step(state.params, batch),
                             1 / (1 + np.exp(-2 * outputs)), rtol=1e-5)
  _, m = steps.train_step(state, batch)
  want = np.mean(outputs ** 2, axis=0)
  np.testing.assert_allclose(m['task_loss'], want, rtol=1e-5)
  np.testing.assert_allclose(float(m['loss']), want.sum(), rtol=1e-5)


@pytest.mark.parametrize('sparse_group', ['embedding', ''])
def test_train_step_donates_state_and_lowers_loss(sparse_group):
  c = small_config(sparse_group)
  batch = synthetic.make_batches(INFOS, SPEC, 1, 256, seed=3)[0]
  steps, state = make(c, batch)
  # A 32-bit integer step counter (a float32 one stops counting at 2^24), and on the dense
  # path no row-sparse sums.
  assert steps.sparse_group == sparse_group  # which group the steps update row-sparsely
  assert state.step.dtype == jnp.int32 and int(state.step) == 0
  assert (state.emb_acc == {}) == (sparse_group == '')
  dev = train.device_batch(batch)
  old_table = state.params['embed']['user_id']
  state, m0 = steps.train_step(state, dev)
  assert old_table.is_deleted()  # donated: the step reused its buffer
  losses = [float(m0['loss'])]
  for _ in range(30):
    state, m = steps.train_step(state, dev)
    losses.append(float(m['loss']))
  assert int(state.step) == 31
  # The paper recipe (Adam 5e-6) moves slowly; the loss still falls step after step.
  assert losses[-1] < losses[0] - 0.01, losses
  assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_label_mask_excludes_missing_labels():
  logits = jnp.array([[2.0, -1.0], [0.5, 3.0]])
  labels = jnp.array([[1.0, 0.0], [0.0, 1.0]])
  full, _ = train.multitask_loss(logits, labels, jnp.ones((2, 2)), jnp.ones(2), jnp.ones(2))
  masked, per_task = train.multitask_loss(
      logits, labels, jnp.array([[1.0, 0.0], [1.0, 1.0]]), jnp.ones(2), jnp.array([1.0, 2.0]))
  bce = optax.sigmoid_binary_cross_entropy(logits, labels)
  np.testing.assert_allclose(float(per_task[1]), float(bce[1, 1]), rtol=1e-6)
  np.testing.assert_allclose(float(masked), float(bce[:, 0].mean() + 2 * bce[1, 1]), rtol=1e-6)
  assert abs(float(full) - float(masked)) > 1e-3


# The embedding group's rate at the step being taken, its eps and initial sums reach the
# row-sparse path as they reach optax's: a warm-up into linear decay, eps 1e-3 (that large
# so that a default in its place shows), sums starting at 0.2.
@pytest.mark.parametrize('embedding', [{}, dict(schedule='linear', warmup_steps=2, eps=1e-3,
                                                 initial_accumulator=0.2)])
def test_row_sparse_adagrad_equals_dense_optax(embedding):
  """Same params and accumulators after several steps with repeated ids."""
  batches = synthetic.make_batches(INFOS, SPEC, 5, 128, seed=7, zipf=1.3)
  assert len(np.unique(batches[0]['features']['video_id'])) < 128  # duplicates present
  out = {}
  for group in ('embedding', ''):
    c = small_config(group)
    c.optim.dense.lr = 1e-3
    c.optim.embedding.update(embedding)
    steps, state = make(c, batches[0])
    for b in batches:
      state, _ = steps.train_step(state, train.device_batch(b))
    out[group] = state
  sp, de = out['embedding'], out['']
  for name in sp.params['embed']:
    np.testing.assert_array_equal(np.asarray(sp.params['embed'][name]),
                                  np.asarray(de.params['embed'][name]), err_msg=name)
  # The row-sparse path keeps the tables' sums in emb_acc only; optax keeps them in the
  # embedding group's state.
  assert 'embedding' not in sp.opt_state.inner_states
  dense_acc = de.opt_state.inner_states['embedding'].inner_state[0].sum_of_squares['embed']
  for name in sp.emb_acc['embed']:
    np.testing.assert_array_equal(np.asarray(sp.emb_acc['embed'][name]),
                                  np.asarray(dense_acc[name]), err_msg=name)
  rest_sp = {k: v for k, v in sp.params.items() if k != 'embed'}
  rest_de = {k: v for k, v in de.params.items() if k != 'embed'}
  for a, b in zip(jax.tree.leaves(rest_sp), jax.tree.leaves(rest_de)):
    np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
  # untouched rows did not move
  init_steps, init_state = make(small_config('embedding'), batches[0])
  seen = np.unique(np.concatenate([b['features']['user_id'] for b in batches]))
  unseen = np.setdiff1d(np.arange(200), seen)
  np.testing.assert_array_equal(np.asarray(init_state.params['embed']['user_id'])[unseen],
                                np.asarray(sp.params['embed']['user_id'])[unseen])


@pytest.mark.parametrize('vocab', [40, 5000])  # the whole-table path and the unique-ids path
def test_adagrad_rows_equals_optax_adagrad_over_many_steps_with_warmup(vocab):
  from pepnet_jax.training import sparse
  assert (vocab <= sparse.DENSE_FACTOR * 64 * 3) == (vocab == 40)
  rng = np.random.default_rng(3)
  table = jnp.asarray(rng.normal(size=(vocab, 8)).astype(np.float32))
  sched = optax.join_schedules([optax.linear_schedule(0.0, 0.3, 5),
                                optax.constant_schedule(0.3)], [5])
  tx = optax.adagrad(sched, initial_accumulator_value=0.1, eps=1e-7)
  dense, opt = table, tx.init(table)
  rows, acc = table, jnp.full_like(table, 0.1)
  step = jax.jit(sparse.adagrad_rows)
  for t in range(12):
    ids = jnp.asarray((rng.zipf(1.3, (64, 3)) - 1) % vocab, jnp.int32)  # many repeats
    g = jnp.asarray(rng.normal(size=(64, 3, 8)).astype(np.float32))
    dense_grad = jnp.zeros_like(table).at[ids.reshape(-1)].add(g.reshape(-1, 8))
    upd, opt = tx.update(dense_grad, opt, dense)
    dense = optax.apply_updates(dense, upd)
    rows, acc = step(rows, acc, ids, g, sched(t))
  np.testing.assert_allclose(np.asarray(rows), np.asarray(dense), rtol=1e-6, atol=1e-7)
  np.testing.assert_allclose(np.asarray(acc), np.asarray(opt[0].sum_of_squares), rtol=1e-6)
  assert not np.allclose(np.asarray(rows), np.asarray(table))


@pytest.mark.parametrize('vocab', [24, 5000])  # the whole-table path and the unique-ids path
def test_adagrad_rows_with_zero_sums_and_no_eps_leaves_zero_gradient_rows_as_they_are(vocab):
  """initial_accumulator 0 and eps 0 (optax allows both): a row whose sum of squares is still
  0 (untouched, or looked up with a zero gradient) must not divide 0 by 0: it stays exactly
  as it was, and every other row moves by -lr * g / sqrt(g^2)."""
  from pepnet_jax.training import sparse as sp
  rng = np.random.default_rng(4)
  table = rng.normal(size=(vocab, 4)).astype(np.float32)
  ids = np.array([[3, 7, 7, 11], [11, 3, 5, 5], [9, 9, 2, 7], [1, 3, 20, 11]], np.int32)
  assert (vocab <= sp.DENSE_FACTOR * ids.size) == (vocab == 24)
  g = rng.normal(size=(4, 4, 4)).astype(np.float32)
  g[ids == 3] = 0.0  # row 3: looked up three times, zero gradient
  rows, acc = sp.adagrad_rows(jnp.asarray(table), jnp.zeros((vocab, 4)), jnp.asarray(ids),
                              jnp.asarray(g), 0.5, 0.0)
  g_sum = np.zeros_like(table)
  np.add.at(g_sum, ids.reshape(-1), g.reshape(-1, 4))
  assert (g_sum == 0).all(axis=1).sum() > 1  # row 3 and the untouched rows
  with np.errstate(invalid='ignore', divide='ignore'):
    want = np.where(g_sum != 0, table - 0.5 * g_sum / np.abs(g_sum), table)
  np.testing.assert_allclose(np.asarray(rows), want, rtol=1e-6)
  np.testing.assert_array_equal(np.asarray(acc), g_sum * g_sum)
