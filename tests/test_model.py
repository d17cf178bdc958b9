"""PEPNet's structure: gate ranges, stop-gradient paths, switches."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax import configs, synthetic
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


def test_gate_nu_output_in_open_interval():
  gate = GateNU(hidden=16, out=32, gamma=2.0)
  x = jax.random.normal(jax.random.key(1), (512, 24)) * 3.0
  params = gate.init(jax.random.key(2), x)
  y = gate.apply(params, x)
  assert y.shape == (512, 32)
  assert float(y.min()) > 0.0 and float(y.max()) < 2.0
  # gamma scales the range: the same unit with gamma=1 gives exactly half.
  y1 = GateNU(hidden=16, out=32, gamma=1.0).apply(params, x)
  np.testing.assert_allclose(np.asarray(y1) * 2.0, np.asarray(y), rtol=1e-6)


def test_model_gates_lie_in_zero_gamma():
  model = model_for(gamma=2.0)
  v = init(model)
  _, inter = model.apply({'params': v['params']}, BATCH['features'], BATCH['domain'],
                         mutable=['intermediates'])
  gates = jax.tree.leaves(inter)
  assert len(gates) == 1 + 3  # EPNet gate + one PPNet gate per tower layer (2 hidden + logit)
  for g in gates:
    assert float(g.min()) > 0.0 and float(g.max()) < 2.0


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


def test_gamma_and_ppnet_change_outputs_but_not_shapes():
  a = model_for()
  logits = a.apply(init(a), BATCH['features'], BATCH['domain'])
  assert logits.shape == (64, len(SPEC.tasks)) and logits.dtype == jnp.float32
  b = model_for(use_ppnet=False)
  logits_b = b.apply(init(b), BATCH['features'], BATCH['domain'])
  assert logits_b.shape == logits.shape
  assert not np.allclose(np.asarray(logits), np.asarray(logits_b))


def test_domain_towers_select_the_row_domain():
  model = model_for(domain_towers=True)
  v = init(model)
  assert v['params']['towers_2']['kernel'].shape[-1] == len(SPEC.domains)
  other = dict(BATCH, domain=(BATCH['domain'] + 1) % len(SPEC.domains))
  a = model.apply(v, BATCH['features'], BATCH['domain'])
  b = model.apply(v, other['features'], other['domain'])
  assert not np.allclose(np.asarray(a), np.asarray(b))


def test_bfloat16_towers_keep_float32_params_and_logits():
  model = model_for(dtype='bfloat16')
  v = init(model)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(v['params']))
  logits = model.apply(v, BATCH['features'], BATCH['domain'])
  assert logits.dtype == jnp.float32
  ref = model_for().apply(v, BATCH['features'], BATCH['domain'])
  np.testing.assert_allclose(np.asarray(logits), np.asarray(ref), atol=0.1)


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
