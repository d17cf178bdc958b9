"""The baselines: the model contract, each model's structure, and that they train.

Kept fast on a shared CPU: a small feature set, parameters filled from their
shapes (no compiled initializers) except in the training runs, and every model
call jitted once.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax import configs
from pepnet_jax.data import synthetic
from pepnet_jax.training import train
from pepnet_jax.models import MODELS, build_model
from pepnet_jax.models import baselines  # noqa: F401  (registers the baselines)

I = synthetic.Info
# 'tab' is the domain feature and, as in the KuaiRand preset, not part of E;
# 'watch' is dense, so it has no table.
INFOS = (I('user_id', 'categorical', 200), I('video_id', 'categorical', 300),
         I('author_id', 'categorical', 50), I('tab', 'categorical', 3, shared=False),
         I('user_cat0', 'categorical', 10), I('watch', 'dense', 1))
SPEC = synthetic.Spec(tasks=('click', 'like', 'follow'), domains=(0, 1, 2),
                      groups={'domain': ('tab',), 'user': ('user_id',), 'item': ('video_id',),
                              'author': ('author_id',)})
TABLES = {'user_id', 'video_id', 'author_id', 'tab', 'user_cat0'}
E_WIDTH = 5 * 16  # shared fields (dense included) * embed_dim
BATCH = synthetic.make_batches(INFOS, SPEC, 1, 64, seed=1)[0]
T, D = len(SPEC.tasks), len(SPEC.domains)
NAMES = ('shared_bottom', 'single_task', 'mmoe', 'ple', 'star')
K, S = 3, 2  # MMoE/PLE shared experts, PLE experts per task


@functools.lru_cache(maxsize=None)
def _model(name, overrides):
  mc = configs.base_config().model
  mc.name = name
  mc.tower = (8,)
  mc.bottom = (16,)
  mc.num_experts = K
  mc.specific_experts = S
  for k, v in overrides:
    mc[k] = v
  return build_model(mc, INFOS, SPEC)


def model_for(name, **overrides):
  return _model(name, tuple(sorted(overrides.items())))


@functools.lru_cache(maxsize=None)
def _shapes(model):
  return jax.eval_shape(model.init, jax.random.key(0), BATCH['features'], BATCH['domain'])


def init(model, seed=0):
  """Random parameters of the model's shapes; tracing only, nothing compiled."""
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * 0.2, x.dtype),
                      _shapes(model))


@functools.lru_cache(maxsize=None)
def _run_fn(model):
  """One compiled function per model: logits, sown values, and head() run
  with params lacking the tables on rows from lookup()."""
  def fn(params, features, domain):
    logits, inter = model.apply({'params': params}, features, domain, mutable=['intermediates'])
    rows = model.apply({'params': {'embed': params['embed']}}, features, method='lookup')
    rest = {k: v for k, v in params.items() if k != 'embed'}
    head = model.apply({'params': rest}, rows, features, domain, method='head')
    return logits, inter.get('intermediates', {}), head
  return jax.jit(fn)


def run(model, params, features=None, domain=None):
  features = BATCH['features'] if features is None else features
  domain = BATCH['domain'] if domain is None else domain
  return _run_fn(model)(params, features, domain)


def apply(model, params, features=None, domain=None):
  return np.asarray(run(model, params, features, domain)[0])


def sown(model, params, features=None):
  return run(model, params, features)[1]


def test_every_baseline_is_registered():
  assert set(NAMES) <= set(MODELS)
  assert type(model_for('dnn')) is type(model_for('shared_bottom')) is baselines.SharedBottom


@pytest.mark.parametrize('name', NAMES)
def test_contract_shape_tables_and_head_without_tables(name):
  model = model_for(name)
  params = init(model)['params']

  logits, _, head = run(model, params)
  assert logits.shape == (64, T) and logits.dtype == jnp.float32
  assert np.all(np.isfinite(np.asarray(logits)))
  assert set(params['embed']) == TABLES  # every id feature, nothing else
  for f in INFOS:  # rows rounded up to table_row_multiple (128 by default)
    if f.name in TABLES:
      assert params['embed'][f.name].shape == (-(-f.vocab_size // 128) * 128, 16)
  np.testing.assert_allclose(np.asarray(head), np.asarray(logits), rtol=1e-6, atol=1e-6)
  # The tasks are not one copy of the same output.
  assert np.std(np.asarray(logits), axis=1).mean() > 1e-4


def perturb(params, path, fn):
  """A copy of params with the leaf at path (tuple of keys) replaced by fn(leaf)."""
  out = jax.tree.map(lambda x: x, params)
  node = out
  for k in path[:-1]:
    node = node[k]
  node[path[-1]] = fn(node[path[-1]])
  return out


def changed_tasks(a, b):
  return set(np.flatnonzero(np.abs(a - b).max(axis=0) > 1e-6).tolist())


def test_domain_in_input_lets_a_baseline_see_the_domain():
  """Without EPNet only domain_in_input puts the tab into E: the bottom gets one
  more field, and changing just the tab moves the output only with it on."""
  other_tab = dict(BATCH['features'])
  other_tab['tab'] = (BATCH['features']['tab'] + 1) % 3  # every row's tab changes
  for on in (False, True):
    model = model_for('shared_bottom', domain_in_input=on)
    params = init(model)['params']
    width = E_WIDTH + (16 if on else 0)
    assert params['bottom_mlp']['dense_0']['kernel'].shape == (width, 16)
    moved = np.abs(apply(model, params) - apply(model, params, other_tab)).max()
    assert (moved > 1e-4) == on


def test_single_task_towers_are_independent_but_shared_bottom_is_shared():
  model = model_for('single_task')
  params = init(model)['params']
  assert params['towers_0']['kernel'].shape == (T, E_WIDTH, 16)
  base = apply(model, params)
  for path in (('towers_0', 'kernel'), ('towers_1', 'bias')):
    moved = perturb(params, path, lambda k: k.at[2].add(0.5))
    assert changed_tasks(base, apply(model, moved)) == {2}
  sb = model_for('shared_bottom')
  p = init(sb)['params']
  assert p['bottom_mlp']['dense_0']['kernel'].shape == (E_WIDTH, 16)
  moved = perturb(p, ('bottom_mlp', 'dense_0', 'kernel'), lambda k: k + 0.5)
  assert changed_tasks(apply(sb, p), apply(sb, moved)) == set(range(T))


def test_mmoe_gates_are_per_task_softmaxes_over_experts():
  model = model_for('mmoe')
  params = init(model)['params']
  assert params['experts']['dense_0']['kernel'].shape == (K, E_WIDTH, 16)
  assert params['gates']['kernel'].shape == (T, E_WIDTH, K)  # gates read E
  g = np.asarray(sown(model, params)['gate_weights'][0])
  assert g.shape == (64, T, K)
  assert g.min() > 0
  np.testing.assert_allclose(g.sum(-1), 1.0, rtol=1e-5)
  assert np.abs(g[:, 0] - g[:, 1]).max() > 1e-4  # each task has its own gate
  # Forcing every gate onto expert 0 makes expert 1's weights irrelevant.
  def force(b):
    return b.at[:, 0].set(1e4)
  forced = perturb(params, ('gates', 'bias'), force)
  base = apply(model, forced)
  moved = perturb(forced, ('experts', 'dense_0', 'kernel'), lambda k: k.at[1].add(1.0))
  np.testing.assert_allclose(apply(model, moved), base, atol=1e-5)
  moved0 = perturb(forced, ('experts', 'dense_0', 'kernel'), lambda k: k.at[0].add(1.0))
  assert changed_tasks(base, apply(model, moved0)) == set(range(T))


@pytest.mark.parametrize('levels', [1, 3])
def test_ple_expert_counts_and_gates(levels):
  model = model_for('ple', ple_levels=levels)
  params = init(model)['params']
  assert sorted(n for n in params if n.startswith('levels_')) == \
      [f'levels_{l}' for l in range(levels)]
  for l in range(levels):
    lv = params[f'levels_{l}']
    assert lv['shared_experts']['dense_0']['kernel'].shape[0] == K
    assert lv['specific_experts']['dense_0']['kernel'].shape[0] == T * S
    assert lv['task_gates']['kernel'].shape[-1] == S + K
    assert ('shared_gate' in lv) == (l < levels - 1)  # no shared gate at the last level
    if l < levels - 1:
      assert lv['shared_gate']['kernel'].shape[-1] == T * S + K
  inter = sown(model, params)
  for l in range(levels):
    for name, g in inter[f'levels_{l}'].items():
      np.testing.assert_allclose(np.asarray(g[0]).sum(-1), 1.0, rtol=1e-5, err_msg=name)


def test_cgc_task_specific_experts_only_feed_their_own_task():
  model = model_for('ple', ple_levels=1)
  params = init(model)['params']
  base = apply(model, params)
  path = ('levels_0', 'specific_experts', 'dense_0', 'kernel')
  # Experts S..2S-1 belong to task 1.
  moved = perturb(params, path, lambda w: w.at[S:2 * S].add(0.5))
  assert changed_tasks(base, apply(model, moved)) == {1}
  shared = perturb(params, ('levels_0', 'shared_experts', 'dense_0', 'kernel'),
                   lambda w: w.at[0].add(0.5))
  assert changed_tasks(base, apply(model, shared)) == set(range(T))
  # With two levels the shared gate carries task 1's experts to every task.
  deep = model_for('ple', ple_levels=2)
  p2 = init(deep)['params']
  moved2 = perturb(p2, path, lambda w: w.at[S:2 * S].add(0.5))
  assert changed_tasks(apply(deep, p2), apply(deep, moved2)) == set(range(T))


def randomize_domain_params(params, seed=0):
  """Makes every per-domain STAR parameter differ from domain to domain."""
  rng = np.random.default_rng(seed)
  def move(path, x):
    if 'domain_' in jax.tree_util.keystr(path):
      return x + jnp.asarray(rng.normal(size=x.shape) * 0.3, x.dtype)
    return x
  return jax.tree_util.tree_map_with_path(move, params)


def test_star_depends_on_domain_index_and_shared_bottom_does_not():
  other = (BATCH['domain'] + 1) % D
  star = model_for('star')
  p = randomize_domain_params(init(star)['params'])
  a, b = apply(star, p), apply(star, p, domain=other)
  assert np.abs(a - b).min(axis=1).max() > 1e-4  # rows move when their domain changes
  # Shared-Bottom reads neither the domain index nor the domain feature.
  sb = model_for('shared_bottom')
  q = init(sb)['params']
  feats = dict(BATCH['features'], tab=other)
  np.testing.assert_array_equal(apply(sb, q), apply(sb, q, feats, other))


def test_star_layer_weight_is_shared_times_domain_and_bias_is_sum():
  star = model_for('star')
  p = randomize_domain_params(init(star)['params'], seed=1)
  dom = BATCH['domain']
  rows = dom == 1
  assert rows.any() and (~rows).any()
  lay = p['star_0']
  scale = jnp.linspace(0.5, 2.0, lay['shared_kernel'].size).reshape(lay['shared_kernel'].shape)
  # Scaling domain 1's kernel by `scale` == scaling the shared kernel, for domain-1 rows.
  via_domain = perturb(p, ('star_0', 'domain_kernel'), lambda w: w.at[1].multiply(scale))
  via_shared = perturb(p, ('star_0', 'shared_kernel'), lambda w: w * scale)
  a, b = apply(star, via_domain), apply(star, via_shared)
  np.testing.assert_allclose(a[rows], b[rows], rtol=1e-4, atol=1e-5)
  assert np.abs(a[~rows] - b[~rows]).max() > 1e-4
  np.testing.assert_allclose(a[~rows], apply(star, p)[~rows], rtol=1e-6, atol=1e-6)
  # Biases add: moving the domain bias for domain 1 == moving the shared bias.
  via_db = perturb(p, ('star_0', 'domain_bias'), lambda x: x.at[1].add(0.7))
  via_sb = perturb(p, ('star_0', 'shared_bias'), lambda x: x + 0.7)
  np.testing.assert_allclose(apply(star, via_db)[rows], apply(star, via_sb)[rows],
                             rtol=1e-4, atol=1e-5)


def test_star_partitioned_norm_and_aux_network():
  star = model_for('star')
  p = init(star)['params']
  dom = BATCH['domain']
  base = apply(star, p)
  moved = perturb(p, ('norm', 'domain_scale'), lambda x: x.at[2].multiply(1.7))
  diff = np.abs(apply(star, moved) - base).max(axis=1)
  assert diff[dom == 2].min() > 1e-6 and diff[dom != 2].max() == 0.0
  # The auxiliary logit reads only the domain features ('tab').
  aux = np.asarray(sown(star, p)['aux_logits'][0])
  assert aux.shape == (64, T)
  feats = dict(BATCH['features'], user_id=(BATCH['features']['user_id'] + 7) % 200)
  np.testing.assert_array_equal(np.asarray(sown(star, p, feats)['aux_logits'][0]), aux)
  feats = dict(BATCH['features'], tab=(BATCH['features']['tab'] + 1) % D)
  aux_tab = np.asarray(sown(star, p, feats)['aux_logits'][0])
  assert np.abs(aux_tab - aux).max() > 1e-6
  # ... and is added to the main logit, which does not read 'tab' (not in E).
  np.testing.assert_allclose(apply(star, p, feats) - aux_tab, base - aux, rtol=1e-5, atol=1e-5)
  assert p['aux']['dense_0']['kernel'].shape[0] == 16  # the 'tab' embedding alone


def test_bad_expert_config_is_named():
  with pytest.raises(ValueError, match='num_experts'):
    init(model_for('mmoe', num_experts=0))
  with pytest.raises(ValueError, match='ple_levels'):
    init(model_for('ple', ple_levels=0))
  # Each of PLE's settings alone is checked, with one message naming all of them.
  rule = r'^ple needs config.model.ple_levels >= 1, num_experts >= 1, specific_experts >= 0'
  for bad in (dict(num_experts=0), dict(specific_experts=-1), dict(bottom=())):
    with pytest.raises(ValueError, match=rule):
      init(model_for('ple', **bad))
  # The smallest valid settings build: one shared and no task-specific expert.
  assert apply(model_for('ple', num_experts=1, specific_experts=0),
               init(model_for('ple', num_experts=1, specific_experts=0))['params']).shape == (64, T)


@pytest.mark.parametrize('name', NAMES)
def test_train_steps_lower_the_loss(name):
  c = configs.base_config()
  c.model.name = name
  c.model.tower = (8,)  # small: compiling the step dominates this test's time
  c.model.bottom = (8,)
  c.model.num_experts = 2
  c.optim.dense.lr = 1e-3
  c.mesh.num_devices = 1
  c.train.task_weights = (1.0,) * T
  batch = synthetic.make_batches(INFOS, SPEC, 1, 256, seed=3)[0]
  model = build_model(c.model, INFOS, SPEC)
  steps = train.make_steps(model, c, total_steps=100)
  dev = train.device_batch(batch)
  # rbg keys: the same init, compiled in about half the time on CPU.
  steps, state = train.jit_steps(steps, c, dev, jax.random.key(0, impl='rbg'))
  losses = []
  for _ in range(20):
    state, m = steps.train_step(state, dev)
    losses.append(float(m['loss']))
  assert np.all(np.isfinite(losses))
  assert losses[-1] < losses[0] - 0.015, losses
  assert all(b < a for a, b in zip(losses, losses[1:])), losses


def test_wide_deep_owns_two_tables_per_feature_and_trains_them_row_sparsely():
  """Written against the model contract: embed/<f>/deep and embed/<f>/wide, no widened table."""
  c = configs.base_config()
  c.model.name = 'wide_deep'
  c.model.tower = (8,)
  c.model.bottom = (8,)
  c.optim.dense.lr = 1e-3
  c.mesh.num_devices = 1
  batch = synthetic.make_batches(INFOS, SPEC, 1, 256, seed=3)[0]
  model = build_model(c.model, INFOS, SPEC)
  steps = train.make_steps(model, c, total_steps=100)
  dev = train.device_batch(batch)
  steps, state = train.jit_steps(steps, c, dev, jax.random.key(0, impl='rbg'))
  embed = state.params['embed']
  assert set(embed) == TABLES
  for name in TABLES:
    assert set(embed[name]) == {'deep', 'wide'}
    assert embed[name]['deep'].shape[1] == 16 and embed[name]['wide'].shape[1] == T
  assert state.params['wide_bias'].shape == (T,)  # made in setup
  before = np.asarray(embed['user_id']['wide']).copy()
  losses = []
  for _ in range(10):
    state, m = steps.train_step(state, dev)
    losses.append(float(m['loss']))
  assert losses[-1] < losses[0], losses
  after = np.asarray(state.params['embed']['user_id']['wide'])
  touched = np.unique(np.asarray(batch['features']['user_id']))
  untouched = np.setdiff1d(np.arange(after.shape[0]), touched)
  assert np.abs(after[touched] - before[touched]).max() > 0
  np.testing.assert_array_equal(after[untouched], before[untouched])  # row-sparse


def test_mmoe_settings_are_checked_and_one_expert_is_enough():
  rule = r'^mmoe needs config.model.num_experts >= 1 and a non-empty config.model.bottom, got '
  for bad in (dict(num_experts=0), dict(bottom=())):
    with pytest.raises(ValueError, match=rule):
      init(model_for('mmoe', **bad))
  one = model_for('mmoe', num_experts=1)
  p = init(one)['params']
  g = np.asarray(sown(one, p)['gate_weights'][0])
  assert g.shape == (64, T, 1) and np.all(g == 1.0)  # a softmax over one expert
  assert apply(one, p).shape == (64, T)


@pytest.mark.parametrize('name', NAMES)
def test_bfloat16_models_return_float32_logits_and_gate_weights(name):
  """bfloat16 compute, float32 out (the contract's logits); MMoE's and PLE's expert gates
  take their softmax in float32 too, so their weights sum to 1 to float32 rounding."""
  model = model_for(name, dtype='bfloat16')
  logits, inter, head = run(model, init(model)['params'])
  assert logits.dtype == jnp.float32 and head.dtype == jnp.float32, name
  for key, value in inter.items():
    if key == 'gate_weights' or key.startswith('gate_weights'):
      g = np.asarray(value[0])
      assert g.dtype == np.float32, key
      np.testing.assert_allclose(g.sum(-1), 1.0, atol=1e-6)
