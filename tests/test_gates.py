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
