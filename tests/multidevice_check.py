"""Run by tests/test_multidevice.py in a fresh process with 8 virtual CPU devices.

Trains the same model on the same batches on a 1-device mesh and on an
8-device mesh (batch split 8 ways, the large tables row-sharded), for both
the row-sparse and the dense update, and prints JSON with the differences of
the first step's gradients, the losses, and the parameters after training
(as a fraction of how far training moved them).
"""

import json
import os
import sys

os.environ['XLA_FLAGS'] = os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8'
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from pepnet_jax import configs  # noqa: E402
from pepnet_jax.training import sharding, train  # noqa: E402
from pepnet_jax.data import synthetic  # noqa: E402
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
  init = jax.tree.map(np.asarray, state.params)

  def loss_fn(params, batch):
    rows = model.apply({'params': params}, batch['features'], method='lookup')
    logits = model.apply({'params': params}, rows, batch['features'], batch['domain'],
                         method='head')
    return train.multitask_loss(logits, batch['labels'], batch['label_mask'], batch['weight'],
                                jnp.ones((model.num_tasks,), jnp.float32))[0]

  grad = jax.jit(jax.grad(loss_fn), in_shardings=(steps.state_sharding.params,
                                                  sharding.batch_sharding(steps.mesh)))
  first = sharding.put_batch(train.device_batch(batches[0]), steps.mesh)
  grads = jax.tree.map(np.asarray, grad(state.params, first))
  losses = []
  for b in batches:
    state, m = steps.train_step(state, sharding.put_batch(train.device_batch(b), steps.mesh))
    losses.append(float(m['loss']))
  # The jitted steps keep the layout: the state leaves a step as jit_steps laid it out
  # (tables still row-sharded), evaluation's probabilities come back whole on every device.
  kept = all(jax.tree.leaves(jax.tree.map(lambda x, s: x.sharding.is_equivalent_to(s, x.ndim),
                                          state, steps.state_sharding)))
  probs = steps.eval_step(state.params, first)
  params = jax.tree.map(np.asarray, state.params)
  return dict(losses=losses, params=params, init=init, grads=grads, sharded=sharded,
              kept=kept, eval_replicated=probs.sharding.is_fully_replicated)


def rel(a, b, scale):
  """||a - b|| / ||scale|| per leaf (the largest over leaves)."""
  return max(jax.tree.leaves(jax.tree.map(
      lambda x, y, s: float(np.linalg.norm(x - y) / max(np.linalg.norm(s), 1e-30)), a, b, scale)))


def main():
  infos, spec = synthetic.bench_features(video_vocab=3000, user_vocab=2000, author_vocab=500)
  batches = synthetic.make_batches(infos, spec, 6, 256, seed=11, zipf=1.2)
  out = {'devices': len(jax.devices())}
  # The mesh make_steps builds: config.mesh.num_devices of the 8, one where it is not set.
  c = configs.base_config()
  model = build_model(c.model, infos, spec)
  sizes = []
  for n in (1, 8, None):
    if n is None:
      del c.mesh['num_devices']
    else:
      c.mesh.num_devices = n
    sizes.append(train.make_steps(model, c, total_steps=10).mesh.size)
  out['mesh_sizes'] = sizes
  for group in ('embedding', ''):
    r1, r8 = run(1, group, batches), run(8, group, batches)
    moved = jax.tree.map(lambda p, p0: p - p0, r1['params'], r1['init'])
    out[group or 'dense'] = dict(
        loss_1=r1['losses'], loss_8=r8['losses'],
        max_loss_diff=max(abs(a - b) for a, b in zip(r1['losses'], r8['losses'])),
        init_param_diff=rel(r1['init'], r8['init'], r1['init']),
        grad_rel_diff=rel(r1['grads'], r8['grads'], r1['grads']),
        param_rel_diff=rel(r1['params'], r8['params'], moved),
        max_param_diff=max(jax.tree.leaves(jax.tree.map(
            lambda a, b: float(np.max(np.abs(a - b))), r1['params'], r8['params']))),
        table_sharded=r8['sharded'], layout_kept=r8['kept'],
        eval_replicated=r8['eval_replicated'],
        moved=float(np.max(np.abs(moved['embed']['video_id']))))
  print(json.dumps(out))


if __name__ == '__main__':
  sys.exit(main())
