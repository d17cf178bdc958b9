"""PEPNet's structure: gate ranges, stop-gradient paths, switches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax import configs
from pepnet_jax.data import synthetic
from pepnet_jax.models import build_model
from pepnet_jax.models.layers import GateNU

INFOS, SPEC = synthetic.bench_features(video_vocab=300, user_vocab=200, author_vocab=50)
BATCH = synthetic.make_batches(INFOS, SPEC, 1, 64, seed=1)[0]


def model_for(**overrides):
  mc = configs.base_config().model
  mc.tower = (32, 16)
  mc.ppnet_hidden = 8
  for k, v in overrides.items():
    mc[k] = v
  return build_model(mc, INFOS, SPEC)


def init(model):
  return model.init(jax.random.key(0), BATCH['features'], BATCH['domain'])


def np_gate(params, parts, gamma):
  """Gate NU by hand: gamma * sigmoid(relu([parts] W1 + b1) W2 + b2), in float64."""
  x = np.concatenate([np.asarray(p, np.float64) for p in parts], -1)
  h = np.maximum(x @ np.asarray(params['hidden']['kernel'], np.float64)
                 + np.asarray(params['hidden']['bias'], np.float64), 0.0)
  out = params['out'] if 'out' in params else params  # SplitGateNU keeps its own kernel
  z = h @ np.asarray(out['kernel'], np.float64) + np.asarray(out['bias'], np.float64)
  return gamma / (1.0 + np.exp(-z))


def random_like(tree, seed, scale=0.5):
  rng = np.random.default_rng(seed)
  return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) * scale, x.dtype), tree)


@pytest.mark.parametrize('gamma', [2.0, 1.5])
def test_gate_nu_is_gamma_sigmoid_of_a_relu_layer_by_hand(gamma):
  """GateNU and SplitGateNU against a NumPy Gate NU with the same (non-zero) parameters;
  the input given as parts (PartsDense) is the concatenation of the parts."""
  from pepnet_jax.models.layers import SplitGateNU
  k = jax.random.split(jax.random.key(1), 2)
  a, b = jax.random.normal(k[0], (16, 5)) * 2.0, jax.random.normal(k[1], (16, 19)) * 2.0
  gate = GateNU(hidden=7, out=12, gamma=gamma)
  params = random_like(gate.init(jax.random.key(2), [a, b]), 3)['params']
  y = np.asarray(gate.apply({'params': params}, [a, b]))
  want = np_gate(params, [a, b], gamma)
  np.testing.assert_allclose(y, want, rtol=1e-5, atol=1e-6)
  assert want.min() < 0.2 * gamma and want.max() > 0.8 * gamma  # both ends exercised
  split = SplitGateNU(hidden=7, parts=3, width=4, gamma=gamma)
  sp = random_like(split.init(jax.random.key(4), [a, b]), 5)['params']
  ys = np.asarray(split.apply({'params': sp}, [a, b]))
  assert ys.shape == (3, 16, 4)  # [parts, B, width]: part t is outputs t*4 .. t*4+3
  want_s = np_gate(sp, [a, b], gamma).reshape(16, 3, 4).transpose(1, 0, 2)
  np.testing.assert_allclose(ys, want_s, rtol=1e-5, atol=1e-6)


def test_model_gates_are_gate_nus_of_their_declared_inputs():
  """The sown gate values against NumPy Gate NUs of the paper's inputs: EPNet on
  E(tab) (+) E, PPNet (every layer) on E(user) (+) E(video) (+) E(author) (+) O_ep."""
  model = model_for(gamma=1.5)
  params = random_like(init(model)['params'], 6, scale=0.3)
  _, inter = model.apply({'params': params}, BATCH['features'], BATCH['domain'],
                         mutable=['intermediates'])
  gates = {k: np.asarray(v[0]) for k, v in inter['intermediates'].items()}
  assert sorted(gates) == ['epnet_gate_value'] + [f'ppnet_gate_value_{l}' for l in range(3)]
  feats = BATCH['features']
  emb = {f.name: np.asarray(params['embed'][f.name])[feats[f.name]] for f in INFOS}
  e = np.concatenate([emb[f.name] for f in INFOS], -1)  # every bench field is shared
  delta = np_gate(params['epnet_gate'], [emb['tab'], e], 1.5)
  np.testing.assert_allclose(gates['epnet_gate_value'], delta, rtol=1e-5, atol=1e-6)
  o_ep = delta * e
  t = len(SPEC.tasks)
  for l, width in enumerate([e.shape[1], 32, 16]):
    want = np_gate(params[f'ppnet_gates_{l}'], [emb['user_id'], emb['video_id'],
                                                 emb['author_id'], o_ep], 1.5)
    want = want.reshape(len(e), t, width).transpose(1, 0, 2)
    np.testing.assert_allclose(gates[f'ppnet_gate_value_{l}'], want, rtol=1e-4, atol=1e-5,
                               err_msg=str(l))


def grads_at_perturbations(model, variables):
  """dL/dE, dL/dO_ep, dL/dH_0 and the EPNet gate value for a BCE loss."""
  def loss(perturbations):
    logits, inter = model.apply(
        {'params': variables['params'], 'perturbations': perturbations},
        BATCH['features'], BATCH['domain'], mutable=['intermediates'])
    bce = jnp.mean(jnp.logaddexp(0.0, logits) - BATCH['labels'] * logits)
    return bce, inter
  (_, inter), g = jax.value_and_grad(loss, has_aux=True)(variables['perturbations'])
  return g, inter['intermediates']['epnet_gate_value'][0]


@pytest.mark.parametrize('stop_gradient', [True, False])
def test_stop_gradient_blocks_exactly_the_gate_paths(stop_gradient):
  model = model_for(gate_stop_gradient=stop_gradient)
  v = init(model)
  g, delta = grads_at_perturbations(model, v)
  # E feeds the EPNet gate input and the product delta * E. The product's part
  # of dL/dE is delta * dL/dO_ep; the rest came through the gate's input.
  through_epnet_gate = g['E'] - delta * g['O_ep']
  # O_ep feeds the towers (H_0) and the PPNet gate input.
  through_ppnet_gate = g['O_ep'] - g['H_0']
  if stop_gradient:
    assert float(jnp.abs(through_epnet_gate).max()) == 0.0
    assert float(jnp.abs(through_ppnet_gate).max()) == 0.0
  else:
    assert float(jnp.abs(through_epnet_gate).max()) > 1e-7
    assert float(jnp.abs(through_ppnet_gate).max()) > 1e-7


def top_level(params):
  return {k: jax.tree.map(jnp.shape, v) for k, v in params.items()}


def test_switches_remove_exactly_the_gate_parameters():
  full = top_level(init(model_for())['params'])
  no_ep = top_level(init(model_for(use_epnet=False))['params'])
  no_pp = top_level(init(model_for(use_ppnet=False))['params'])
  neither = top_level(init(model_for(use_epnet=False, use_ppnet=False))['params'])
  ep_keys = {'epnet_gate'}
  pp_keys = {k for k in full if k.startswith('ppnet_gates_')}
  assert len(pp_keys) == 3
  assert set(full) - set(no_ep) == ep_keys and set(no_ep) <= set(full)
  assert set(full) - set(no_pp) == pp_keys and set(no_pp) <= set(full)
  assert set(full) - set(neither) == ep_keys | pp_keys
  for k in neither:  # everything that remains keeps its shape
    assert neither[k] == full[k]


def test_separate_task_gates_have_one_gate_per_task_per_layer():
  split = init(model_for(task_gates='split'))['params']
  sep = init(model_for(task_gates='separate'))['params']
  t = len(SPEC.tasks)
  assert sep['ppnet_gates_0_0']['out']['kernel'].shape[1] * t == \
      split['ppnet_gates_0']['kernel'].shape[1]
  assert len([k for k in sep if k.startswith('ppnet_gates_')]) == 3 * t


def test_gamma_scales_every_gate_and_the_logits_by_hand():
  """Without EPNet the PPNet gates' inputs do not depend on gamma, so gamma 1.5 gives
  exactly 0.75 x the gamma-2 gates; with zero biases (the initialisation) and relu, each
  of the three gated layers then scales the logits by 0.75: 0.75^3 in all."""
  v = init(model_for(use_epnet=False))
  assert all(not np.asarray(b).any() for k, p in v['params'].items() if k.startswith('towers_')
             for b in [p['bias']])
  args = (BATCH['features'], BATCH['domain'])
  out = {}
  for gamma in (2.0, 1.5):
    out[gamma] = model_for(use_epnet=False, gamma=gamma).apply(v, *args,
                                                               mutable=['intermediates'])
  (z2, i2), (z15, i15) = out[2.0], out[1.5]
  for l in range(3):
    g2, g15 = (np.asarray(i['intermediates'][f'ppnet_gate_value_{l}'][0]) for i in (i2, i15))
    np.testing.assert_allclose(g15, 0.75 * g2, rtol=1e-6)
  np.testing.assert_allclose(np.asarray(z15), 0.75 ** 3 * np.asarray(z2), rtol=1e-4, atol=1e-7)
  assert np.abs(np.asarray(z2)).max() > 1e-3
  # With EPNet, its gate scales the same way (its inputs come before any gate).
  v = init(model_for())
  ep = {g: np.asarray(model_for(gamma=g).apply(v, *args, mutable=['intermediates'])[1]
                      ['intermediates']['epnet_gate_value'][0]) for g in (2.0, 1.5)}
  np.testing.assert_allclose(ep[1.5], 0.75 * ep[2.0], rtol=1e-6)


@pytest.mark.parametrize('switch', ['use_ppnet', 'use_epnet'])
def test_a_switched_off_gate_is_the_full_model_with_that_gate_at_one(switch):
  """gamma * sigmoid(0) = 1 at gamma 2: zeroing a gate's output layer makes it the
  identity, and the model must then score exactly as the one without that gate."""
  full = model_for()
  params = random_like(init(full)['params'], 7, scale=0.3)
  unit = dict(params)
  prefix = 'ppnet_gates_' if switch == 'use_ppnet' else 'epnet_gate'
  for k in [k for k in params if k.startswith(prefix)]:
    g = dict(params[k])
    if 'out' in g:
      g['out'] = jax.tree.map(jnp.zeros_like, g['out'])
    else:
      g['kernel'], g['bias'] = jnp.zeros_like(g['kernel']), jnp.zeros_like(g['bias'])
    unit[k] = g
  args = (BATCH['features'], BATCH['domain'])
  off = model_for(**{switch: False})
  kept = {k: v for k, v in params.items() if not k.startswith(prefix)}
  z_off = np.asarray(off.apply({'params': kept}, *args))
  np.testing.assert_allclose(np.asarray(full.apply({'params': unit}, *args)), z_off,
                             rtol=1e-5, atol=1e-5)
  # and the gate, when it is not at one, matters
  assert np.abs(np.asarray(full.apply({'params': params}, *args)) - z_off).max() > 1e-2


def test_domain_towers_score_each_row_with_its_own_domain_column():
  model = model_for(domain_towers=True)
  params = dict(init(model)['params'])
  assert params['towers_2']['kernel'].shape[-1] == len(SPEC.domains)
  # Last layer: kernel 0, bias[t, d] = 10 d + t, so a row's logit for task t names the
  # domain column it was read from.
  t, d = params['towers_2']['bias'].shape
  params['towers_2'] = {'kernel': jnp.zeros_like(params['towers_2']['kernel']),
                        'bias': jnp.asarray(10.0 * np.arange(d)[None, :] + np.arange(t)[:, None],
                                            jnp.float32)}
  domain = (BATCH['domain'] + 1) % d  # not the tab feature: the row's domain argument decides
  z = np.asarray(model.apply({'params': params}, BATCH['features'], domain))
  np.testing.assert_array_equal(z, 10.0 * np.asarray(domain)[:, None] + np.arange(t)[None, :])


def test_bfloat16_towers_keep_float32_params_and_logits():
  model = model_for(dtype='bfloat16')
  v = init(model)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v['params']))
  logits = model.apply(v, BATCH['features'], BATCH['domain'])
  assert logits.dtype == jnp.float32
  ref = np.asarray(model_for().apply(v, BATCH['features'], BATCH['domain']))
  err = np.abs(np.asarray(logits) - ref).max()
  # bfloat16 keeps 8 significant bits (relative rounding 2^-9 per product and sum): the
  # logits agree to about 1% of their scale, and they do differ (bfloat16 was used).
  assert 0.0 < err < 0.02 * np.abs(ref).max(), (err, np.abs(ref).max())


def test_task_transfer_starts_as_the_plain_model_and_keeps_other_towers_out():
  """The extension adds W [T, T] at 0, so an initialised model scores as without it; with
  W set, a task's loss still trains only its own tower (the other logits are stop-gradient),
  while W itself learns."""
  plain, tt = model_for(), model_for(task_transfer=True)
  p_tt = init(tt)['params']
  assert p_tt['task_transfer'].shape == (len(SPEC.tasks),) * 2
  p_plain = {k: v for k, v in p_tt.items() if k != 'task_transfer'}
  assert jax.tree.map(jnp.shape, p_plain) == jax.tree.map(jnp.shape, init(plain)['params'])
  args = (BATCH['features'], BATCH['domain'])
  z = plain.apply({'params': p_plain}, *args)
  np.testing.assert_array_equal(np.asarray(tt.apply({'params': p_tt}, *args)), np.asarray(z))

  w = jax.random.normal(jax.random.key(3), p_tt['task_transfer'].shape)
  p_tt = dict(p_tt, task_transfer=w)
  want = z + z @ (w * (1 - jnp.eye(w.shape[0])))
  np.testing.assert_allclose(np.asarray(tt.apply({'params': p_tt}, *args)), np.asarray(want),
                             rtol=1e-5, atol=1e-5)
  hate = SPEC.tasks.index('is_hate') if 'is_hate' in SPEC.tasks else len(SPEC.tasks) - 1

  def loss(p):
    logit = tt.apply({'params': p}, *args)[:, hate]
    y = BATCH['labels'][:, hate]
    return jnp.mean(jnp.logaddexp(0.0, logit) - y * logit)
  g = jax.grad(loss)(p_tt)
  kernel = np.asarray(g['towers_0']['kernel'])  # [T, in, out], task-major
  others = np.delete(kernel, hate, axis=0)
  assert np.abs(others).max() == 0.0 and np.abs(kernel[hate]).max() > 0.0
  gw = np.asarray(g['task_transfer'])
  assert np.abs(gw[:, hate]).max() > 0.0  # the mix into hate learns
  assert np.abs(np.delete(gw, hate, axis=1)).max() == 0.0


# ---- the registry and the tables every model shares ----------------------------------

def test_a_taken_model_name_is_refused_and_a_rerun_definition_replaces_it(monkeypatch):
  from pepnet_jax.models import registry
  monkeypatch.setattr(registry, 'MODELS', dict(registry.MODELS))
  original = registry.MODELS['pepnet']

  def other(mc, infos, spec, common):  # another factory under a taken name
    return None
  with pytest.raises(ValueError, match=r"^model name 'pepnet' is already registered by "
                                       r"pepnet_jax\.models\.pepnet\._pepnet$"):
    registry.register('pepnet')(other)
  assert registry.MODELS['pepnet'] is original
  assert registry.register('pepnet')(original) is original  # the same function: no error

  def _pepnet(mc, infos, spec, common):  # the same definition re-run (a reloaded module)
    return None
  _pepnet.__qualname__ = original.__qualname__
  registry.register('pepnet')(_pepnet)
  assert registry.MODELS['pepnet'] is _pepnet
  registry.register('brand_new')(other)
  assert registry.resolve('brand_new') is other


def test_build_model_hands_every_factory_the_common_arguments(monkeypatch):
  """``build_model`` gives the factory the config, the features (all shared under
  ``domain_in_input``) and ``common`` built from the config and the data, with the
  documented defaults for the fields a config may leave out."""
  import ml_collections
  from pepnet_jax.models import layers, registry
  monkeypatch.setattr(registry, 'MODELS', dict(registry.MODELS))
  seen = []

  @registry.register('records_its_arguments')
  def factory(mc, infos, spec, common):
    seen.append((mc, infos, spec, common))
    return 'built'

  import dataclasses as dc
  given = [*INFOS[:-1], dc.replace(INFOS[-1], shared=False)]  # one domain-side field
  mc = ml_collections.ConfigDict(dict(name='records_its_arguments', embed_dim=5))
  assert build_model(mc, given, SPEC) == 'built'
  got_mc, infos, spec, common = seen[-1]
  assert got_mc is mc and spec is SPEC and infos is given
  assert common == dict(features=tuple(given), num_tasks=len(SPEC.tasks),
                        num_domains=len(SPEC.domains), embed_dim=5, dtype=jnp.float32,
                        row_multiple=1, dropout=0.0)
  mc = ml_collections.ConfigDict(dict(name='records_its_arguments', embed_dim=3,
                                      dtype='bfloat16', table_row_multiple=8, dropout=0.25,
                                      domain_in_input=True))
  build_model(mc, given, SPEC)
  _, infos, _, common = seen[-1]
  want = [dc.replace(f, shared=True) for f in given]
  assert given[-1].shared is False  # the caller's list is left as it was
  assert list(infos) == want and common['features'] == tuple(want)
  assert (common['embed_dim'], common['dtype'], common['row_multiple']) == (3, jnp.bfloat16, 8)
  assert common['dropout'] == 0.25 and type(common['dropout']) is float
  assert layers.dtype_from_name('bfloat16') == jnp.bfloat16


def test_an_unknown_model_name_lists_the_registered_models_and_the_package_modules():
  import pathlib

  from pepnet_jax.models import registry
  folder = pathlib.Path(registry.__file__).parent
  modules = sorted(p.stem for p in folder.glob('*.py') if not p.stem.startswith('_'))
  assert 'pepnet' in modules and '__init__' not in modules
  with pytest.raises(ValueError) as e:
    registry.resolve('no_such_model')
  msg = str(e.value)
  assert f'a module of pepnet_jax.models ({", ".join(modules)})' in msg
  assert f'not a registered model ({", ".join(sorted(registry.MODELS))})' in msg
  assert msg.endswith('or an importable dotted module path that registers it; see '
                      'docs/extending.md')


def test_an_unknown_task_gates_setting_is_named():
  with pytest.raises(ValueError) as e:
    init(model_for(task_gates='shared'))
  assert str(e.value) == "config.model.task_gates='shared': use 'split' or 'separate'"


@pytest.mark.parametrize('name', ['pepnet', 'shared_bottom', 'single_task', 'mmoe', 'ple',
                                  'star', 'wide_deep', 'lr'])
def test_tables_are_padded_to_the_row_multiple_and_start_small(name):
  """Every table has its vocabulary's rows rounded up to ``table_row_multiple`` (so tables
  split evenly over devices) and starts in U(-0.05, 0.05); LR's weights and Wide & Deep's
  wide weights start at exactly 0 (LR at its bias; Wide & Deep as its deep part)."""
  mc = configs.base_config().model
  mc.name, mc.tower, mc.bottom, mc.table_row_multiple = name, (8,), (8,), 16
  model = build_model(mc, INFOS, SPEC)
  tables = init(model)['params']['embed']
  vocab = {f.name: f.vocab_size for f in INFOS}
  assert tables
  for feature, t in tables.items():
    for kind, table in (t.items() if isinstance(t, dict) else [('', t)]):
      table = np.asarray(table)
      want = -(-vocab[feature] // 16) * 16
      assert table.shape[0] == want and want >= vocab[feature], (feature, kind, table.shape)
      if kind == 'wide' or name == 'lr':
        assert not table.any(), feature
      else:
        assert np.abs(table).max() < 0.05 and np.abs(table).max() > 0.04, (feature, kind)


def test_task_tower_kernels_start_lecun_normal_per_task():
  """Each task's [in, out] slice of a stacked tower kernel [T, in, out] is LeCun normal:
  variance 1 / in (fan-in is the input width, not the number of tasks), mean 0, and the
  tasks' slices differ."""
  from pepnet_jax.models import layers
  t, d_in, d_out = 3, 400, 300
  dense = layers.TaskDense(t, d_out)
  kernel = np.asarray(dense.init(jax.random.key(4), jnp.zeros((2, d_in)))['params']['kernel'])
  assert kernel.shape == (t, d_in, d_out)
  for k in kernel:
    assert abs(k.std() * np.sqrt(d_in) - 1.0) < 0.02, k.std() * np.sqrt(d_in)
    assert abs(k.mean()) < 4 * k.std() / np.sqrt(k.size)
    assert np.abs(k).max() <= 2 * np.sqrt(1 / d_in) / 0.87962566103423978 + 1e-6  # truncated at 2 sd
  assert not np.allclose(kernel[0], kernel[1])


def test_resolve_imports_a_dotted_module_path_and_says_what_went_wrong(tmp_path, monkeypatch):
  from pepnet_jax.models import registry
  monkeypatch.setattr(registry, 'MODELS', dict(registry.MODELS))
  monkeypatch.syspath_prepend(str(tmp_path))
  pkg = tmp_path / 'resolve_pkg'
  pkg.mkdir()
  (pkg / '__init__.py').write_text('')
  (pkg / 'good.py').write_text(
      'from pepnet_jax.models.registry import register\n\n'
      "@register('resolve_pkg.good')\ndef build(mc, infos, spec, common):\n  return 'built'\n")
  (pkg / 'silent.py').write_text('X = 1\n')
  (pkg / 'broken.py').write_text('import resolve_pkg_missing_dependency\n')
  assert registry.resolve('resolve_pkg.good')(None, None, None, None) == 'built'
  with pytest.raises(ValueError) as e:
    registry.resolve('resolve_pkg.silent')
  assert str(e.value) == ("config.model.name='resolve_pkg.silent': module resolve_pkg.silent "
                          "was imported but registers no model of that name (it needs "
                          "@register('resolve_pkg.silent'))")
  with pytest.raises(ModuleNotFoundError, match='resolve_pkg_missing_dependency'):
    registry.resolve('resolve_pkg.broken')  # its own import fails: that error, not "unknown"
  with pytest.raises(ValueError, match=r"^config.model.name='resolve_pkg.absent' is not a "
                                       r'registered model \('):
    registry.resolve('resolve_pkg.absent')

