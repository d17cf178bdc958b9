"""The optimizer as configured: learning-rate schedules, regex parameter groups and each
group's update rule, the multi-task loss, and tower dropout in expectation.

Every expected number is computed here by hand (closed forms, or NumPy re-implementations
of the update rules), never by calling the code under test a second time.
Row-sparse AdaGrad against optax (tests/test_train_step.py) and the dropout mask's
statistics and per-layer scaling (tests/test_recipe.py) are not repeated.
"""

import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from pepnet_jax import configs
from pepnet_jax.training import optim, train
from pepnet_jax.data import synthetic
from pepnet_jax.models import build_model, contract

LR = 0.1


def group(**fields):
  return ml_collections.ConfigDict(dict(dict(lr=LR, optimizer='sgd'), **fields))


def values(kind, warmup, total, steps):
  s = optim.schedule(group(schedule=kind, warmup_steps=warmup), total)
  return [float(s(t)) for t in steps]


def cos_decay(frac):
  return LR * 0.5 * (1 + math.cos(math.pi * frac))


# ---- learning-rate schedules: the value at chosen steps ---------------------------------


@pytest.mark.parametrize('kind,warmup,total,at', [
    # constant: lr at every step, before and after the nominal end
    ('constant', 0, 100, {0: LR, 1: LR, 99: LR, 500: LR}),
    # constant after a linear warm-up from 0 over 4 steps: the first update has rate 0
    ('constant', 4, 100, {0: 0.0, 1: 0.025, 3: 0.075, 4: LR, 5: LR, 500: LR}),
    # cosine from lr to 0 over total steps (no warm-up: starts at lr)
    ('cosine', 0, 100, {0: LR, 25: cos_decay(0.25), 50: LR / 2, 60: cos_decay(0.6), 100: 0.0,
                        150: 0.0}),
    # warm-up 0 -> lr over 10 steps, then cosine to 0 over the remaining 100
    ('warmup_cosine', 10, 110, {0: 0.0, 5: LR / 2, 10: LR, 35: cos_decay(0.25), 60: LR / 2,
                                110: 0.0, 200: 0.0}),
    # 'cosine' with warm-up steps is the same schedule
    ('cosine', 10, 110, {0: 0.0, 5: LR / 2, 10: LR, 35: cos_decay(0.25), 60: LR / 2, 110: 0.0}),
    ('warmup_cosine', 0, 100, {0: LR, 25: cos_decay(0.25), 100: 0.0}),
    # a warm-up longer than the run: the peak at the warm-up's end, then 0
    ('warmup_cosine', 10, 5, {0: 0.0, 5: LR / 2, 10: LR, 11: 0.0}),
    # linear from lr to 0 at total steps, then 0
    ('linear', 0, 100, {0: LR, 25: 0.075, 50: 0.05, 99: 0.001, 100: 0.0, 300: 0.0}),
    # linear after a warm-up of 10 steps: 0 -> lr, then lr -> 0 at total (110)
    ('linear', 10, 110, {0: 0.0, 5: LR / 2, 10: LR, 35: 0.075, 60: LR / 2, 110: 0.0,
                         200: 0.0}),
    # a warm-up as long as the run: the peak at its end, 0 one step later
    ('linear', 10, 10, {0: 0.0, 5: LR / 2, 10: LR, 11: 0.0, 50: 0.0}),
    # total_steps 0 counts as one step
    ('linear', 0, 0, {0: LR, 1: 0.0}),
])
def test_schedule_values_at_chosen_steps(kind, warmup, total, at):
  got = values(kind, warmup, total, list(at))
  np.testing.assert_allclose(got, list(at.values()), rtol=1e-5, atol=1e-8,
                             err_msg=f'{kind} warmup={warmup} total={total} steps={list(at)}')


def test_every_schedule_the_config_names_is_built_and_others_are_refused():
  for kind in ('constant', 'cosine', 'warmup_cosine', 'linear'):
    optim.schedule(group(schedule=kind), 10)
  with pytest.raises(ValueError, match=r"^config\.optim\.<group>\.schedule='step': use "
                     r"constant\|cosine\|warmup_cosine\|linear$"):
    optim.schedule(group(schedule='step'), 10)
  # The error names the group the optimizer was building.
  with pytest.raises(ValueError, match=r"config\.optim\.dense\.schedule='step'"):
    optim.group_transform('dense', group(schedule='step'), 10)
  oc = ml_collections.ConfigDict(dict(groups=('dense',), dense=dict(
      regex='.*', optimizer='sgd', lr=0.1, schedule='step')))
  with pytest.raises(ValueError, match=r"config\.optim\.dense\.schedule='step'"):
    optim.build_optimizer(oc, 10)
  # A group without the fields: constant, no warm-up.
  assert float(optim.schedule(ml_collections.ConfigDict({'lr': 0.3}), 10)(7)) == \
      pytest.approx(0.3)


def test_the_optimizer_applies_the_schedule_at_its_own_step_count():
  """SGD under warm-up: update t is -lr(t) * g, t counted from 0 (the first is 0)."""
  tx = optim.group_transform('g', group(schedule='constant', warmup_steps=4), 100)
  p = jnp.ones(3)
  state = tx.init(p)
  g = jnp.asarray([1.0, -2.0, 0.5])
  for t, rate in enumerate([0.0, 0.025, 0.05, 0.075, LR, LR]):
    u, state = tx.update(g, state, p)
    np.testing.assert_allclose(np.asarray(u), -rate * np.asarray(g), rtol=1e-6, err_msg=t)


# ---- regex groups: where each parameter lands, and the update rule it gets ---------------


INFOS, SPEC = synthetic.bench_features(video_vocab=30, user_vocab=20, author_vocab=10)


def small_model():
  mc = configs.base_config().model
  mc.tower = (8, 4)
  mc.ppnet_hidden = 4
  mc.embed_dim = 4
  mc.table_row_multiple = 1
  return build_model(mc, INFOS, SPEC)


def model_params(model=None):
  """A small PEPNet's parameter tree, values drawn in NumPy (no init to compile)."""
  model = model or small_model()
  batch = synthetic.make_batches(INFOS, SPEC, 1, 4)[0]
  shapes = jax.eval_shape(model.init, jax.random.key(0), batch['features'], batch['domain'])
  rng = np.random.default_rng(0)
  return jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.3, jnp.float32),
                      shapes['params'])


def four_groups():
  c = ml_collections.ConfigDict()
  c.groups = ('embedding', 'gates', 'towers', 'rest')
  c.embedding = dict(regex=r'^embed/', optimizer='adagrad', lr=0.05, initial_accumulator=0.2,
                     eps=1e-7)
  c.gates = dict(regex=r'^(epnet_gate|ppnet_gates_\d+)/', optimizer='sgd', lr=0.1)
  c.towers = dict(regex=r'^towers_\d+/kernel$', optimizer='adamw', lr=0.01, weight_decay=0.1)
  c.rest = dict(regex=r'.*', optimizer='adam', lr=0.001, b1=0.5, b2=0.9, eps=1e-6)
  return c


def test_adagrad_groups_without_the_field_start_their_sums_at_0_1():
  """A group that does not set ``initial_accumulator`` gets 0.1 (TensorFlow's AdaGrad default,
  the paper's optimizer) on both paths: optax's dense update and the row-sparse state."""
  g = jnp.array([0.5, -2.0, 0.0])
  tx = optim.group_transform('embedding', ml_collections.ConfigDict(
      dict(optimizer='adagrad', lr=0.05)), 10)
  update, _ = tx.update(g, tx.init(jnp.zeros(3)), jnp.zeros(3))
  want = -0.05 * np.asarray(g) / np.sqrt(0.1 + np.asarray(g) ** 2 + 1e-7)
  np.testing.assert_allclose(np.asarray(update), want, rtol=1e-6)
  c = configs.base_config()
  c.model.tower, c.model.ppnet_hidden, c.model.embed_dim = (8, 4), 4, 4
  del c.optim.embedding['initial_accumulator']
  assert c.optim.sparse_group == 'embedding'
  steps = train.make_steps(small_model(), c, 10)
  batch = synthetic.make_batches(INFOS, SPEC, 1, 4)[0]
  state = jax.eval_shape(steps.init, jax.random.key(0), train.device_batch(batch))
  acc = jax.jit(steps.init)(jax.random.key(0), train.device_batch(batch)).emb_acc
  assert jax.tree.leaves(acc) and len(jax.tree.leaves(acc)) == len(jax.tree.leaves(
      state.params['embed']))
  for leaf in jax.tree.leaves(acc):
    np.testing.assert_array_equal(np.asarray(leaf), np.full(leaf.shape, 0.1, np.float32))


def test_adam_and_adamw_groups_without_the_fields_take_the_documented_defaults():
  """Adam: b1 0.9, b2 0.999, eps 1e-8; AdamW adds weight decay 1e-4. Three steps against
  NumPy (the four-group test sets every field, so it never reaches these defaults)."""
  rng = np.random.default_rng(1)
  grads = [rng.normal(size=3).astype(np.float32) for _ in range(3)]
  for opt, decay in (('adam', 0.0), ('adamw', 1e-4)):
    tx = optim.group_transform('dense', ml_collections.ConfigDict(dict(optimizer=opt, lr=0.01)),
                               10)
    p = jnp.ones(3)
    state = tx.init(p)
    want, m, v = np.ones(3), np.zeros(3), np.zeros(3)
    for t, g in enumerate(grads, 1):
      update, state = tx.update(jnp.asarray(g), state, p)
      p = optax.apply_updates(p, update)
      m = 0.9 * m + 0.1 * g
      v = 0.999 * v + 0.001 * g * g
      step = (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
      want = want - 0.01 * (step + decay * want)
    np.testing.assert_allclose(np.asarray(p), want, rtol=1e-5, err_msg=opt)


def test_a_groups_own_eps_reaches_adagrad_and_adam():
  """eps set in the group (large here, so it shows) replaces the default: one step of each
  against NumPy."""
  g = np.array([0.5, -2.0, 1e-3], np.float32)
  for opt, want in (
      ('adagrad', -0.1 * g / np.sqrt(0.1 + g * g + 0.5)),
      # Adam's first step: m_hat = g, v_hat = g^2, update -lr * g / (|g| + eps).
      ('adam', -0.1 * g / (np.abs(g) + 0.5))):
    tx = optim.group_transform('g', ml_collections.ConfigDict(
        dict(optimizer=opt, lr=0.1, eps=0.5)), 10)
    update, _ = tx.update(jnp.asarray(g), tx.init(jnp.zeros(3)), jnp.zeros(3))
    np.testing.assert_allclose(np.asarray(update), want, rtol=1e-5, err_msg=opt)


def flat_paths(tree):
  return {optim.param_path(p): np.asarray(v)
          for p, v in jax.tree_util.tree_flatten_with_path(tree)[0]}


def test_each_parameter_lands_in_the_first_group_whose_regex_matches():
  params = model_params()
  groups = optim.describe(params, four_groups())
  paths = set(flat_paths(params))
  assert sorted(p for g in groups.values() for p in g) == sorted(paths)  # each exactly once
  assert set(groups['embedding']) == {f'embed/{f.name}' for f in INFOS}
  assert set(groups['gates']) == {p for p in paths if p.startswith(('epnet_gate/', 'ppnet_gates_'))}
  assert set(groups['towers']) == {'towers_0/kernel', 'towers_1/kernel', 'towers_2/kernel'}
  # '.*' takes what the earlier groups left: tower biases (the towers regex is anchored
  # on kernel), and nothing else in this model.
  assert set(groups['rest']) == {'towers_0/bias', 'towers_1/bias', 'towers_2/bias'}
  assert len(groups['gates']) == 4 + 3 * 4  # kernel and bias of 2 dense layers, 4 gates
  # Order decides: the catch-all first takes every parameter.
  c = four_groups()
  c.groups = ('rest', 'embedding', 'gates', 'towers')
  greedy = optim.describe(params, c)
  assert set(greedy['rest']) == paths and not any(greedy[g] for g in c.groups[1:])


def numpy_updates(opt, cfg, params, grads_seq):
  """Parameters after applying each gradient in turn, by the textbook update rule."""
  p = params.astype(np.float64)
  acc = np.full_like(p, cfg.get('initial_accumulator', 0.1))
  m, v = np.zeros_like(p), np.zeros_like(p)
  for t, g in enumerate(grads_seq, start=1):
    g = g.astype(np.float64)
    if opt == 'sgd':
      p = p - cfg['lr'] * g
    elif opt == 'adagrad':
      acc = acc + g * g
      p = p - cfg['lr'] * g / np.sqrt(acc + cfg['eps'])
    else:
      b1, b2, eps = (cfg.get('b1', 0.9), cfg.get('b2', 0.999), cfg.get('eps', 1e-8)) \
          if opt == 'adam' else (0.9, 0.999, 1e-8)  # adamw: optax's defaults
      m = b1 * m + (1 - b1) * g
      v = b2 * v + (1 - b2) * g * g
      step = (m / (1 - b1 ** t)) / (np.sqrt(v / (1 - b2 ** t)) + eps)
      if opt == 'adamw':
        step = step + cfg['weight_decay'] * p
      p = p - cfg['lr'] * step
  return p


def test_each_group_updates_by_its_own_rule_and_hyperparameters():
  """Three steps of random gradients through build_optimizer, every parameter against a
  NumPy AdaGrad / SGD / AdamW / Adam with the group's lr, accumulator, betas, eps and
  weight decay: a parameter in the wrong group, or a field not passed through, moves it."""
  c = four_groups()
  params = model_params()
  rng = np.random.default_rng(1)
  grads_seq = [jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32), params)
               for _ in range(3)]
  tx = optim.build_optimizer(c, total_steps=10)
  update = jax.jit(tx.update)
  p, state = params, tx.init(params)
  for g in grads_seq:
    u, state = update(g, state, p)
    p = jax.tree.map(lambda a, b: a + b, p, u)
  got, start = flat_paths(p), flat_paths(params)
  seqs = [flat_paths(g) for g in grads_seq]
  for name, paths in optim.describe(params, c).items():
    cfg = c[name].to_dict()
    for path in paths:
      want = numpy_updates(cfg['optimizer'], cfg, start[path], [s[path] for s in seqs])
      np.testing.assert_allclose(got[path], want, rtol=2e-5, atol=2e-6,
                                 err_msg=f'{path} ({name}, {cfg["optimizer"]})')


def test_an_unknown_optimizer_is_named():
  with pytest.raises(ValueError, match=r"config.optim.g.optimizer='rmsprop'"):
    optim.group_transform('g', group(optimizer='rmsprop'), 10)


# ---- the multi-task loss: label masks, padding rows, task weights ----------------------


def numpy_bce(z, y):
  z, y = np.asarray(z, np.float64), np.asarray(y, np.float64)
  return np.maximum(z, 0) - z * y + np.log1p(np.exp(-np.abs(z)))


def test_multitask_loss_matches_a_numpy_hand_computation():
  rng = np.random.default_rng(3)
  b, t = 9, 4
  logits = rng.normal(size=(b, t)).astype(np.float32) * 3
  logits[0, 0], logits[1, 1] = 40.0, -35.0  # far in the tails: no overflow, no log(0)
  labels = (rng.random((b, t)) < 0.5).astype(np.float32)
  labels[0, 0], labels[1, 1] = 0.0, 1.0  # confidently wrong: loss ~ |z|
  mask = (rng.random((b, t)) < 0.7).astype(np.float32)
  mask[:, 3] = 0.0  # task 3 has no label in the batch
  mask[0, 0] = mask[1, 1] = 1.0
  weight = np.ones(b, np.float32)
  weight[-3:] = 0.0  # padding rows
  labels[-3:] = 1.0
  logits[-3:] = -30.0  # huge loss on padding rows: must not count
  task_weights = np.asarray([1.0, 0.5, 2.0, 3.0], np.float32)
  # By hand: per task, the mean BCE over rows that are real and labelled.
  bce = numpy_bce(logits, labels)
  per_task = []
  for j in range(t):
    rows = [i for i in range(b) if mask[i, j] and weight[i]]
    per_task.append(sum(bce[i, j] for i in rows) / len(rows) if rows else 0.0)
  want_total = sum(w * l for w, l in zip(task_weights, per_task))
  total, got = contract.multitask_loss(jnp.asarray(logits), jnp.asarray(labels),
                                       jnp.asarray(mask), jnp.asarray(weight),
                                       jnp.asarray(task_weights))
  np.testing.assert_allclose(np.asarray(got), per_task, rtol=1e-5)
  assert float(total) == pytest.approx(want_total, rel=1e-5)
  assert per_task[3] == 0.0  # the empty task adds nothing
  assert bce[0, 0] == pytest.approx(40.0) and bce[-1, 0] == pytest.approx(30.0)
  # Fractional row weights scale each row's share (a weighted mean per task).
  weight2 = np.linspace(0.2, 1.0, b).astype(np.float32)
  _, got2 = contract.multitask_loss(jnp.asarray(logits), jnp.asarray(labels),
                                    jnp.asarray(mask), jnp.asarray(weight2),
                                    jnp.asarray(task_weights))
  mw = mask * weight2[:, None]
  want2 = (bce * mw).sum(0) / np.maximum(mw.sum(0), 1.0)
  np.testing.assert_allclose(np.asarray(got2), want2, rtol=1e-5)


def test_train_step_loss_uses_the_batch_masks_and_the_configured_task_weights():
  """The loss the train step reports (before its update) is the hand-computed one on the
  model's logits, with data.tasks' weights from config.train.task_weights."""
  c = configs.base_config()
  c.model.tower = (8, 4)
  c.model.ppnet_hidden = 4
  c.model.embed_dim = 4
  c.mesh.num_devices = 1
  c.train.oov_rate = 0.0
  c.optim.sparse_group = ''
  c.optim.embedding.optimizer = c.optim.dense.optimizer = 'sgd'  # the loss is what is checked
  tw = np.asarray([1.0, 0.0, 2.0, 0.5, 1.0, 3.0, 0.25], np.float32)
  c.train.task_weights = tuple(float(x) for x in tw)
  batch = synthetic.make_batches(INFOS, SPEC, 1, 32, seed=4)[0]
  rng = np.random.default_rng(4)
  batch['label_mask'] = (rng.random(batch['labels'].shape) < 0.6).astype(np.float32)
  batch['label_mask'][:, 2] = 0.0
  batch['weight'][-5:] = 0.0
  model = build_model(c.model, INFOS, SPEC)
  steps = train.make_steps(model, c, total_steps=10)
  params = model_params(model)
  state = train.TrainState(jnp.zeros((), jnp.int32), params, steps.tx.init(params), {})
  logits = np.asarray(jax.jit(model.apply)({'params': params}, batch['features'],
                                           batch['domain']))
  _, metrics = jax.jit(steps.train_step)(state, batch)
  mask = batch['label_mask'] * batch['weight'][:, None]
  per_task = (numpy_bce(logits, batch['labels']) * mask).sum(0) / np.maximum(mask.sum(0), 1.0)
  np.testing.assert_allclose(np.asarray(metrics['task_loss']), per_task, rtol=1e-5, atol=1e-7)
  assert per_task[2] == 0.0
  assert float(metrics['loss']) == pytest.approx(float((per_task * tw).sum()), rel=1e-5)


# ---- dropout: the expected activation in training, nothing at evaluation -----------------


def test_tower_dropout_keeps_the_expected_logit_and_spares_the_logit_layer():
  """With one hidden tower layer the logit is linear in the dropped activation, so over
  many masks its mean is the logit without dropout (inverted dropout's 1/keep). Without
  a 'dropout' rng (evaluation) the logits are exactly the dropout-free model's."""
  mc = configs.base_config().model
  mc.tower = (32,)
  mc.ppnet_hidden = 4
  mc.embed_dim = 4
  mc.table_row_multiple = 1
  mc.dropout = 0.5
  model = build_model(mc, INFOS, SPEC)
  mc.dropout = 0.0
  plain = build_model(mc, INFOS, SPEC)
  batch = synthetic.make_batches(INFOS, SPEC, 1, 8, seed=2)[0]
  args = (batch['features'], batch['domain'])
  shapes = jax.eval_shape(model.init, jax.random.key(0), *args)
  rng = np.random.default_rng(5)
  params = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) * 0.4, jnp.float32),
                        shapes['params'])
  want = np.asarray(plain.apply({'params': params}, *args))
  np.testing.assert_array_equal(np.asarray(model.apply({'params': params}, *args)), want)
  n = 2000
  keys = jax.random.split(jax.random.key(9), n)
  draws = np.asarray(jax.jit(jax.vmap(
      lambda k: model.apply({'params': params}, *args, rngs={'dropout': k})))(keys))
  assert (np.abs(draws - want) > 1e-6).mean() > 0.95  # dropout is on in training
  assert not (draws == 0.0).any()  # the logit layer itself is never dropped
  mean, se = draws.mean(0), draws.std(0) / math.sqrt(n)
  assert (np.abs(mean - want) < 5 * se + 1e-6).all(), np.abs(mean - want) / se
  # Without the 1/keep rescaling the mean would sit at keep * (z - b) + b: far outside.
  bias = np.asarray(params['towers_1']['bias'])[:, 0]
  assert (np.abs(0.5 * (want - bias) + bias - mean) > 5 * se).mean() > 0.8


def test_a_models_own_loss_and_probabilities_replace_the_defaults_with_every_argument():
  """``contract.loss`` / ``probabilities`` call the model's own methods when it has them, with
  the arguments in the contract's order; without them, ``multitask_loss`` and sigmoid."""
  calls = []

  class Own:
    def loss(self, *args):
      calls.append(args)
      return 'own loss'

    def probabilities(self, outputs):
      return ('own probabilities', outputs)

  args = tuple(f'arg{i}' for i in range(5))
  assert contract.loss(Own(), *args) == 'own loss'
  assert calls == [args]
  assert contract.probabilities(Own(), 'out') == ('own probabilities', 'out')

  class Plain:
    pass

  logits = jnp.array([[0.3, -1.0]])
  labels, mask = jnp.array([[1.0, 0.0]]), jnp.ones((1, 2))
  total, per_task = contract.loss(Plain(), logits, labels, mask, jnp.ones(1), jnp.ones(2))
  want = [math.log1p(math.exp(-0.3)), math.log1p(math.exp(-1.0))]
  np.testing.assert_allclose(np.asarray(per_task), want, rtol=1e-6)
  np.testing.assert_allclose(float(total), sum(want), rtol=1e-6)
  np.testing.assert_allclose(np.asarray(contract.probabilities(Plain(), logits)),
                             1 / (1 + np.exp(-np.asarray(logits))), rtol=1e-6)
  # bfloat16 logits (a user model's towers) are scored in float32.
  total16, _ = contract.loss(Plain(), logits.astype(jnp.bfloat16), labels, mask, jnp.ones(1),
                             jnp.ones(2))
  assert total16.dtype == jnp.float32
  z = np.asarray(logits.astype(jnp.bfloat16).astype(jnp.float32), np.float64)[0]
  np.testing.assert_allclose(float(total16), math.log1p(math.exp(-z[0])) +
                             math.log1p(math.exp(z[1])), rtol=1e-6)
