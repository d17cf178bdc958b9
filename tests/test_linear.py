"""The ``lr`` model: T-wide tables under embed/, logits by hand, training on both update paths."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax import configs
from pepnet_jax.data import synthetic
from pepnet_jax.training import train
from pepnet_jax.models import MODELS, build_model, linear

I = synthetic.Info
# tab is domain-side (shared=False) as in the KuaiRand preset; LR must still use it.
INFOS = (I('user_id', 'categorical', 50), I('video_id', 'categorical', 70),
         I('tab', 'categorical', 3, shared=False), I('tag', 'multi', 9, max_len=3),
         I('duration', 'bucket', 6), I('watch', 'dense', 0), I('likes', 'dense', 0))
SPEC = synthetic.Spec(tasks=('click', 'like'), domains=(0, 1, 2), groups={'domain': ('tab',)})
T = len(SPEC.tasks)
TABLES = ('user_id', 'video_id', 'tab', 'tag', 'duration')


def lr_model(row_multiple=1, **over):
  mc = configs.base_config().model
  mc.name = 'lr'
  mc.table_row_multiple = row_multiple
  for k, v in over.items():
    mc[k] = v
  return build_model(mc, INFOS, SPEC)


def random_params(model, batch, seed=0):
  shapes = jax.eval_shape(model.init, jax.random.key(0), batch['features'], batch['domain'])
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape), x.dtype), shapes)['params']


def test_registered_and_every_table_is_vocab_by_tasks():
  assert isinstance(lr_model(), linear.LogisticRegression) and 'lr' in MODELS
  batch = synthetic.make_batches(INFOS, SPEC, 1, 8)[0]
  for rm in (1, 128):
    params = random_params(lr_model(rm), batch)
    assert sorted(params['embed']) == sorted(TABLES)  # every id feature, tab included
    rows = {f.name: -(-f.vocab_size // rm) * rm for f in INFOS if f.name in TABLES}
    for name, v in rows.items():
      assert params['embed'][name].shape == (v, T)  # width T, not embed_dim
    n_dense = sum(f.kind == 'dense' for f in INFOS)
    assert params['linear']['dense_weights'].shape == (n_dense, T)
    assert params['linear']['bias'].shape == (T,)
    # sum(vocab_i * T) + T + n_dense * T, vocabularies rounded up to the row multiple
    total = sum(x.size for x in jax.tree.leaves(params))
    assert total == sum(rows.values()) * T + T + n_dense * T


@pytest.mark.parametrize('pool', ['sum', 'mean'])
def test_logit_is_bias_plus_the_looked_up_weights(pool):
  model = lr_model(lr_multi_pool=pool)
  feats = {'user_id': np.array([3, 1, 49], np.int32), 'video_id': np.array([0, 69, 5], np.int32),
           'tab': np.array([2, 0, 1], np.int32),
           'tag': np.array([[4, 7, 0], [1, 0, 0], [8, 8, 2]], np.int32),  # 0 = padding
           'duration': np.array([5, 2, 1], np.int32),
           'watch': np.array([0.5, -1.0, 2.0], np.float32),
           'likes': np.array([1.5, 0.0, -0.25], np.float32)}
  domain = np.array([2, 0, 1], np.int32)
  params = random_params(model, {'features': feats, 'domain': domain}, seed=1)
  p = jax.tree.map(np.asarray, params)
  w = p['embed']
  want = np.tile(p['linear']['bias'], (3, 1))
  for name in ('user_id', 'video_id', 'tab', 'duration'):
    want += w[name][feats[name]]
  for b in range(3):
    ids = [i for i in feats['tag'][b] if i > 0]
    tag = sum(w['tag'][i] for i in ids)
    want[b] += tag / len(ids) if pool == 'mean' else tag
  want += np.stack([feats['watch'], feats['likes']], -1) @ p['linear']['dense_weights']
  got = model.apply({'params': params}, feats, domain)
  assert got.shape == (3, T) and got.dtype == jnp.float32
  np.testing.assert_allclose(np.asarray(got), want, rtol=1e-5, atol=1e-5)
  # head() needs no table: the trainer runs it on gathered rows with the tables split off.
  rows = model.apply({'params': {'embed': params['embed']}}, feats, method='lookup')
  rest = {k: v for k, v in params.items() if k != 'embed'}
  head = model.apply({'params': rest}, rows, feats, domain, method='head')
  np.testing.assert_allclose(np.asarray(head), want, rtol=1e-5, atol=1e-5)


def test_starts_at_the_bias_and_a_bad_pool_is_named():
  batch = synthetic.make_batches(INFOS, SPEC, 1, 8)[0]
  model = lr_model()
  params = model.init(jax.random.key(0), batch['features'], batch['domain'])['params']
  assert all(np.all(np.asarray(x) == 0) for x in jax.tree.leaves(params))
  with pytest.raises(ValueError, match='config.model.lr_multi_pool'):
    lr_model(lr_multi_pool='max').init(jax.random.key(0), batch['features'], batch['domain'])


@functools.lru_cache(maxsize=None)
def _train(sparse_group):
  c = configs.base_config()
  c.model.name = 'lr'
  c.optim.sparse_group = sparse_group
  c.optim.dense.lr = 1e-2
  c.mesh.num_devices = 1
  c.train.task_weights = (1.0,) * T
  batches = synthetic.make_batches(INFOS, SPEC, 31, 256, seed=3)
  held_out = train.device_batch(batches.pop())
  model = build_model(c.model, INFOS, SPEC)
  steps = train.make_steps(model, c, total_steps=len(batches))
  steps, state = train.jit_steps(steps, c, held_out, jax.random.key(0, impl='rbg'))

  def held_out_loss(params):
    logits = model.apply({'params': params}, held_out['features'], held_out['domain'])
    return float(train.multitask_loss(logits, held_out['labels'], held_out['label_mask'],
                                      held_out['weight'], jnp.ones(T))[0])

  before = held_out_loss(state.params)
  losses = []
  for b in batches:
    state, m = steps.train_step(state, train.device_batch(b))
    losses.append(float(m['loss']))
  return before, held_out_loss(state.params), losses, state


@pytest.mark.parametrize('sparse_group', ['embedding', ''])
def test_training_lowers_the_loss_on_both_update_paths(sparse_group):
  before, after, losses, state = _train(sparse_group)
  assert np.all(np.isfinite(losses))
  assert after < before - 0.05, (before, after)  # held-out rows: it generalises
  assert np.mean(losses[-5:]) < np.mean(losses[:5]) - 0.04, losses
  assert bool(state.emb_acc) == bool(sparse_group)  # the row-sparse path ran on T-wide tables


def test_row_sparse_and_dense_updates_agree():
  """Row-sparse AdaGrad on the T-wide tables is the dense update, row for row."""
  _, a, la, sa = _train('embedding')
  _, b, lb, sb = _train('')
  np.testing.assert_allclose(la, lb, rtol=1e-5)
  for name in TABLES:
    np.testing.assert_allclose(np.asarray(sa.params['embed'][name]),
                               np.asarray(sb.params['embed'][name]), rtol=1e-4, atol=1e-6)
