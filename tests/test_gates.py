"""Gate inspection: EPNet per domain x field, PPNet per task x layer."""

import jax
import numpy as np

from pepnet_jax import configs
from pepnet_jax.evaluation import gates
from pepnet_jax.data import synthetic
from pepnet_jax.training import train
from pepnet_jax.models import build_model

INFOS, SPEC = synthetic.bench_features(video_vocab=300, user_vocab=200, author_vocab=50)


class FakeDataset:
  def __init__(self, batches):
    self.batches = batches

  def eval_batches(self, batch_size):
    yield from self.batches


def test_collect_summarizes_every_gate(tmp_path):
  c = configs.base_config()
  c.model.tower = (32, 16)
  c.model.ppnet_hidden = 8
  c.mesh.num_devices = 1
  batches = synthetic.make_batches(INFOS, SPEC, 2, 64, seed=2)
  batches[1]['weight'][-10:] = 0  # padding rows must not count
  model = build_model(c.model, INFOS, SPEC)
  steps = train.make_steps(model, c, 10)
  steps, state = train.jit_steps(steps, c, train.device_batch(batches[0]), jax.random.key(0))
  out = gates.collect(steps, state.params, FakeDataset(batches), len(SPEC.domains),
                      len(SPEC.tasks), 64, max_rows=10_000)
  assert out['rows'] == 128 - 10
  # Every cell by hand from the sown gates of the real (weight > 0) rows of both batches:
  # EPNet per domain x field (a field's value is the mean over its 16 units), PPNet per
  # task x layer (mean and standard deviation over rows and units).
  sown, real, dom = [], [], []
  for b in batches:
    _, inter = model.apply({'params': state.params}, b['features'], b['domain'],
                           mutable=['intermediates'])
    sown.append({k: np.asarray(v[0]) for k, v in inter['intermediates'].items()})
    real.append(b['weight'] > 0)
    dom.append(b['domain'])
  ep_rows = np.concatenate([s['epnet_gate_value'][w] for s, w in zip(sown, real)])
  ep_dom = np.concatenate([d[w] for d, w in zip(dom, real)])
  per_field = ep_rows.reshape(len(ep_rows), len(INFOS), 16).mean(-1)
  want = np.stack([per_field[ep_dom == d].mean(0) for d in range(len(SPEC.domains))])
  ep = np.asarray(out['epnet_mean'])
  np.testing.assert_allclose(ep, want, rtol=1e-5)
  assert np.ptp(ep, axis=0).max() > 1e-3  # the domains' rows differ: a mixed-up mask shows
  assert out['fields'] == [f.name for f in INFOS]
  assert sorted(out['ppnet']) == ['0', '1', '2']
  for l in range(3):
    v = np.concatenate([s[f'ppnet_gate_value_{l}'][:, w] for s, w in zip(sown, real)], 1)
    v = v.reshape(len(SPEC.tasks), -1)  # [T, rows x units]
    np.testing.assert_allclose(out['ppnet'][str(l)]['mean'], v.mean(1), rtol=1e-5)
    np.testing.assert_allclose(out['ppnet'][str(l)]['std'], v.std(1), rtol=1e-4)
  gates.draw(out, SPEC.domains, SPEC.tasks, str(tmp_path / 'gates.png'))
  assert (tmp_path / 'gates.png').read_bytes()[:8] == b'\x89PNG\r\n\x1a\n'


def test_parts_dense_is_dense_on_the_concatenation_without_the_stop_gradient_inputs_gradient():
  import flax.linen as nn
  import jax.numpy as jnp
  from pepnet_jax.models import layers
  k = jax.random.split(jax.random.key(4), 3)
  a, b = jax.random.normal(k[0], (5, 3)), jax.random.normal(k[1], (5, 11))
  parts_dense = layers.PartsDense(7)
  params = parts_dense.init(k[2], [a, b])
  plain = nn.Dense(7).init(k[2], jnp.concatenate([a, b], -1))
  # Same parameter tree and initial values as nn.Dense, so checkpoints keep their layout.
  assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, plain)
  for x, y in zip(jax.tree.leaves(params), jax.tree.leaves(plain)):
    np.testing.assert_array_equal(x, y)
  np.testing.assert_allclose(parts_dense.apply(params, [a, b]),
                             nn.Dense(7).apply(plain, jnp.concatenate([a, b], -1)),
                             rtol=1e-5, atol=1e-6)
  # The gradient reaches the free part only; the stop-gradient part's input gets none.
  loss = lambda a, b: jnp.sum(parts_dense.apply(params, [a, jax.lax.stop_gradient(b)]) ** 2)
  ga, gb = jax.grad(loss, argnums=(0, 1))(a, b)
  assert np.abs(np.asarray(ga)).sum() > 0 and not np.asarray(gb).any()
