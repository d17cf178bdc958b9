"""Run by tests/test_multidevice.py in a fresh process with 8 virtual CPU devices.

Trains the same model on the same batches on a 1-device mesh and on an
8-device mesh (batch split 8 ways, the large tables row-sharded), for both
the row-sparse and the dense update, and prints JSON with the largest
differences of losses and parameters.
"""

import json
import os
import sys

os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import numpy as np  # noqa: E402

from pepnet_jax import configs, sharding, synthetic, train  # noqa: E402
from pepnet_jax.models import build_model  # noqa: E402


def run(num_devices: int, sparse_group: str, batches):
  infos, spec = synthetic.bench_features(video_vocab=3000, user_vocab=2000, author_vocab=500)
  c = configs.base_config()
  c.model.tower = (32, 16)
  c.model.ppnet_hidden = 8
  c.optim.dense.lr = 1e-3
  c.optim.sparse_group = sparse_group
  c.mesh.num_devices = num_devices
  c.mesh.shard_min_rows = 1000  # user_id, video_id tables row-sharded
  model = build_model(c.model, infos, spec)
  steps = train.make_steps(model, c, total_steps=100)
  steps, state = train.jit_steps(steps, c, train.device_batch(batches[0]), jax.random.key(0))
  table = state.params['embed']['video_id']
  sharded = len({str(s.index) for s in table.addressable_shards}) > 1
  losses = []
  for b in batches:
    state, m = steps.train_step(state, sharding.put_batch(train.device_batch(b), steps.mesh))
    losses.append(float(m['loss']))
  params = jax.tree.map(np.asarray, state.params)
  return losses, params, sharded


def main():
  infos, spec = synthetic.bench_features(video_vocab=3000, user_vocab=2000, author_vocab=500)
  batches = synthetic.make_batches(infos, spec, 6, 256, seed=11, zipf=1.2)
  out = {'devices': len(jax.devices())}
  for group in ('embedding', ''):
    l1, p1, _ = run(1, group, batches)
    l8, p8, sharded = run(8, group, batches)
    diffs = jax.tree.leaves(jax.tree.map(lambda a, b: float(np.max(np.abs(a - b))), p1, p8))
    scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(p1))
    out[group or 'dense'] = dict(
        loss_1=l1, loss_8=l8, max_loss_diff=max(abs(a - b) for a, b in zip(l1, l8)),
        max_param_diff=max(diffs), param_scale=scale, table_sharded=sharded,
        moved=float(np.max(np.abs(p1['embed']['video_id'] - run(1, group, batches[:1])[1]['embed']['video_id']))))
  print(json.dumps(out))


if __name__ == '__main__':
  sys.exit(main())
