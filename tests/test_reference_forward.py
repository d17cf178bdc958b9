"""Every model's logits against an independent float64 NumPy reference.

``reference_forward.py`` re-derives each forward pass from the papers' equations and
shares no code with ``pepnet_jax/models``; here each model is built at small sizes
(embeddings of width 4, 3 tasks, 3 domains, a multi-valued field with padding, two
dense fields, one of them domain-side), its parameters set at random, and its
evaluation-mode logits compared with the reference run on the same parameters.

Parameters: the shapes come from the model's own ``init`` (traced, not compiled); the
values are random and of unit-ish scale everywhere, biases and the gate/partition
parameters that ``init`` sets to 0 or 1 included, so that no term of an equation
hides behind a zero. One test uses the genuine ``init`` values as well.

Bugs these tests were shown to catch (each applied to a scratch copy of the models, the
tests run, the copy restored): EPNet's gate without the domain-side fields (dropped, or
zeroed at equal shapes); PPNet's gates without the priors (same two ways); task t scaled
by task t+1's gate; gamma ignored; H_0 left ungated; a domain tower's output taken for
the wrong domain; the bottom MLP's activation replaced; an activation on the logit
layer; MMoE's softmax over tasks instead of experts; PLE's task experts reading another
task's input, its shared gate's experts in the wrong order; STAR's partitioned norm
without the domain bias; Wide & Deep's wide part counting padding ids; LR's multi-valued
pooling swapped.

Fast on a shared CPU: one jitted forward per configuration, batch of 32.
"""

from __future__ import annotations

import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest

import reference_forward as ref
from pepnet_jax import configs
from pepnet_jax.data import synthetic
from pepnet_jax.models import build_model

I = synthetic.Info
# Domain-side fields (shared=False) 'tab' (its ids are 2 + the domain index, as a
# vocabulary would number them, so the id and the index differ) and 'ctx' (dense):
# they feed EPNet's gate but are not in E. 'tags' is multi-valued (id 0 = padding)
# and a user prior; 'watch' is a dense shared field; 'age' a bucket.
INFOS = (I('user_id', 'categorical', 20), I('video_id', 'categorical', 30),
         I('author_id', 'categorical', 10), I('tab', 'categorical', 5, shared=False),
         I('ctx', 'dense', 0, shared=False), I('tags', 'multi', 12, max_len=4),
         I('watch', 'dense', 0), I('age', 'bucket', 6))
SPEC = synthetic.Spec(tasks=('click', 'like', 'follow'), domains=(0, 1, 2),
                      groups={'domain': ('tab', 'ctx'), 'user': ('user_id', 'tags'),
                              'item': ('video_id',), 'author': ('author_id',)})
B, T, D = 32, len(SPEC.tasks), len(SPEC.domains)

# float32 models: the error is float32 rounding through ~10 layers (|logit| ~ 1, unit
# roundoff 6e-8); measured at most 4e-7 of the logit scale over these cases. 2e-5 leaves
# 50x for other CPUs' kernels (FMA, summation order, vector widths) and is still far
# below what any change of the math moves a logit by.
F32_TOL = 2e-5
# bfloat16 compute (params stay float32, cast to bfloat16 at each layer): bfloat16 keeps
# 8 significant bits, unit roundoff u = 2^-9 ~ 2e-3. A logit passes ~15 roundings (the
# kernel, input and output of each tower layer and of each gate's two matmuls, the gate
# casts and products), so ~ sqrt(15) u ~ 8e-3 of the scale is expected and 15 u ~ 3e-2
# is a pessimistic linear sum. Measured: at most 1.3e-2. 5e-2 leaves ~4x for rounding
# that happens to add up and for other CPUs' bfloat16 kernels, yet stays well under what
# the bugs listed in the module docstring move gates and logits by (0.25 to 1.7 of the
# scale: a gate that lost its domain or prior input, the wrong task's gate, gamma ignored).
BF16_TOL = 5e-2


def make_batch(seed: int = 0):
  """Random ids (multi-valued rows with padding, some all padding), dense values and
  domains."""
  rng = np.random.default_rng(seed)
  domain = rng.integers(0, D, B).astype(np.int32)
  feats = {}
  for f in INFOS:
    if f.name == 'tab':
      feats[f.name] = (domain + 2).astype(np.int32)
    elif f.kind == 'dense':
      feats[f.name] = rng.normal(size=B).astype(np.float32)
    elif f.kind == 'multi':
      ids = rng.integers(1, f.vocab_size, (B, f.max_len))
      ids[rng.random((B, f.max_len)) < 0.4] = 0  # padding anywhere in the list
      ids[:3] = 0  # rows without a single id
      ids[3] = 1  # one id repeated
      feats[f.name] = ids.astype(np.int32)
    else:
      feats[f.name] = rng.integers(0, f.vocab_size, B).astype(np.int32)
  return feats, domain


FEATURES, DOMAIN = make_batch()


def model_config(name: str, **overrides):
  mc = configs.base_config().model
  mc.name = name
  mc.embed_dim = 4
  mc.tower = (6, 5)
  mc.ppnet_hidden = 7
  mc.bottom = (6,)
  mc.num_experts = 3
  mc.specific_experts = 2
  mc.table_row_multiple = 8  # tables padded beyond the vocabulary, as in training
  for k, v in overrides.items():
    mc[k] = v
  return mc


def random_params(shapes, seed: int):
  """Values for the model's parameter shapes: kernels ~ N(0, 1/fan_in) (a star layer's
  per-domain kernel and every scale ~ 1 + N(0, 0.3^2), as they multiply), the rest,
  tables and biases included, ~ N(0, 0.5^2)."""
  rng = np.random.default_rng(seed)

  def leaf(path, x):
    name = str(getattr(path[-1], 'key', path[-1]))
    top = str(getattr(path[0], 'key', path[0]))
    if name in ('domain_kernel', 'scale', 'domain_scale'):
      v = 1.0 + 0.3 * rng.normal(size=x.shape)
    elif top != 'embed' and 'kernel' in name and len(x.shape) >= 2:
      v = rng.normal(size=x.shape) / np.sqrt(x.shape[-2])
    else:
      v = 0.5 * rng.normal(size=x.shape)
    return jnp.asarray(v, x.dtype)
  return jax.tree_util.tree_map_with_path(leaf, shapes)


def build(mc, spec=SPEC, infos=INFOS):
  model = build_model(mc, infos, spec)
  shapes = jax.eval_shape(model.init, jax.random.key(0), FEATURES, DOMAIN)['params']
  return model, shapes


def flax_forward(model, params):
  """Evaluation-mode logits (no 'dropout' rng) and the sown intermediates."""
  fn = jax.jit(lambda p, x, d: model.apply({'params': p}, x, d, mutable=['intermediates']))
  logits, inter = fn(params, FEATURES, DOMAIN)
  return np.asarray(logits), jax.device_get(inter.get('intermediates', {}))


def assert_close(got, want, tol, what=''):
  """max |got - want| <= tol * max(1, max |want|), with a report of where it is worst."""
  got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
  assert got.shape == want.shape, (what, got.shape, want.shape)
  scale = max(1.0, float(np.abs(want).max()))
  err = np.abs(got - want)
  worst = np.unravel_index(np.argmax(err), err.shape)
  assert err.max() <= tol * scale, (
      f'{what}: max |model - reference| = {err.max():.3g} at {worst} (model {got[worst]:.6g}, '
      f'reference {want[worst]:.6g}), tolerance {tol * scale:.3g}')


def check_model(mc, tol=F32_TOL, seed=1, spec=SPEC, infos=INFOS):
  """Builds mc's model, runs it and the reference on the same random params; returns
  (model logits, reference logits)."""
  model, shapes = build(mc, spec, infos)
  params = random_params(shapes, seed)
  got, inter = flax_forward(model, params)
  trace = {}
  want = ref.forward(mc, infos, spec, jax.device_get(params), FEATURES, DOMAIN, trace)
  assert got.dtype == np.float32 and got.shape == (B, T)
  # Not a degenerate case: logits of unit scale that differ across tasks and rows (by
  # 1e-2 at least, 500 times the float32 tolerance).
  assert 0.1 < np.abs(want).max() < 20
  assert np.std(want, 0).max() > 1e-2 and np.std(want, 1).mean() > 1e-2
  if 'epnet_gate' in trace:  # gate values first: a failure then says where it starts
    assert_close(inter['epnet_gate_value'][0], trace['epnet_gate'], tol, 'EPNet gate')
  for l in range(len(mc.tower) + 1):
    if f'ppnet_gate_{l}' in trace:
      assert_close(inter[f'ppnet_gate_value_{l}'][0], trace[f'ppnet_gate_{l}'], tol,
                   f'PPNet gate of layer {l}')
  assert_close(got, want, tol, f'{mc.name} logits')
  return got, want


# ---- PEPNet: every switch ------------------------------------------------------------

PEPNET_SWITCHES = {
    'paper': {},
    'no_epnet': dict(use_epnet=False),
    'no_ppnet': dict(use_ppnet=False),
    'no_gates': dict(use_epnet=False, use_ppnet=False),
    'separate_task_gates': dict(task_gates='separate'),
    'domain_towers': dict(domain_towers=True),
    'domain_towers_separate_no_epnet': dict(domain_towers=True, task_gates='separate',
                                            use_epnet=False),
    'gamma_1.5_separate': dict(gamma=1.5, task_gates='separate'),
    # gamma 1; EPNet hidden width set, PPNet's 0 (= the prior width); one hidden layer.
    'gamma_1_gate_widths': dict(gamma=1.0, epnet_hidden=5, ppnet_hidden=0, tower=(7,)),
    'epnet_hidden_0': dict(epnet_hidden=0),  # 0 = the width of E (the default until 2026-12-07)
    'silu_deeper_tower': dict(activation='silu', tower=(6, 5, 4)),
    'gelu': dict(activation='gelu'),
    'tanh_no_ppnet': dict(activation='tanh', use_ppnet=False),
    # Neither changes a forward pass: sg() is the identity, dropout is off in evaluation.
    'no_stop_gradient_dropout': dict(gate_stop_gradient=False, dropout=0.5),
    'domain_in_input': dict(domain_in_input=True),  # tab and ctx join E as well
    'task_transfer': dict(task_transfer=True),
}


@pytest.mark.parametrize('case', sorted(PEPNET_SWITCHES))
def test_pepnet_matches_reference(case):
  check_model(model_config('pepnet', **PEPNET_SWITCHES[case]))


@pytest.mark.parametrize('case', ['paper', 'separate_domain_towers'])
def test_pepnet_bfloat16_matches_reference(case):
  switches = {'paper': {}, 'separate_domain_towers': dict(task_gates='separate',
                                                          domain_towers=True)}[case]
  got, want = check_model(model_config('pepnet', dtype='bfloat16', **switches), tol=BF16_TOL)
  # bfloat16 is in effect: the logits do differ from float64 by more than float32 would.
  assert np.abs(got - want).max() > 10 * F32_TOL


def test_pepnet_with_its_own_init_values():
  """The genuine init (gates' biases at 0, tables U(-0.05, 0.05)): still the reference."""
  mc = model_config('pepnet')
  model, _ = build(mc)
  # 'unsafe_rbg' keys: the same initializers, a few seconds less of compiling than threefry.
  key = jax.random.key(3, impl='unsafe_rbg')
  params = jax.jit(model.init)(key, FEATURES, DOMAIN)['params']
  got, inter = flax_forward(model, params)
  trace = {}
  want = ref.forward(mc, INFOS, SPEC, jax.device_get(params), FEATURES, DOMAIN, trace)
  assert_close(got, want, F32_TOL, 'pepnet logits at init')
  assert_close(inter['ppnet_gate_value_0'][0], trace['ppnet_gate_0'], F32_TOL, 'PPNet gate 0')


# ---- baselines -----------------------------------------------------------------------

BASELINES = {
    'shared_bottom': dict(bottom=(6, 5)),
    'single_task': {},
    'mmoe': {},
    'mmoe_gelu': dict(name='mmoe', activation='gelu', bottom=(6, 4)),
    'ple': {},  # 2 levels
    'ple_gelu': dict(name='ple', activation='gelu'),
    'cgc': dict(name='ple', ple_levels=1),
    'ple_3_levels_no_specific': dict(name='ple', ple_levels=3, specific_experts=0),
    'star': {},
    'wide_deep': {},
    'wide_deep_domain_in_input': dict(name='wide_deep', domain_in_input=True),
    'lr': {},
    'lr_mean': dict(name='lr', lr_multi_pool='mean'),
}


@pytest.mark.parametrize('case', sorted(BASELINES))
def test_baseline_matches_reference(case):
  overrides = dict(BASELINES[case])
  name = overrides.pop('name', case)
  check_model(model_config(name, **overrides))


def test_lr_without_dense_fields():
  """LR over id fields only (its dense term is then absent, not an empty product)."""
  infos = tuple(f for f in INFOS if f.kind != 'dense')
  spec = synthetic.Spec(tasks=SPEC.tasks, domains=SPEC.domains,
                        groups={k: tuple(m for m in v if m != 'ctx')
                                for k, v in SPEC.groups.items()})
  check_model(model_config('lr'), spec=spec, infos=infos)


def test_star_without_domain_fields_uses_one_hot_domain():
  """STAR's auxiliary network reads the one-hot domain index when no field is domain-side."""
  spec = synthetic.Spec(tasks=SPEC.tasks, domains=SPEC.domains,
                        groups={k: v for k, v in SPEC.groups.items() if k != 'domain'})
  check_model(model_config('star'), spec=spec)


def test_reference_imports_nothing_from_the_models():
  """The reference stays independent: no import of pepnet_jax (models or gates)."""
  import ast
  import inspect
  tree = ast.parse(inspect.getsource(ref))
  for node in ast.walk(tree):
    if isinstance(node, ast.Import):
      assert all(not a.name.startswith(('pepnet_jax', 'jax', 'flax')) for a in node.names)
    elif isinstance(node, ast.ImportFrom):
      assert not (node.module or '').startswith(('pepnet_jax', 'jax', 'flax'))


# ---- the compute dtype ---------------------------------------------------------------

def _dots(jaxpr) -> list[tuple[tuple[str, ...], tuple]]:
  """(operand dtypes, lhs shape) of every matrix product in a jaxpr, nested jaxprs
  included."""
  found = []
  for eqn in jaxpr.eqns:
    if eqn.primitive.name == 'dot_general':
      found.append((tuple(str(v.aval.dtype) for v in eqn.invars), eqn.invars[0].aval.shape))
    for sub in jax.extend.core.jaxprs_in_params(eqn.params):
      found += _dots(sub)
  return found


@pytest.mark.parametrize('case', ['pepnet', 'pepnet_separate_domain_towers', 'shared_bottom',
                                  'mmoe', 'ple', 'star', 'wide_deep'])
def test_bfloat16_models_run_every_matrix_product_in_bfloat16(case):
  """``dtype='bfloat16'`` reaches every gate and tower layer: the reference tolerance for
  bfloat16 (5e-2) cannot tell a layer left in float32, so the products are read off the
  traced program. Only the dense fields' projections to the embedding width (operand
  [B, 1], part of the float32 embedding side by design) stay in float32; the float32
  model has the same products, all in float32."""
  name, extra = {'pepnet_separate_domain_towers': ('pepnet', dict(task_gates='separate',
                                                                   domain_towers=True))
                 }.get(case, (case, {}))
  counts = {}
  for dtype in ('bfloat16', 'float32'):
    model, shapes = build(model_config(name, dtype=dtype, **extra))
    params = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    jaxpr = jax.make_jaxpr(lambda p: model.apply({'params': p}, FEATURES, DOMAIN))(params)
    dots = _dots(jaxpr.jaxpr)
    embedding_side = [d for d in dots if d[1] == (B, 1)]
    assert len(embedding_side) == 2 and all(set(d[0]) == {'float32'} for d in embedding_side)
    layers = [d[0] for d in dots if d[1] != (B, 1)]
    assert layers, case
    assert all(set(d) == {dtype} for d in layers), (case, dtype, layers)
    counts[dtype] = len(layers)
  assert counts['bfloat16'] == counts['float32'], counts
