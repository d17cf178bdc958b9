"""The trainer: ``train_and_evaluate(config, workdir)``, one loop for every model, as named
phases: set up (data, model, steps, restore), train (with validation and model selection),
restore the best step, report on the test split.

The steps themselves are built in ``steps.py``; evaluation over a split is
``evaluation/evaluate.py``.
Their public names are re-exported here (``train.make_steps``, ``train.evaluate_dataset``,
...), the names the tests, benchmarks and notebooks have always used.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from typing import Any

import jax
import ml_collections
import numpy as np

from pepnet_jax import configs
from pepnet_jax.evaluation.evaluate import evaluate_dataset, flat_scalars, predict_arrays  # noqa: F401
from pepnet_jax.models import build_model
from pepnet_jax.models.contract import multitask_loss  # noqa: F401  (re-exported)
from pepnet_jax.training.steps import (  # noqa: F401  (re-exported)
    DEVICE_KEYS, Steps, TrainState, data_shards, device_batch, drop_cold_rows, jit_steps,
    make_steps, process_rows, rows_l2, to_device)
from pepnet_jax.training import checkpoint as ckpt_lib
from pepnet_jax.training import cold_start, interrupts, selection, writers


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


def resolve_data(config, workdir: str):
  """``config.data`` resolved (``data.resolve``): the one place a run works out its data
  settings; train, evaluate and predict call it at their entry and pass the result down."""
  from pepnet_jax.data.resolve import resolve
  return resolve(config.data, workdir)


def setup_run(config, workdir: str, data=None):
  """Data, model and steps for a config; shared by train, evaluate and predict. ``data``:
  the run's ``resolve_data``, resolved here when not given."""
  from pepnet_jax.data import prepare  # data layer pulls pandas: import lazily
  data = data or resolve_data(config, workdir)
  datasets, infos, data_spec, vocab = prepare.load(data, workdir)
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
                   infos, depth: int = 2, entities=None):
  """The training batches of steps start+1, start+2, ... on the device: assembled, with
  the OOV rows of ``config.train.oov_rate`` dropped and transferred in a background
  thread ``depth`` batches ahead of the step that uses them (the same batches, in the same
  order, as made one by one). Close it when done. ``entities``: the format's
  (``ResolvedData.format.entities``)."""
  from pepnet_jax.data import pipeline
  shards = data_shards(config)
  local_shard = jax.process_index() if jax.process_count() > 1 else None
  cold = cold_start.entity_features(data_spec, entities)
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
  from pepnet_jax.training import runlock
  configs.validate_train(config)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  with runlock.hold(workdir, enabled=jax.process_index() == 0):
    return _train_and_evaluate(config, workdir)


def _selector(config, steps_per_epoch: int, total: int, meta: dict, has_valid: bool):
  """(selector or None, validation interval in steps)."""
  tc = config.train
  eval_every = int(tc.eval_every)
  patience = int(tc.get('patience', 0))
  if patience and not eval_every:
    eval_every = steps_per_epoch  # early stopping needs validations: one an epoch
  if not eval_every and tc.get('valid_at_end', False):
    eval_every = max(int(total), 1)  # one validation, after the last step
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
  data: Any = None  # the resolved data settings (resolve_data)


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
  data = resolve_data(config, workdir)
  datasets, infos, data_spec, vocab, model = setup_run(config, workdir, data)
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
  selector, eval_every = _selector(config, steps_per_epoch, total, meta, 'valid' in datasets)
  best_ckpt = (ckpt_lib.Checkpointer(os.path.join(workdir, 'best'), max_to_keep=1)
               if selector else None)
  n_params = sum(x.size for x in jax.tree.leaves(state.params))
  return _Run(config, workdir, datasets, infos, data_spec, steps, state, checkpointer, start,
              total, steps_per_epoch, n_params, selector, eval_every, best_ckpt, data)


def _announce(run: _Run) -> None:
  """The run's first lines: sizes, the recipe, the selection rule."""
  config, selector = run.config, run.selector
  print(f'{config.model.name}: {run.n_params:,} parameters; '
        f'{run.datasets["train"].num_rows:,} training rows, {run.steps_per_epoch} steps/epoch, '
        f'{run.total} steps, batch {config.data.batch_size}, '
        f'{len(jax.devices())} device(s) [{jax.default_backend()}]', flush=True)
  print(configs.describe_recipe(config), flush=True)
  if selector and run.eval_every >= run.total and not selector.patience:
    print(f'Model selection: one validation ({selector.metric}), after the last step; the '
          'report uses that step', flush=True)
  elif selector:
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
      run.best_ckpt.save(step, state, meta={'valid': _summary(res)}, force=True, replace=True)
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
                           run.start, run.data_spec, run.infos,
                           entities=run.data.format.entities)
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
  from pepnet_jax.evaluation import report as report_lib
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
