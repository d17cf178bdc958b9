"""The steps: ``make_steps(model, config, total_steps)`` builds the init, train and eval
functions; ``jit_steps`` places the state on the mesh and jits them with donation.

A train step runs unchanged on CPU, GPU and TPU and on 1 or N devices (the mesh decides).
With ``config.optim.sparse_group`` set, the embedding tables of that group are updated
row-sparsely (``sparse.adagrad_rows``): the step differentiates with respect to the gathered
rows, never the whole tables. Also here: moving host batches to the devices.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from pepnet_jax.training import cold_start
from pepnet_jax.training import optim
from pepnet_jax.training import sharding as shard_lib
from pepnet_jax.training import sparse
from pepnet_jax.features import PAD_ID
from pepnet_jax.models import contract
from pepnet_jax.models.layers import EMBED_SCOPE

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  step: Array
  params: Any
  opt_state: Any
  # AdaGrad sums of squares of the row-sparse tables, {'embed': {name: [V, D]}}
  # (the same tree as params['embed']); {} on the dense path.
  emb_acc: Any


DEVICE_KEYS = ('features', 'labels', 'label_mask', 'domain', 'weight')


def device_batch(batch: dict) -> dict:
  """The parts of a host batch the steps need ('group' stays on the host)."""
  return {k: batch[k] for k in DEVICE_KEYS}


def process_rows(batch: dict) -> dict:
  """This process's share of a global batch (multi-host: each feeds its rows).

  Every process walks the same global batches (same permutation) and keeps
  the contiguous block of rows its devices hold in the batch sharding.
  """
  n_proc = jax.process_count()
  if n_proc == 1:
    return batch
  i = jax.process_index()
  size = len(batch['weight']) // n_proc
  return jax.tree.map(lambda x: x[i * size:(i + 1) * size], batch)


def to_device(batch: dict, mesh, local: bool = False) -> dict:
  """Host batch -> device arrays split over the mesh's data axis. A global
  batch is cut to this process's rows; ``local``: it holds them already (a
  training batch of this host's data shard)."""
  batch = device_batch(batch)
  return shard_lib.put_batch(batch if local else process_rows(batch), mesh)


def data_shards(config) -> int:
  """How many data shards the training rows are cut into: config.data.shards,
  or (0) one per process. A multi-host job needs one per process; one process
  may emulate N (same global batches as an N-host job)."""
  n_proc = jax.process_count()
  shards = int(config.data.get('shards', 0) or 0) or n_proc
  if n_proc > 1 and shards != n_proc:
    raise ValueError(f'config.data.shards={shards}: a job of {n_proc} processes reads one '
                     'data shard per process; set it to 0 (or the process count)')
  if config.data.batch_size % shards:
    raise ValueError(f'config.data.batch_size={config.data.batch_size} does not split into '
                     f'{shards} equal shards (config.data.shards / processes)')
  return shards


def drop_cold_rows(features: dict, entities, kinds, rate: float, seed: int, step: int,
                   shards: int, local_shard: int | None) -> dict:
  """cold_start.drop_entities on each data shard's rows of the batch with that shard's
  draw, so a host and a process emulating the shards choose the same rows."""
  if shards == 1:
    return cold_start.drop_entities(features, entities, kinds, rate, seed, step)
  parts = list(range(shards)) if local_shard is None else [local_shard]
  n = len(next(iter(features.values()))) // len(parts)
  pieces = [cold_start.drop_entities({k: v[i * n:(i + 1) * n] for k, v in features.items()},
                                     entities, kinds, rate, seed, step, shard=k)
            for i, k in enumerate(parts)]
  return {k: np.concatenate([p[k] for p in pieces]) for k in features}


@dataclasses.dataclass
class Steps:
  """Everything needed to run a model: init, train step, eval step."""
  model: Any
  tx: optax.GradientTransformation
  init: Callable[[Any, dict], TrainState]
  train_step: Callable[[TrainState, dict], tuple[TrainState, dict]]
  eval_step: Callable[[Any, dict], Array]
  sparse_group: str
  mesh: Any
  state_sharding: Any = None


def rows_l2(rows: dict, batch: dict) -> Array:
  """Mean over the batch's real rows of the squared norms of the embedding
  rows each example gathered (padding slots left out), summed over tables."""
  total = 0.0
  for path, r in contract.flat(rows).items():
    sq = jnp.sum(jnp.square(r.astype(jnp.float32)), axis=-1)
    ids = batch['features'][path[0]]
    sq = jnp.where(ids != PAD_ID, sq, 0.0)
    total = total + (jnp.sum(sq, axis=-1) if sq.ndim == 2 else sq)
  w = batch['weight']
  return jnp.sum(total * w) / jnp.maximum(jnp.sum(w), 1.0)


def _global_norm(tree):
  """L2 norm over every leaf (non-finite when any gradient is)."""
  return jnp.sqrt(sum(jnp.sum(jnp.square(x.astype(jnp.float32))) for x in jax.tree.leaves(tree)))


def _head_and_loss(module, rows, inputs, domain, labels, label_mask, weight, task_weights):
  """``head`` then the model's loss (its own, or ``multitask_loss``), in one apply."""
  outputs = module.head(rows, inputs, domain)
  return contract.loss(module, outputs, labels, label_mask, weight, task_weights)


def _probabilities(module, inputs, domain):
  """What evaluation and predict score: [B, T] probabilities."""
  return contract.probabilities(module, module(inputs, domain))


def make_steps(model, config, total_steps: int, mesh=None) -> Steps:
  """Builds the steps for ``model`` under ``config.optim`` / ``config.train``, in phases:
  check the row-sparse group, build the optimizer, the loss, one update rule (dense or
  row-sparse), the non-finite guard."""
  oc = config.optim
  sparse_group = _checked_sparse_group(oc)
  tx = optim.build_optimizer(oc, total_steps, exclude=(sparse_group,) if sparse_group else ())
  task_weights_for = _task_weights_fn(config)
  mesh = mesh or shard_lib.make_mesh(config.get('mesh', {}).get('num_devices', 1))
  nonfinite = config.train.get('nonfinite', 'stop')
  if nonfinite not in ('stop', 'skip'):
    raise ValueError(f"config.train.nonfinite={nonfinite!r}: use 'stop' or 'skip'")
  split = _SparseSplit(oc, sparse_group)
  loss_of = _loss_fn(model, config, task_weights_for)
  if sparse_group:
    step_fn = _sparse_step_fn(model, tx, oc[sparse_group], total_steps, split, loss_of)
  else:
    step_fn = _dense_step_fn(model, tx, loss_of)

  def eval_step(params, batch):
    return model.apply({'params': params}, batch['features'], batch['domain'],
                       method=_probabilities)

  return Steps(model=model, tx=tx, init=_init_fn(model, tx, oc, split),
               train_step=_guarded(step_fn, nonfinite), eval_step=eval_step,
               sparse_group=sparse_group, mesh=mesh)


def _checked_sparse_group(oc) -> str:
  """``config.optim.sparse_group`` ('' = none), checked: a configured AdaGrad group."""
  sparse_group = oc.get('sparse_group', '') or ''
  if sparse_group:
    if sparse_group not in oc.groups:
      raise ValueError(f'config.optim.sparse_group={sparse_group!r} is not in config.optim.groups')
    if oc[sparse_group].optimizer != 'adagrad':
      raise ValueError(f'config.optim.sparse_group={sparse_group!r} needs optimizer adagrad, '
                       f'got config.optim.{sparse_group}.optimizer={oc[sparse_group].optimizer!r}')
  return sparse_group


def _task_weights_fn(config):
  """num_tasks -> the loss's task weights. The number of tasks is the batch's (labels
  [B, T]): the model contract asks nothing of the model but lookup and head."""
  configured_weights = tuple(config.train.task_weights)

  def task_weights_for(num_tasks: int):
    weights = configured_weights or (1.0,) * num_tasks
    if len(weights) != num_tasks:
      raise ValueError(f'config.train.task_weights has {len(weights)} values for '
                       f'{num_tasks} tasks (config.data.tasks); use () for all ones')
    return jnp.asarray(weights, jnp.float32)
  return task_weights_for


@dataclasses.dataclass(frozen=True)
class _SparseSplit:
  """params -> (row-sparse tables {'embed': {feature: table | {name: table}}}, the rest):
  the tables are those the sparse group's regex labels, so ``optim.<group>.regex`` decides
  on both paths."""
  oc: Any
  sparse_group: str

  def __call__(self, params):
    oc, sparse_group = self.oc, self.sparse_group
    labels = contract.flat(optim.param_labels(params, oc))
    picked = {p for p, lab in labels.items() if lab == sparse_group}
    wrong = sorted('/'.join(p) for p in picked if p[0] != EMBED_SCOPE)  # a stable message
    if wrong:
      raise ValueError(
          f'config.optim.{sparse_group}.regex={oc[sparse_group].regex!r} matches {wrong[:3]}, '
          f'which are not embedding tables; the row-sparse group (config.optim.sparse_group='
          f'{sparse_group!r}) can only hold tables under {EMBED_SCOPE}/')
    leaves = contract.flat(params)
    tables = contract.nest({p: v for p, v in leaves.items() if p in picked})
    rest = contract.nest({p: v for p, v in leaves.items() if p not in picked})
    return tables, rest


def _init_fn(model, tx, oc, split: _SparseSplit):
  def init(rng, batch) -> TrainState:
    params = model.init(rng, batch['features'], batch['domain'])['params']
    contract.check_tables(params, batch['features'])
    if split.sparse_group:
      tables, rest = split(params)
      initial, _ = optim.adagrad_settings(oc[split.sparse_group])
      acc = jax.tree.map(lambda t: jnp.full_like(t, initial), tables)
      return TrainState(jnp.zeros((), jnp.int32), params, tx.init(rest), acc)
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), {})
  return init


def _loss_fn(model, config, task_weights_for):
  """(params, rows, batch, step) -> (loss, per-task losses): the model's loss, dropout,
  the embedding L2."""
  dropout = float(config.model.get('dropout', 0.0))
  embed_l2 = float(config.train.get('embed_l2', 0.0))
  dropout_key = jax.random.key(int(config.train.seed) + 0xD0)

  def loss_of(params, rows, batch, step):
    # Dropout masks depend on (seed, step) only: a resumed run draws the same ones.
    rngs = {'dropout': jax.random.fold_in(dropout_key, step)} if dropout else None
    task_weights = task_weights_for(batch['labels'].shape[-1])
    loss, per_task = model.apply({'params': params}, rows, batch['features'], batch['domain'],
                                 batch['labels'], batch['label_mask'], batch['weight'],
                                 task_weights, method=_head_and_loss, rngs=rngs)
    if embed_l2:
      loss = loss + embed_l2 * rows_l2(rows, batch)
    return loss, per_task
  return loss_of


def _dense_step_fn(model, tx, loss_of):
  """Every parameter, tables included, through ``tx``."""
  def dense_step(state: TrainState, batch):
    def loss_fn(params):
      rows = model.apply({'params': params}, batch['features'], method='lookup')
      return loss_of(params, rows, batch, state.step)
    (loss, per_task), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (state.replace(step=state.step + 1, params=params, opt_state=opt_state),
            (loss, per_task, _global_norm(grads)))
  return dense_step


def _sparse_step_fn(model, tx, gc, total_steps: int, split: _SparseSplit, loss_of):
  """The sparse group's tables by row-sparse AdaGrad (group config ``gc``), the rest
  through ``tx``."""
  lr_at = optim.schedule(gc, total_steps, split.sparse_group)
  _, eps = optim.adagrad_settings(gc)

  def sparse_step(state: TrainState, batch):
    tables, rest = split(state.params)
    table_paths = list(contract.flat(tables))
    # Every table goes through ``lookup``; gradients reach the sparse ones as
    # their gathered rows (g_rows, keyed by table path) and everything else
    # through ``rest``. The sparse tables themselves are constants here.
    def loss_fn(rest, sparse_rows):
      params = contract.merge(rest, tables)
      rows = contract.flat(model.apply({'params': params}, batch['features'], method='lookup'))
      rows.update({p[1:]: sparse_rows[p] for p in table_paths})
      return loss_of(params, contract.nest(rows), batch, state.step)
    all_rows = model.apply({'params': contract.merge(rest, tables)}, batch['features'],
                           method='lookup')
    sparse_rows = {p: contract.rows_at(all_rows, p) for p in table_paths}
    (loss, per_task), (g_rest, g_rows) = jax.value_and_grad(
        loss_fn, argnums=(0, 1), has_aux=True)(rest, sparse_rows)
    updates, opt_state = tx.update(g_rest, state.opt_state, rest)
    rest = optax.apply_updates(rest, updates)
    lr = lr_at(state.step)
    acc = contract.flat(state.emb_acc)
    new_tables, new_acc = {}, {}
    for p, table in contract.flat(tables).items():
      new_tables[p], new_acc[p] = sparse.adagrad_rows(
          table, acc[p], batch['features'][contract.table_feature(p)], g_rows[p], lr, eps)
    params = contract.merge(rest, contract.nest(new_tables))
    # The tables' part over the rows looked up, one gradient per lookup: the dense path's
    # norm when no id repeats in the batch, a little off it when ids repeat.
    grad_norm = _global_norm((g_rest, g_rows))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         emb_acc=contract.nest(new_acc)), (loss, per_task, grad_norm)
  return sparse_step


def _guarded(step_fn, nonfinite: str):
  """The train step: ``step_fn`` plus the finite flag; under 'skip' a non-finite step
  leaves every parameter and optimizer slot as it was."""
  def train_step(state, batch):
    new, (loss, per_task, grad_norm) = step_fn(state, batch)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if nonfinite == 'skip':
      kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new.replace(step=state.step),
                          state)
      new = kept.replace(step=state.step + 1)
    return new, {'loss': loss, 'task_loss': per_task, 'grad_norm': grad_norm,
                 'finite': finite}
  return train_step


def jit_steps(steps: Steps, config, sample_batch: dict, rng) -> tuple[Steps, TrainState]:
  """Initializes the state with its shardings and jits the steps with donation."""
  mc = config.get('mesh', ml_collections.ConfigDict())
  mesh = steps.mesh
  abstract = jax.eval_shape(steps.init, rng, sample_batch)
  state_sharding = shard_lib.state_shardings(
      abstract, mesh, f'^{EMBED_SCOPE}/', int(mc.get('shard_min_rows', 4096)))
  data_sharding = shard_lib.batch_sharding(mesh)
  state = jax.jit(steps.init, out_shardings=state_sharding)(rng, sample_batch)
  train_step = jax.jit(steps.train_step, donate_argnums=(0,),
                       in_shardings=(state_sharding, data_sharding),
                       out_shardings=(state_sharding, shard_lib.replicated(mesh)))
  eval_step = jax.jit(steps.eval_step, in_shardings=(state_sharding.params, data_sharding),
                      out_shardings=shard_lib.replicated(mesh))
  return dataclasses.replace(steps, train_step=train_step, eval_step=eval_step,
                             state_sharding=state_sharding), state
