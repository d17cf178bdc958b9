"""Where PEPNet's gradients flow, and what each gate reads (paper section 3).

* EPNet: ``delta_domain = U_ep(E(F_d) (+) sg(E))``. The gate output carries no gradient
  into E (only into the domain-side fields), while E still trains through
  ``O_ep = delta_domain * E``.
* PPNet: ``delta_task_l = U_pp_l(O_prior (+) sg(O_ep))``. The gates carry no gradient
  into O_ep (nor, through it, into E or the domain fields), only into the priors.

The gradient checks take vector-Jacobian products of the gate values the model sows,
so the only path from a gate back to its inputs is the gate itself: an exact zero where
the paper puts ``sg``, a non-zero gradient everywhere else. ``gate_stop_gradient=False``
is the control: the same products are non-zero there, so the zeros are not an artefact
of the test. The dependence checks perturb one input at a time and watch each gate's
output: it moves when, and only when, one of its declared inputs moves.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax import configs
from pepnet_jax.data import synthetic
from pepnet_jax.models import build_model

Info, Spec = synthetic.Info, synthetic.Spec

# Priors (user, item, author) are shared fields too, as in the paper; 'tab' is the only
# domain-side field and is not in E; 'ctx', 'tags' and 'age' are in E and nowhere else.
INFOS = (Info('user_id', 'categorical', 30), Info('video_id', 'categorical', 40),
         Info('author_id', 'categorical', 20), Info('tab', 'categorical', 3, shared=False),
         Info('ctx', 'categorical', 10), Info('tags', 'multi', 25, max_len=3),
         Info('age', 'dense', 0))
SPEC = Spec(tasks=('click', 'like', 'follow'), domains=(0, 1, 2),
            groups={'domain': ('tab',), 'user': ('user_id',), 'item': ('video_id',),
                    'author': ('author_id',)})
PRIORS = ('user_id', 'video_id', 'author_id')
B = 12


def make_batch(seed=0):
  rng = np.random.default_rng(seed)
  domain = rng.integers(0, 3, B).astype(np.int32)
  feats = {f.name: rng.integers(1, f.vocab_size, B).astype(np.int32)
           for f in INFOS if f.kind == 'categorical'}
  feats['tab'] = domain.copy()
  feats['tags'] = rng.integers(1, 25, (B, 3)).astype(np.int32)
  feats['tags'][::3, 2] = 0  # some padding slots
  feats['age'] = rng.normal(size=B).astype(np.float32)
  labels = (rng.random((B, 3)) < 0.4).astype(np.float32)
  return {k: jnp.asarray(v) for k, v in feats.items()}, jnp.asarray(domain), jnp.asarray(labels)


FEATS, DOMAIN, LABELS = make_batch()


def model_for(**overrides):
  """(model, params, gathered rows, zero perturbations) of a small PEPNet.

  Parameters are drawn here in NumPy (kernels ~ N(0, 1/fan_in), biases and tables
  ~ N(0, 0.1^2)) from the shapes ``init`` would give: the checks need generic values,
  not the library's initialisation, and this skips compiling ``init`` (~15 s here)."""
  mc = configs.base_config().model
  mc.embed_dim = 4
  mc.tower = (8, 6)
  mc.ppnet_hidden = 5
  mc.table_row_multiple = 1
  for k, v in overrides.items():
    mc[k] = v
  model = build_model(mc, INFOS, SPEC)
  shapes = jax.eval_shape(model.init, jax.random.key(0), FEATS, DOMAIN)
  rng = np.random.default_rng(0)

  def draw(path, s):
    scale = s.shape[-2] ** -0.5 if len(s.shape) >= 2 and 'embed' not in str(path) else 0.1
    return jnp.asarray(rng.normal(size=s.shape).astype(np.float32) * scale)
  params = jax.tree_util.tree_map_with_path(draw, shapes['params'])
  perts = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes['perturbations'])
  rows = model.apply({'params': params}, FEATS, method='lookup')
  return model, params, rows, perts


def run_head(model, params, rows, perts, feats=FEATS):
  """(logits, {sown gate name: value}) of ``head`` on the given rows and perturbations."""
  logits, inter = model.apply({'params': params, 'perturbations': perts}, rows, feats, DOMAIN,
                              method='head', mutable=['intermediates'])
  return logits, {k: v[0] for k, v in inter['intermediates'].items()}


def gate_names(gates):
  return ['epnet_gate_value'] + sorted(k for k in gates if k.startswith('ppnet_gate_value_'))


def gate_vjp(model, params, rows, perts, name, seed=1):
  """Cotangents of the sown gate ``name`` with respect to (params, rows, perturbations),
  for a fixed random output cotangent: the gradient through that gate alone."""
  def f(params, rows, perts):
    return run_head(model, params, rows, perts)[1][name]
  out, pull = jax.vjp(f, params, rows, perts)
  ct = jax.random.normal(jax.random.key(seed), out.shape, out.dtype)
  return pull(ct)


def mag(x):
  return float(jnp.abs(x).max()) if x is not None else 0.0


def tree_mag(tree):
  return max(mag(x) for x in jax.tree.leaves(tree))


# ---- gradient flow: exact zeros where the paper puts sg, and only there -------------------


@pytest.mark.parametrize('stop_gradient', [True, False])
def test_epnet_gate_sends_gradient_to_the_domain_fields_but_none_into_E(stop_gradient):
  model, params, rows, perts = model_for(gate_stop_gradient=stop_gradient)
  g_params, g_rows, g_perts = gate_vjp(model, params, rows, perts, 'epnet_gate_value')
  # The domain-side field reaches the gate directly: it is trained through it either way.
  assert mag(g_rows['tab']) > 1e-6
  # The gate's own weights learn, those that read E included (sg is on E, not on them).
  gate = g_params['epnet_gate']
  e_width = 6 * 4  # six shared fields x embed_dim
  assert mag(gate['hidden']['kernel'][-e_width:]) > 1e-6
  assert mag(gate['hidden']['kernel'][:-e_width]) > 1e-6
  assert mag(gate['out']['kernel']) > 1e-6
  # Nothing downstream of the gate (PPNet gates, towers) gets a gradient from its value.
  assert set(g_params) == {'embed', 'pool', 'epnet_gate', 'ppnet_gates_0', 'ppnet_gates_1',
                           'ppnet_gates_2', 'towers_0', 'towers_1', 'towers_2'}
  assert all(tree_mag(v) == 0.0 for k, v in g_params.items()
             if k.startswith(('ppnet_gates_', 'towers_')))
  # E, and every table and the dense field's projection ('pool') that feed E.
  through_e = ([g_perts['E']] + [g_rows[f] for f in PRIORS + ('ctx', 'tags')]
               + jax.tree.leaves(g_params['pool']))
  if stop_gradient:  # sg(E): not one unit of E, nor anything feeding it, hears the gate
    assert all(mag(x) == 0.0 for x in through_e)
  else:
    assert all(mag(x) > 1e-6 for x in through_e)


@pytest.mark.parametrize('stop_gradient,task_gates', [(True, 'split'), (True, 'separate'),
                                                      (False, 'split')])
def test_ppnet_gates_send_gradient_to_the_priors_but_none_into_O_ep(stop_gradient, task_gates):
  model, params, rows, perts = model_for(gate_stop_gradient=stop_gradient,
                                         task_gates=task_gates)
  _, gates = run_head(model, params, rows, perts)
  names = [n for n in gate_names(gates) if n != 'epnet_gate_value']
  assert len(names) == 3  # two hidden layers and the logit layer
  for name in names:
    g_params, g_rows, g_perts = gate_vjp(model, params, rows, perts, name)
    for f in PRIORS:  # O_prior reaches every layer's gate directly
      assert mag(g_rows[f]) > 1e-6, (name, f)
    gate_params = {k: v for k, v in g_params.items() if k.startswith('ppnet_gates_')}
    assert tree_mag(gate_params) > 1e-6, name
    # No tower is upstream of a PPNet gate.
    assert all(mag(x) == 0.0 for k, v in g_params.items()
               if k.startswith('towers_') for x in jax.tree.leaves(v)), name
    assert mag(g_perts['H_0']) == 0.0
    # O_ep, and everything that reaches the gate only through O_ep: E, the fields only
    # in E, the domain field (via the EPNet gate).
    through_o_ep = [g_perts['O_ep'], g_perts['E'], g_rows['tab'], g_rows['ctx'],
                    g_rows['tags'], *jax.tree.leaves(g_params['pool'])]
    if stop_gradient:
      assert all(mag(x) == 0.0 for x in through_o_ep), name
      assert tree_mag(g_params['epnet_gate']) == 0.0, name
    else:
      assert all(mag(x) > 1e-6 for x in through_o_ep), name
      assert tree_mag(g_params['epnet_gate']) > 1e-6, name


def bce_grads(model, params, rows, perts):
  def loss(params, rows, perts):
    logits, _ = run_head(model, params, rows, perts)
    return jnp.mean(jnp.logaddexp(0.0, logits) - LABELS * logits)
  return jax.grad(loss, argnums=(0, 1, 2))(params, rows, perts)


def test_the_training_loss_reaches_every_parameter_and_every_field():
  """An sg placed anywhere else (gate output, the product delta * E, the tower input, a
  prior) would leave some parameter or field without gradient."""
  model, params, rows, perts = model_for()
  g_params, g_rows, g_perts = bce_grads(model, params, rows, perts)
  g_params = {k: v for k, v in g_params.items() if k != 'embed'}  # tables train as rows
  assert set(g_params) >= {'epnet_gate', 'ppnet_gates_0', 'towers_0', 'pool'}
  for path, g in jax.tree_util.tree_flatten_with_path(g_params)[0]:
    assert mag(g) > 1e-7, jax.tree_util.keystr(path)
  for f, g in g_rows.items():
    assert mag(g) > 1e-7, f
  for k in ('E', 'O_ep', 'H_0'):
    assert mag(g_perts[k]) > 1e-7, k


def assert_same(a, b, what):
  for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
    np.testing.assert_allclose(np.asarray(x), np.asarray(y), rtol=1e-5, atol=1e-8, err_msg=what)


def assert_differ(a, b, what):
  assert not np.allclose(np.asarray(a), np.asarray(b), rtol=1e-3, atol=1e-7), what


@pytest.mark.parametrize('use_ppnet', [True, False])
def test_stop_gradient_changes_only_the_gradient_into_the_gate_inputs(use_ppnet):
  """sg is a backward-only edit: the same parameters give the same logits, and every
  parameter downstream of the cut gets the same gradient; only what feeds the cut input
  sees a different one. With PPNet the cut is at O_ep (PPNet gates and towers keep their
  gradients, everything before O_ep changes); without it only the EPNet gate's cut is
  left, and the gate itself and the domain field keep theirs."""
  m_sg, params, rows, perts = model_for(gate_stop_gradient=True, use_ppnet=use_ppnet)
  m_free = model_for(gate_stop_gradient=False, use_ppnet=use_ppnet)[0]
  z_sg, _ = run_head(m_sg, params, rows, perts)
  z_free, _ = run_head(m_free, params, rows, perts)
  np.testing.assert_array_equal(np.asarray(z_sg), np.asarray(z_free))
  a, b = bce_grads(m_sg, params, rows, perts), bce_grads(m_free, params, rows, perts)
  towers = [k for k in a[0] if k.startswith('towers_')]
  assert len(towers) == 3
  for k in towers:
    assert_same(a[0][k], b[0][k], k)
  assert_same(a[2]['H_0'], b[2]['H_0'], 'H_0')
  if use_ppnet:
    gates = [k for k in a[0] if k.startswith('ppnet_gates_')]
    assert len(gates) == 3
    for k in gates:
      assert_same(a[0][k], b[0][k], k)
    # Upstream of O_ep: the PPNet gates' gradient now reaches O_ep and what made it.
    assert_differ(a[2]['O_ep'], b[2]['O_ep'], 'O_ep')
    assert_differ(a[1]['tab'], b[1]['tab'], 'tab')
    assert tree_mag(jax.tree.map(jnp.subtract, a[0]['epnet_gate'], b[0]['epnet_gate'])) > 1e-7
  else:
    assert_same(a[0]['epnet_gate'], b[0]['epnet_gate'], 'epnet_gate')
    assert_same(a[1]['tab'], b[1]['tab'], 'tab')  # domain-only: its gate path is never cut
    assert_same(a[2]['O_ep'], b[2]['O_ep'], 'O_ep')
  for f in PRIORS + ('ctx', 'tags'):
    assert_differ(a[1][f], b[1][f], f)
  assert_differ(a[2]['E'], b[2]['E'], 'E')


# ---- dependence: each gate reads its declared inputs and nothing else --------------------


def changed_field(rows, feats, f, seed=7):
  """(rows, feats) with field f's vector replaced by another one in every row."""
  rows, feats = dict(rows), dict(feats)
  if f in rows:
    rows[f] = jax.random.normal(jax.random.key(seed), rows[f].shape) * 0.5
  else:  # the dense field: another value
    feats[f] = feats[f] + 3.0
  return rows, feats


def _pooled(module, rows, feats):
  return module.pool(rows, feats)


def e_and_o_ep(model, params, rows, feats):
  """E (the shared fields' vectors, concatenated in feature order) and O_ep = delta * E."""
  fields = model.apply({'params': params}, rows, feats, method=_pooled)
  e = jnp.concatenate([fields[i.name] for i in INFOS if i.shared], -1)
  zero = {k: jnp.zeros_like(e) for k in ('E', 'O_ep', 'H_0')}
  _, gates = run_head(model, params, rows, zero, feats)
  return e, gates['epnet_gate_value'] * e


def gate_values(model, params, rows, perts, feats=FEATS):
  logits, gates = run_head(model, params, rows, perts, feats)
  return np.asarray(logits), {k: np.asarray(v) for k, v in gates.items()}


def moved(a, b):
  return float(np.abs(a - b).max()) > 1e-4


def assert_held(a, b, what):
  np.testing.assert_allclose(a, b, rtol=0, atol=2e-5, err_msg=what)


FIELDS = [i.name for i in INFOS]


def test_epnet_gate_moves_with_the_domain_fields_and_E_and_nothing_else():
  model, params, rows, perts = model_for()
  _, base = gate_values(model, params, rows, perts)
  e0, _ = e_and_o_ep(model, params, rows, FEATS)
  for f in FIELDS:
    new_rows, new_feats = changed_field(rows, FEATS, f)
    _, g = gate_values(model, params, new_rows, perts, new_feats)
    # Every field here is domain-side or in E, so every one moves the gate.
    assert moved(g['epnet_gate_value'], base['epnet_gate_value']), f
    # The same change with E held where it was (a perturbation of E that cancels the
    # field's share of it): now the gate moves only for a domain-side field.
    e1, _ = e_and_o_ep(model, params, new_rows, new_feats)
    _, held = gate_values(model, params, new_rows, dict(perts, E=e0 - e1), new_feats)
    if f in model.domain_inputs:
      assert moved(held['epnet_gate_value'], base['epnet_gate_value']), f
    else:
      assert_held(held['epnet_gate_value'], base['epnet_gate_value'], f)
  # E alone moves it; O_ep and the tower input H_0 do not (they are downstream).
  for point, should_move in (('E', True), ('O_ep', False), ('H_0', False)):
    bump = dict(perts, **{point: jnp.full_like(perts[point], 0.3)})
    logits, g = gate_values(model, params, rows, bump)
    assert moved(g['epnet_gate_value'], base['epnet_gate_value']) == should_move, point


def test_ppnet_gates_move_with_the_priors_and_O_ep_and_nothing_else():
  model, params, rows, perts = model_for()
  z0, base = gate_values(model, params, rows, perts)
  pp = [n for n in gate_names(base) if n != 'epnet_gate_value']
  _, o0 = e_and_o_ep(model, params, rows, FEATS)
  for f in FIELDS:
    new_rows, new_feats = changed_field(rows, FEATS, f)
    _, o1 = e_and_o_ep(model, params, new_rows, new_feats)
    assert moved(np.asarray(o1), np.asarray(o0)), f  # every field reaches O_ep
    _, g = gate_values(model, params, new_rows, perts, new_feats)
    # O_ep held where it was: only the priors still move the gates.
    _, held = gate_values(model, params, new_rows, dict(perts, O_ep=o0 - o1), new_feats)
    for n in pp:
      assert moved(g[n], base[n]), (f, n)
      if f in model.prior_inputs:
        assert moved(held[n], base[n]), (f, n)
      else:
        assert_held(held[n], base[n], f'{f} {n}')
  # O_ep alone moves every PPNet gate; H_0, the towers' copy of it, moves none of them
  # though it moves the logits.
  for point, should_move in (('O_ep', True), ('H_0', False)):
    bump = dict(perts, **{point: jnp.full_like(perts[point], 0.3)})
    z, g = gate_values(model, params, rows, bump)
    assert moved(z, z0), point
    for n in pp:
      assert moved(g[n], base[n]) == should_move, (point, n)


def test_each_row_s_gates_read_that_row_only():
  model, params, rows, perts = model_for()
  _, base = gate_values(model, params, rows, perts)
  new_rows = {k: v.at[0].set(v[0] + 0.7) for k, v in rows.items()}
  _, g = gate_values(model, params, new_rows, perts)
  for n, v in g.items():
    row_axis = 0 if n == 'epnet_gate_value' else 1  # PPNet gates are task-major [T, B, w]
    assert moved(np.take(v, 0, row_axis), np.take(base[n], 0, row_axis)), n
    np.testing.assert_array_equal(np.take(v, np.arange(1, B), row_axis),
                                  np.take(base[n], np.arange(1, B), row_axis), err_msg=n)
