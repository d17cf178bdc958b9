"""Model selection on the validation days: the best step and early stopping.

A fixed number of epochs either stops before the model has learned what the
data holds or runs on into overfitting the per-user and per-video rows; which
of the two depends on the data size and the recipe. The trainer therefore
evaluates the validation split every ``config.train.eval_every`` steps (every
epoch by default when selection is on), keeps the parameters of the best
evaluation in ``<workdir>/best``, stops after ``patience`` evaluations without
improvement, and reports the test split with the best parameters.

A task with a few dozen validation positives moves a mean over tasks by noise
alone (its AUC varies by several hundredths between seeds) and can decide the
selection; ``config.train.select_min_positives`` averages only the tasks with
at least that many positives in the validation split (``<metric>_judged``).
"""

from __future__ import annotations

import dataclasses
import math


def mode_of(metric: str) -> str:
  """'min' for losses, 'max' for AUC-like metrics; a registered extra metric
  (``mean_<name>``, ``<name>/<task>``...) as it was registered."""
  from pepnet_jax.evaluation import metrics
  metric = metric[:-len(JUDGED)] if metric.endswith(JUDGED) else metric
  name = metric[len('mean_'):] if metric.startswith('mean_') else metric.split('/')[0]
  higher = metrics.higher_is_better(name)
  if higher is not None:
    return 'max' if higher else 'min'
  return 'min' if 'logloss' in metric or metric.startswith('loss') else 'max'


@dataclasses.dataclass
class Selector:
  """Tracks the best validation value of one metric (a key of
  ``train.flat_scalars``: mean_auc, mean_gauc, auc/is_click, mean_logloss...)."""
  metric: str = 'mean_auc'
  patience: int = 0          # evaluations without improvement before stopping; 0 = never stop
  min_delta: float = 0.0     # an improvement must beat the best by more than this
  best_value: float | None = None
  best_step: int = 0
  evals_since_best: int = 0
  stopped_at: int = 0        # the step training stopped at early (0 = not stopped)

  @property
  def mode(self) -> str:
    return mode_of(self.metric)

  def update(self, step: int, scalars: dict) -> bool:
    """Records one evaluation; True when it is the new best."""
    if self.metric not in scalars:
      known = ', '.join(sorted(k for k in scalars if '/domain_' not in k)[:20])
      raise ValueError(f'config.train.select_metric={self.metric!r} is not a validation metric; '
                       f'use one of: {known}')
    value = scalars[self.metric]
    if value is None or not math.isfinite(value):
      better = False
    elif self.best_value is None:
      better = True
    elif self.mode == 'max':
      better = value > self.best_value + self.min_delta
    else:
      better = value < self.best_value - self.min_delta
    if better:
      self.best_value, self.best_step, self.evals_since_best = float(value), int(step), 0
    else:
      self.evals_since_best += 1
    return better

  @property
  def should_stop(self) -> bool:
    return bool(self.patience) and self.evals_since_best >= self.patience

  def to_meta(self) -> dict:
    return dataclasses.asdict(self)

  @classmethod
  def from_meta(cls, meta: dict | None, metric: str, patience: int, min_delta: float):
    """The selector of a resumed run (its best so far), with this config's settings."""
    s = cls(metric=metric, patience=patience, min_delta=min_delta)
    m = (meta or {}).get('selection')
    if m and m.get('metric') == metric:
      s.best_value, s.best_step = m.get('best_value'), int(m.get('best_step', 0))
      s.evals_since_best = int(m.get('evals_since_best', 0))
      s.stopped_at = int(m.get('stopped_at', 0))
    return s


JUDGED = '_judged'


def selected_key(metric: str, min_positives: int) -> str:
  """The validation key the selector tracks: ``metric`` itself, or with
  ``min_positives`` its mean over the tasks with enough positives."""
  return metric + JUDGED if min_positives else metric


def tasks_with_positives(overalls, min_positives: int) -> list[str]:
  """The tasks with at least ``min_positives`` positives in every one of ``overalls``
  (evaluation results' 'overall' sections: {task: {'positives': n, ...}}), in first-seen
  order. The trainer's selection and aggregate's judged column share this rule."""
  tasks = None
  for overall in overalls:
    have = [t for t, v in (overall or {}).items()
            if isinstance(v, dict) and (v.get('positives') or 0) >= min_positives]
    tasks = have if tasks is None else [t for t in tasks if t in have]
  return tasks or []


def judged_tasks(results: dict, min_positives: int) -> list[str]:
  """The tasks with at least ``min_positives`` positives in one evaluation's split."""
  return tasks_with_positives([results['overall']], min_positives)


def judged_scalars(results: dict, metric: str, min_positives: int) -> dict:
  """{``<metric>_judged``: the mean of ``metric`` (a ``mean_<m>`` key) over the judged
  tasks}; a ValueError naming the config field when no task has enough positives."""
  tasks = judged_tasks(results, min_positives)
  if not tasks:
    counts = ', '.join(f"{t} {v.get('positives', 0)}" for t, v in results['overall'].items())
    raise ValueError(f'config.train.select_min_positives={min_positives}: no task has that '
                     f'many positives in the validation split ({counts}); lower it or set 0')
  name = metric[len('mean_'):]
  values = [results['overall'][t][name] for t in tasks]
  finite = [v for v in values if v is not None and math.isfinite(v)]
  return {metric + JUDGED: sum(finite) / len(finite) if finite else math.nan}
