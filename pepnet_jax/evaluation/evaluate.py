"""Evaluation: predictions over a whole split, and AUC / GAUC / logloss per task x domain
from them (``metrics.evaluate``), flattened to scalars for the logs."""

from __future__ import annotations

import time

import numpy as np

from pepnet_jax.evaluation import metrics as metrics_lib
from pepnet_jax.training.steps import Steps, to_device


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
