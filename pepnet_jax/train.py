"""The trainer: ``train_and_evaluate(config, workdir)``, the train and eval steps.

One loop for every model. A train step is one jitted function with the state
donated; it runs unchanged on CPU, GPU and TPU and on 1 or N devices (the
mesh decides). With ``config.optim.sparse_group`` set, the embedding tables
of that group are updated row-sparsely (``sparse.adagrad_rows``): the step
differentiates with respect to the gathered rows, never the whole tables.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any, Callable

import flax
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from pepnet_jax import checkpoint as ckpt_lib
from pepnet_jax import cold_start
from pepnet_jax import configs
from pepnet_jax import interrupts
from pepnet_jax import metrics as metrics_lib
from pepnet_jax import optim
from pepnet_jax import selection
from pepnet_jax import sharding as shard_lib
from pepnet_jax import sparse
from pepnet_jax import writers
from pepnet_jax.models import build_model
from pepnet_jax.models import contract
from pepnet_jax.models.contract import multitask_loss  # noqa: F401  (re-exported)
from pepnet_jax.features import PAD_ID
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
  """Builds the jitted steps for ``model`` under ``config.optim`` / ``config.train``."""
  oc = config.optim
  sparse_group = oc.get('sparse_group', '') or ''
  if sparse_group:
    if sparse_group not in oc.groups:
      raise ValueError(f'config.optim.sparse_group={sparse_group!r} is not in config.optim.groups')
    if oc[sparse_group].optimizer != 'adagrad':
      raise ValueError(f'config.optim.sparse_group={sparse_group!r} needs optimizer adagrad, '
                       f'got config.optim.{sparse_group}.optimizer={oc[sparse_group].optimizer!r}')
  tx = optim.build_optimizer(oc, total_steps, exclude=(sparse_group,) if sparse_group else ())
  # The number of tasks is the batch's (labels [B, T]): the model contract asks
  # nothing of the model but lookup and head.
  configured_weights = tuple(config.train.task_weights)

  def task_weights_for(num_tasks: int):
    weights = configured_weights or (1.0,) * num_tasks
    if len(weights) != num_tasks:
      raise ValueError(f'config.train.task_weights has {len(weights)} values for '
                       f'{num_tasks} tasks (config.data.tasks); use () for all ones')
    return jnp.asarray(weights, jnp.float32)
  mesh = mesh or shard_lib.make_mesh(config.get('mesh', {}).get('num_devices', 1))

  nonfinite = config.train.get('nonfinite', 'stop')
  if nonfinite not in ('stop', 'skip'):
    raise ValueError(f"config.train.nonfinite={nonfinite!r}: use 'stop' or 'skip'")

  def sparse_split(params):
    """(row-sparse tables {'embed': {feature: table | {name: table}}}, the rest):
    the tables are those the sparse group's regex labels, so
    ``optim.<group>.regex`` decides on both paths."""
    labels = contract.flat(optim.param_labels(params, oc))
    picked = {p for p, lab in labels.items() if lab == sparse_group}
    wrong = ['/'.join(p) for p in picked if p[0] != EMBED_SCOPE]
    if wrong:
      raise ValueError(
          f'config.optim.{sparse_group}.regex={oc[sparse_group].regex!r} matches {wrong[:3]}, '
          f'which are not embedding tables; the row-sparse group (config.optim.sparse_group='
          f'{sparse_group!r}) can only hold tables under {EMBED_SCOPE}/')
    leaves = contract.flat(params)
    tables = contract.nest({p: v for p, v in leaves.items() if p in picked})
    rest = contract.nest({p: v for p, v in leaves.items() if p not in picked})
    return tables, rest

  def init(rng, batch) -> TrainState:
    params = model.init(rng, batch['features'], batch['domain'])['params']
    contract.check_tables(params, batch['features'])
    if sparse_group:
      tables, rest = sparse_split(params)
      gc = oc[sparse_group]
      acc = jax.tree.map(lambda t: jnp.full_like(t, gc.get('initial_accumulator', 0.1)), tables)
      return TrainState(jnp.zeros((), jnp.int32), params, tx.init(rest), acc)
    return TrainState(jnp.zeros((), jnp.int32), params, tx.init(params), {})

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

  def dense_step(state: TrainState, batch):
    def loss_fn(params):
      rows = model.apply({'params': params}, batch['features'], method='lookup')
      return loss_of(params, rows, batch, state.step)
    (loss, per_task), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    return (state.replace(step=state.step + 1, params=params, opt_state=opt_state),
            (loss, per_task, _global_norm(grads)))

  def sparse_step(state: TrainState, batch):
    tables, rest = sparse_split(state.params)
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
    gc = oc[sparse_group]
    lr = optim.schedule(gc, total_steps)(state.step)
    acc = contract.flat(state.emb_acc)
    new_tables, new_acc = {}, {}
    for p, table in contract.flat(tables).items():
      new_tables[p], new_acc[p] = sparse.adagrad_rows(
          table, acc[p], batch['features'][contract.table_feature(p)], g_rows[p], lr,
          gc.get('eps', 1e-7))
    params = contract.merge(rest, contract.nest(new_tables))
    grad_norm = _global_norm((g_rest, g_rows))
    return state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                         emb_acc=contract.nest(new_acc)), (loss, per_task, grad_norm)

  step_fn = sparse_step if sparse_group else dense_step

  def train_step(state, batch):
    new, (loss, per_task, grad_norm) = step_fn(state, batch)
    finite = jnp.isfinite(loss) & jnp.isfinite(grad_norm)
    if nonfinite == 'skip':
      # A non-finite step leaves every parameter and optimizer slot as it was.
      kept = jax.tree.map(lambda n, o: jnp.where(finite, n, o), new.replace(step=state.step),
                          state)
      new = kept.replace(step=state.step + 1)
    return new, {'loss': loss, 'task_loss': per_task, 'grad_norm': grad_norm,
                 'finite': finite}

  def eval_step(params, batch):
    return model.apply({'params': params}, batch['features'], batch['domain'],
                       method=_probabilities)

  return Steps(model=model, tx=tx, init=init, train_step=train_step, eval_step=eval_step,
               sparse_group=sparse_group, mesh=mesh)


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


def predict_arrays(steps: Steps, params, dataset, batch_size: int, progress: bool = False):
  """Per-example predictions over a whole dataset, in order (padding dropped).

  Returns dict with preds [N, T] float32 and the matching labels (int8, -1 =
  missing), label_mask, domain and group, so metrics are exact over the whole
  evaluation set. Only the predictions are new memory: the rest are the
  dataset's own columns (memory-mapped from the cache), as eval batches walk
  the rows in order.
  """
  n, t0 = dataset.num_rows, time.time()
  preds = None
  n_batches = dataset.num_batches(batch_size, drop_remainder=False)

  def keep(i, probs):
    nonlocal preds
    probs = np.asarray(probs)  # waits for batch i only
    if preds is None:
      preds = np.empty((n,) + probs.shape[1:], np.float32)
    start = i * batch_size
    preds[start:start + batch_size] = probs[:min(batch_size, n - start)]
    if progress and (i + 1) % 50 == 0:
      print(f'  predicted {i + 1}/{n_batches} batches ({time.time() - t0:.0f}s)', flush=True)

  # Batches are assembled in a background thread, and batch i + 1 is dispatched before
  # batch i's predictions are read back, so the host's copying overlaps the device's work.
  pending = None
  for i, batch in enumerate(dataset.eval_batches(batch_size, prefetch=2)):
    out = steps.eval_step(params, to_device(batch, steps.mesh))
    if pending is not None:
      keep(*pending)
    pending = (i, out)
  if pending is not None:
    keep(*pending)
  labels = dataset.columns['labels']
  if preds is None:
    preds = np.zeros((0, labels.shape[1]), np.float32)
  return {'preds': preds, 'labels': labels, 'label_mask': labels >= 0,
          'domain': dataset.columns['domain'], 'group': dataset.columns['group']}


def evaluate_dataset(steps, params, dataset, data_spec, batch_size: int,
                     extra_metrics=()) -> dict:
  """AUC / GAUC / logloss (and ``extra_metrics``, names of registered metrics:
  config.train.metrics) per task x domain over the whole split."""
  arr = predict_arrays(steps, params, dataset, batch_size)
  return metrics_lib.evaluate(
      arr['preds'], arr['labels'], arr['label_mask'], arr['domain'], arr['group'],
      task_names=list(data_spec.tasks), domain_names=[str(d) for d in data_spec.domains],
      extra=metrics_lib.resolve_metrics(extra_metrics))


def save_config(config, workdir: str):
  os.makedirs(workdir, exist_ok=True)
  with open(os.path.join(workdir, 'config.json'), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))


def restore_or_explain(checkpointer, state, config, workdir: str, old_config_text: str | None):
  """(state, meta, step) of the newest readable checkpoint, or (state, {}, 0)
  when there is none. A damaged newest step is skipped with a warning (and moved aside,
  so the resumed run can save that step again). A checkpoint that does not
  fit this config's state (the config changed since it was saved) puts the
  old config.json back and raises an error that names the changed fields
  instead of orbax's tree dump."""
  if checkpointer.latest_step() is None:
    return state, {}, 0
  try:
    return checkpointer.restore_latest(state, move_damaged=True)
  except ckpt_lib.CheckpointMismatch as e:
    path = os.path.join(workdir, 'config.json')
    changed = []
    if old_config_text is not None:
      changed = list(configs.changed_fields(json.loads(old_config_text),
                                            json.loads(config.to_json_best_effort())))
      with open(path, 'w') as f:
        f.write(old_config_text)
    shown = ', '.join(changed[:12]) + (f' and {len(changed) - 12} more' if len(changed) > 12
                                       else '')
    raise ValueError(
        f'the checkpoint at step {e.step} in {checkpointer.directory} '
        'does not fit this config\'s model or optimizer'
        + (f'; fields changed since it was saved ({path}): {shown}' if changed else '')
        + '. Resume with the config it was saved with, or train in a new --workdir.') from None


def flat_scalars(results: dict) -> dict:
  """{'auc/is_click': ..., 'gauc/is_click/tab1': ...} for JSON lines / TensorBoard."""
  out = {}
  for m in results['mean']:  # auc, gauc, logloss and any extra metric
    out[f'mean_{m}'] = results['mean'][m]
    for task, v in results['overall'].items():
      out[f'{m}/{task}'] = v[m]
    for dom, tasks in results['domains'].items():
      for task, v in tasks.items():
        out[f'{m}/{task}/domain_{dom}'] = v[m]
  return out


def setup_run(config, workdir: str):
  """Data, model and steps for a config; shared by train, evaluate and predict."""
  from pepnet_jax.data import prepare  # data layer pulls pandas: import lazily
  datasets, infos, data_spec, vocab = prepare.load(config, workdir)
  model = build_model(config.model, infos, data_spec)
  return datasets, infos, data_spec, vocab, model


def total_train_steps(config, train_ds) -> tuple[int, int]:
  steps_per_epoch = train_ds.num_train_batches(config.data.batch_size, data_shards(config))
  if steps_per_epoch == 0:
    raise ValueError(f'config.data.batch_size={config.data.batch_size} exceeds the '
                     f'{train_ds.num_rows} training rows')
  total = int(config.train.num_steps) or int(config.train.num_epochs * steps_per_epoch)
  if total < 1:
    raise ValueError(f'config.train.num_epochs={config.train.num_epochs} is less than one step '
                     f'of the {steps_per_epoch} steps an epoch has')
  return total, steps_per_epoch


def train_batches(train_ds, config, steps_per_epoch: int, start_step: int):
  """Deterministic batches from ``start_step`` on (resumes see the same data):
  global batches, or in a multi-host job this host's shard of each."""
  epoch, offset = divmod(start_step, steps_per_epoch)
  shards = data_shards(config)
  shard = jax.process_index() if jax.process_count() > 1 else None
  while True:
    yield from train_ds.train_batches(config.data.batch_size, seed=config.data.seed,
                                      epoch=epoch, start_batch=offset, shards=shards,
                                      shard=shard)
    epoch, offset = epoch + 1, 0


def device_batches(train_ds, config, steps: Steps, steps_per_epoch: int, start: int, data_spec,
                   infos, depth: int = 2):
  """The training batches of steps start+1, start+2, ... on the device: assembled, with
  the OOV rows of ``config.train.oov_rate`` dropped and transferred in a background
  thread ``depth`` batches ahead of the step that uses them (the same batches, in the same
  order, as made one by one). Close it when done."""
  from pepnet_jax.data import pipeline
  shards = data_shards(config)
  local_shard = jax.process_index() if jax.process_count() > 1 else None
  cold = cold_start.entity_features(data_spec)
  kinds = {f.name: f.kind for f in infos}
  oov_rate = float(config.train.get('oov_rate', 0.0))

  def make():
    for step, batch in enumerate(train_batches(train_ds, config, steps_per_epoch, start),
                                 start + 1):
      batch['features'] = drop_cold_rows(batch['features'], cold, kinds, oov_rate,
                                         config.data.seed, step, shards, local_shard)
      yield to_device(batch, steps.mesh, local=local_shard is not None)
  return pipeline.prefetch_iter(make(), depth)


def _summary(results: dict) -> dict:
  """The JSON-friendly part of a validation result kept with the best step."""
  return {'mean': results['mean'], 'overall': results['overall']}


def _task_losses(tasks, metrics) -> str:
  return ', '.join(f'{t} {float(v):.4g}' for t, v in zip(tasks, np.asarray(metrics['task_loss'])))


class _FiniteGuard:
  """Checks each step's loss and gradient norm one step late, so the host
  reads a finished step while the next one runs (no stall in the pipeline)."""

  def __init__(self, mode: str, tasks, checkpointer, max_skipped: int):
    self.mode, self.tasks, self.checkpointer = mode, tasks, checkpointer
    self.max_skipped = max_skipped
    self.pending = None
    self.skipped = self.run_of_skips = 0

  def push(self, step: int, metrics) -> None:
    self.check()
    self.pending = (step, metrics)

  def check(self) -> None:
    if self.pending is None:
      return
    step, metrics = self.pending
    self.pending = None
    if bool(metrics['finite']):
      self.run_of_skips = 0
      return
    self.skipped += 1
    self.run_of_skips += 1
    what = (f'loss {float(metrics["loss"]):.4g}, gradient norm {float(metrics["grad_norm"]):.4g} '
            f'({_task_losses(self.tasks, metrics)})')
    if self.mode == 'skip' and self.run_of_skips <= self.max_skipped:
      print(f'warning: step {step} is not finite ({what}); skipped it (its update was not '
            'applied)', flush=True)
      return
    self.checkpointer.wait()
    last = self.checkpointer.latest_step()
    where = (f'the last good checkpoint is step {last} in {self.checkpointer.directory}' if last
             else 'no checkpoint was saved')
    why = (f'{self.run_of_skips} steps in a row were not finite (config.train.max_skipped_steps='
           f'{self.max_skipped})' if self.mode == 'skip' else 'training stopped')
    raise interrupts.NonFiniteLoss(
        f'the loss is not finite at step {step}: {what}; {why}, nothing after it was saved, '
        f'{where}. Lower the learning rates (config.optim.*.lr) or set '
        "config.train.nonfinite='skip' to skip such steps.")


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """Trains (resuming from the latest checkpoint in ``workdir``), then evaluates.

  Returns the final report on the test split (also saved as report.json/png).
  SIGTERM / Ctrl-C save a checkpoint at the current step and raise
  ``interrupts.Interrupted``; a non-finite loss raises ``interrupts.NonFiniteLoss``
  (or, with ``config.train.nonfinite='skip'``, skips the step).
  """
  from pepnet_jax import runlock
  configs.validate_train(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  with runlock.hold(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir)


def _selector(config, steps_per_epoch: int, meta: dict, has_valid: bool):
  """(selector or None, validation interval in steps)."""
  tc = config.train
  eval_every = int(tc.eval_every)
  patience = int(tc.get('patience', 0))
  if patience and not eval_every:
    eval_every = steps_per_epoch  # early stopping needs validations: one an epoch
  if not (has_valid and eval_every and tc.get('select_best', True)):
    if patience and not has_valid:
      raise ValueError(f'config.train.patience={patience} needs a validation split '
                       '(config.data.splits.valid)')
    return None, eval_every
  metric = selection.selected_key(tc.get('select_metric', 'mean_auc'),
                                  int(tc.get('select_min_positives', 0)))
  return selection.Selector.from_meta(meta, metric, patience,
                                      float(tc.get('min_delta', 0.0))), eval_every


@dataclasses.dataclass
class _Run:
  """What the phases of ``train_and_evaluate`` share: data, steps, state and bookkeeping."""
  config: Any
  workdir: str
  datasets: dict
  infos: Any
  data_spec: Any
  steps: Steps
  state: Any
  checkpointer: Any
  start: int
  total: int
  steps_per_epoch: int
  n_params: int
  selector: Any = None
  eval_every: int = 0
  best_ckpt: Any = None


def _train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict:
  """The phases in order: set up (data, model, steps), restore, train with validation and
  model selection, restore the best step, report on the test split."""
  run = _set_up(config, workdir)
  _announce(run)
  _train(run)
  state, selected, best_meta, report_step = _restore_best(run)
  return _report(run, state, report_step, selected, best_meta)


def _set_up(config, workdir: str) -> _Run:
  """Data, model and jitted steps, restored from the workdir's latest checkpoint if any."""
  old_path = os.path.join(workdir, 'config.json')
  old_config_text = open(old_path).read() if os.path.exists(old_path) else None
  save_config(config, workdir)
  tc = config.train
  datasets, infos, data_spec, vocab, model = setup_run(config, workdir)
  train_ds = datasets['train']
  total, steps_per_epoch = total_train_steps(config, train_ds)
  first = next(train_ds.train_batches(config.data.batch_size, seed=config.data.seed, epoch=0))
  steps = make_steps(model, config, total)
  steps, state = jit_steps(steps, config, device_batch(first), jax.random.key(tc.seed))
  checkpointer = ckpt_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                       max_to_keep=tc.keep_checkpoints)
  state, meta, start = restore_or_explain(checkpointer, state, config, workdir, old_config_text)
  if start:
    print(f'Resumed from checkpoint at step {start} in {workdir}', flush=True)
  selector, eval_every = _selector(config, steps_per_epoch, meta, 'valid' in datasets)
  best_ckpt = (ckpt_lib.Checkpointer(os.path.join(workdir, 'best'), max_to_keep=1)
               if selector else None)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  return _Run(config, workdir, datasets, infos, data_spec, steps, state, checkpointer, start,
              total, steps_per_epoch, n_params, selector, eval_every, best_ckpt)


def _announce(run: _Run) -> None:
  """The run's first lines: sizes, the recipe, the selection rule."""
  config, selector = run.config, run.selector
  print(f'{config.model.name}: {run.n_params:,} parameters; '
        f'{run.datasets["train"].num_rows:,} training rows, {run.steps_per_epoch} steps/epoch, '
        f'{run.total} steps, batch {config.data.batch_size}, '
        f'{len(jax.devices())} device(s) [{jax.default_backend()}]', flush=True)
  print(configs.describe_recipe(config), flush=True)
  if selector:
    print(f'Model selection: validation {selector.metric} ({selector.mode}) every '
          f'{run.eval_every} steps; ' + (f'early stopping after {selector.patience} evaluations '
                                         'without improvement' if selector.patience
                                         else 'no early stopping')
          + '; the report uses the best step', flush=True)


def _log_train(run: _Run, progress, step: int, metrics, guard, throughput) -> None:
  """One training log line; one transfer for every logged figure (it blocks, so the
  throughput figure is honest)."""
  guard.check()
  logged = jax.device_get({k: metrics[k] for k in ('loss', 'grad_norm', 'task_loss')})
  scalars = {'loss': float(logged['loss']), 'examples_per_sec': throughput.rate(),
             'grad_norm': float(logged['grad_norm'])}
  scalars.update({f'loss/{t}': float(v)
                  for t, v in zip(run.data_spec.tasks, logged['task_loss'])})
  if guard.skipped:
    scalars['skipped_steps'] = guard.skipped
  progress.report(step, 'train', scalars)


class _Validation:
  """Validates, updates the selector, keeps the best step's state, decides early stopping."""

  def __init__(self, run: _Run):
    self.run = run
    tc = run.config.train
    self.min_positives = (int(tc.get('select_min_positives', 0)) if run.selector else 0)
    self.judged_shown = False

  def due(self, step: int) -> bool:
    run = self.run
    return bool('valid' in run.datasets and run.eval_every and (
        step % run.eval_every == 0 or (run.selector is not None and step == run.total)))

  def __call__(self, step: int, state, progress) -> float:
    """Runs one validation at ``step``; returns the seconds it took."""
    run, selector, tc = self.run, self.run.selector, self.run.config.train
    t_eval = time.time()
    res = evaluate_dataset(run.steps, state.params, run.datasets['valid'], run.data_spec,
                           run.config.data.eval_batch_size, tc.get('metrics', ()))
    scalars = flat_scalars(res)
    if self.min_positives:
      scalars.update(selection.judged_scalars(res, tc.select_metric, self.min_positives))
      if not self.judged_shown:
        self.judged_shown = True
        print(f'Selection on {selector.metric}: the mean over '
              f'{", ".join(selection.judged_tasks(res, self.min_positives))} (at least '
              f'{self.min_positives} validation positives)', flush=True)
    best = selector.update(step, scalars) if selector else False
    progress.report(step, 'valid', scalars, note='(best)' if best else '')
    if best:
      run.best_ckpt.save(step, state, meta={'valid': _summary(res)}, force=True)
      # Finished before anything else saves: in a multi-host job orbax names its
      # barriers by step, so the periodic save of this same step would collide.
      run.best_ckpt.wait()
    if selector and selector.should_stop:
      selector.stopped_at = step
      print(f'Early stopping at step {step}: no improvement of validation '
            f'{selector.metric} in {selector.patience} evaluations; best step '
            f'{selector.best_step} ({selector.best_value:.4f})', flush=True)
    return time.time() - t_eval


def _save_if_newer(checkpointer, step: int, state, meta: dict) -> None:
  if checkpointer.latest_step() != step:
    checkpointer.save(step, state, meta=meta, force=True)


def _train(run: _Run) -> None:
  """Steps ``start + 1 .. total`` (or until early stopping), validating and checkpointing on
  the way; a signal saves the current step and raises ``interrupts.Interrupted``."""
  config, tc, selector, checkpointer = run.config, run.config.train, run.selector, run.checkpointer
  writer = writers.MetricWriter(run.workdir, enabled=jax.process_index() == 0)
  writer.drop_after(run.start)  # lines a killed run logged after its last checkpoint
  progress = writers.Progress(run.total, run.start, writer)
  batches = device_batches(run.datasets['train'], config, run.steps, run.steps_per_epoch,
                           run.start, run.data_spec, run.infos)
  guard = _FiniteGuard(tc.get('nonfinite', 'stop'), run.data_spec.tasks, checkpointer,
                       int(tc.get('max_skipped_steps', 10)))
  stop = interrupts.StopFlag()
  throughput = writers.Throughput()
  validation = _Validation(run)
  state = run.state
  try:
    with interrupts.deferred(stop):
      last = selector.stopped_at if selector and selector.stopped_at else run.total
      for step in range(run.start + 1, last + 1):
        state, metrics = run.steps.train_step(state, next(batches))
        guard.push(step, metrics)
        throughput.add(config.data.batch_size)
        if step % tc.log_every == 0 or step == run.total:
          _log_train(run, progress, step, metrics, guard, throughput)
        if validation.due(step):
          guard.check()
          throughput.pause(validation(step, state, progress))
        run_meta = {'selection': selector.to_meta()} if selector else {}
        if tc.checkpoint_every and step % tc.checkpoint_every == 0:
          guard.check()
          checkpointer.save(step, state, meta=run_meta)
        if selector and selector.stopped_at:
          _save_if_newer(checkpointer, step, state, run_meta)
          break
        signum = interrupts.agreed_signal(stop, step, tc.log_every)
        if signum:
          stop.signum = signum
          guard.check()
          _save_if_newer(checkpointer, step, state, run_meta)
          checkpointer.wait()
          raise interrupts.Interrupted(
              f'{stop.name}: stopped at step {step} of {run.total}; saved a checkpoint in '
              f'{checkpointer.directory}. Run the same command to resume.', stop.signum)
      guard.check()
    if run.total > run.start and checkpointer.latest_step() != run.total and not (
        selector and selector.stopped_at):
      checkpointer.save(run.total, state,
                        meta={'selection': selector.to_meta()} if selector else {}, force=True)
  finally:
    batches.close()
    checkpointer.close()
    writer.close()
    if run.best_ckpt:
      run.best_ckpt.close()  # an interrupted run still lands its best step
  run.state = state


def _restore_best(run: _Run):
  """(state, selection summary or None, the best step's validation summary, its step): the
  best validation step's parameters when a selector chose one, else the last step's."""
  selector = run.selector
  if not (selector and selector.best_step):
    return run.state, None, None, run.total
  best_ckpt = ckpt_lib.Checkpointer(os.path.join(run.workdir, 'best'), max_to_keep=1)
  state, best_meta, report_step = best_ckpt.restore_latest(run.state)
  best_ckpt.close()
  selected = dict(metric=selector.metric, value=selector.best_value, step=report_step,
                  stopped_at=selector.stopped_at or None,
                  last_step=run.checkpointer.latest_step())
  print(f'Best validation {selector.metric} {selector.best_value:.4f} at step {report_step}'
        f'{f" (stopped early at step {selector.stopped_at})" if selector.stopped_at else ""};'
        ' the report uses that step', flush=True)
  return state, selected, best_meta, report_step


def _report(run: _Run, state, report_step: int, selected, best_meta) -> dict:
  """Evaluates ``state`` on the report split; logs, prints and saves the report."""
  from pepnet_jax import report as report_lib
  config, datasets = run.config, run.datasets
  split = config.train.get('report_split', 'test')
  if split not in datasets:
    split = 'valid'
  t0 = time.time()
  results = evaluate_dataset(run.steps, state.params, datasets[split], run.data_spec,
                             config.data.eval_batch_size, config.train.get('metrics', ()))
  eval_secs = time.time() - t0
  results['split'] = split
  results['step'] = int(report_step)
  results['num_params'] = int(run.n_params)
  if selected:
    results['selected'] = selected
    results['best_valid'] = best_meta.get('valid')
  results['inference_examples_per_sec'] = datasets[split].num_rows / max(eval_secs, 1e-9)
  writer = writers.MetricWriter(run.workdir, enabled=jax.process_index() == 0)
  writer.drop_where(lambda r: r.get('step') == report_step and r.get('split') == split)
  writer.write(report_step, split, flat_scalars(results))
  writer.close()
  if jax.process_index() == 0:
    print(f'\nEvaluation on the {split} split ({datasets[split].num_rows:,} rows) at step '
          f'{report_step}{" (best on validation)" if selected else ""}:')
    print(report_lib.format_table(results))
    paths = report_lib.save_report(results, run.workdir,
                                   title=f'{config.model.name} - {split} split, step {report_step}')
    print(f'Report: {paths["json"]} and {paths["png"]}')
  return results
