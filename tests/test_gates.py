"""Gate inspection: EPNet per domain x field, PPNet per task x layer."""

import jax
import numpy as np

from pepnet_jax import configs, gates, synthetic, train
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
  ep = np.asarray(out['epnet_mean'])
  assert ep.shape == (len(SPEC.domains), len(INFOS))
  assert (ep > 0).all() and (ep < 2).all()
  # Recompute one cell by hand: domain 0, first field, from the sown gate.
  _, inter = model.apply({'params': state.params}, batches[0]['features'], batches[0]['domain'],
                         mutable=['intermediates'])
  g = np.asarray(inter['intermediates']['epnet_gate_value'][0])[:, :16].mean(-1)
  d0 = batches[0]['domain'] == 0
  w1 = (batches[1]['weight'] > 0) & (batches[1]['domain'] == 0)
  _, inter1 = model.apply({'params': state.params}, batches[1]['features'], batches[1]['domain'],
                          mutable=['intermediates'])
  g1 = np.asarray(inter1['intermediates']['epnet_gate_value'][0])[:, :16].mean(-1)
  expected = np.concatenate([g[d0], g1[w1]]).mean()
  np.testing.assert_allclose(ep[0, 0], expected, rtol=1e-5)
  assert sorted(out['ppnet']) == ['0', '1', '2']
  assert len(out['ppnet']['0']['mean']) == len(SPEC.tasks)
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
