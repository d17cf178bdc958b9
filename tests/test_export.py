"""TPU and GPU readiness without the hardware: the jitted steps lower for tpu, cuda and cpu."""

import jax
import numpy as np
import pytest
from jax import export

from pepnet_jax import configs
from pepnet_jax.data import synthetic
from pepnet_jax.training import train
from pepnet_jax.models import build_model

INFOS, SPEC = synthetic.bench_features(video_vocab=300, user_vocab=200, author_vocab=50)
PLATFORMS = ('tpu', 'cuda', 'cpu')


def steps_and_state(sparse_group, dtype='float32'):
  c = configs.base_config()
  c.model.tower = (32, 16)
  c.model.ppnet_hidden = 8
  c.model.dtype = dtype
  c.mesh.num_devices = 1
  c.optim.sparse_group = sparse_group
  batch = train.device_batch(synthetic.make_batches(INFOS, SPEC, 1, 64)[0])
  model = build_model(c.model, INFOS, SPEC)
  steps = train.make_steps(model, c, total_steps=10)
  steps, state = train.jit_steps(steps, c, batch, jax.random.key(0))
  return steps, state, batch


@pytest.mark.parametrize('sparse_group,dtype', [('embedding', 'float32'), ('', 'float32'),
                                                ('embedding', 'bfloat16')])
def test_train_and_predict_steps_export_for_tpu_gpu_cpu(sparse_group, dtype):
  steps, state, batch = steps_and_state(sparse_group, dtype)
  spec = lambda tree: jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), tree)
  # Serialized exports carry only built-in pytrees, so the state travels as
  # its list of leaves (optax states are NamedTuples of its own).
  leaves, treedef = jax.tree.flatten(state)

  def flat_train_step(state_leaves, batch):
    new_state, metrics = steps.train_step(jax.tree.unflatten(treedef, state_leaves), batch)
    return jax.tree.leaves(new_state), metrics

  exp_train = export.export(jax.jit(flat_train_step), platforms=PLATFORMS)(
      spec(leaves), spec(batch))
  exp_pred = export.export(steps.eval_step, platforms=PLATFORMS)(spec(state.params), spec(batch))
  # What each export takes and gives, after a serialization round trip: the state's
  # leaves and the batch in; out, a state of the same shapes and dtypes with the step's
  # metrics, and [B, T] float32 probabilities.
  sds = jax.ShapeDtypeStruct
  want_train = (spec(leaves), {'loss': sds((), np.float32), 'grad_norm': sds((), np.float32),
                               'task_loss': sds((len(SPEC.tasks),), np.float32),
                               'finite': sds((), np.bool_)})
  for exp, want_out, args in ((exp_train, want_train, (leaves, batch)),
                              (exp_pred, sds((64, len(SPEC.tasks)), np.float32),
                               (state.params, batch))):
    again = export.deserialize(exp.serialize())  # needs flatbuffers
    assert len(again.platforms) == 3 and again.nr_devices == 1
    got_out = [(a.shape, a.dtype) for a in again.out_avals]
    assert got_out == [(a.shape, a.dtype) for a in jax.tree.leaves(want_out)]
    assert [(a.shape, a.dtype) for a in again.in_avals] == \
        [(a.shape, a.dtype) for a in jax.tree.leaves(spec(args))]
  # The exported predict step runs here (cpu) and equals the jitted one.
  got = export.deserialize(exp_pred.serialize()).call(state.params, batch)
  np.testing.assert_allclose(np.asarray(got), np.asarray(steps.eval_step(state.params, batch)),
                             rtol=1e-5, atol=1e-6)
