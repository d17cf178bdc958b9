"""Optimizer: regex parameter groups -> ``optax.multi_transform``.

The paper trains embedding tables with AdaGrad (lr 0.05) and everything else
with Adam (lr 5e-6). Groups are chosen by regular expressions on the
parameter path ('embed/user_id', 'towers_0/kernel', ...), first match wins,
in the order ``config.optim.groups``; every parameter must match a group.
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import jax
import optax

GROUP_OPTIMIZERS = ('adagrad', 'adam', 'adamw', 'sgd')


def param_path(path) -> str:
  """'a/b/c' from a jax tree path of dict keys."""
  parts = []
  for k in path:
    parts.append(str(getattr(k, 'key', getattr(k, 'name', getattr(k, 'idx', k)))))
  return '/'.join(parts)


def param_labels(params, optim_config) -> Any:
  """Tree of group names, one per parameter; errors name the unmatched path."""
  groups = [(name, re.compile(optim_config[name].regex)) for name in optim_config.groups]

  def label(path, _):
    p = param_path(path)
    for name, rx in groups:
      if rx.search(p):
        return name
    raise ValueError(
        f'parameter {p!r} matches no regex in config.optim.groups={tuple(optim_config.groups)}')

  return jax.tree_util.tree_map_with_path(label, params)


def schedule(group_config, total_steps: int, name: str = '<group>') -> optax.Schedule:
  """Learning-rate schedule of one group: constant | cosine | warmup_cosine | linear.

  ``warmup_steps`` (linear from 0) precedes every kind; the decaying kinds reach 0 at
  ``total_steps``.
  """
  lr = float(group_config.lr)
  kind = group_config.get('schedule', 'constant')
  warmup = int(group_config.get('warmup_steps', 0))
  steps = max(int(total_steps), 1)

  def after_warmup(rest: optax.Schedule) -> optax.Schedule:
    if not warmup:
      return rest
    return optax.join_schedules([optax.linear_schedule(0.0, lr, warmup), rest], [warmup])

  if kind == 'constant':
    return after_warmup(optax.constant_schedule(lr))
  if kind in ('cosine', 'warmup_cosine'):
    return optax.warmup_cosine_decay_schedule(0.0 if warmup else lr, lr, warmup, max(steps, warmup + 1))
  if kind == 'linear':
    return after_warmup(optax.linear_schedule(lr, 0.0, max(steps - warmup, 1)))
  raise ValueError(f"config.optim.{name}.schedule={kind!r}: use "
                   "constant|cosine|warmup_cosine|linear")


def adagrad_settings(group_config) -> tuple[float, float]:
  """(initial accumulator, eps) of an AdaGrad group, the defaults where it sets none: one
  place for both update paths (optax's and the row-sparse ``sparse.adagrad_rows``)."""
  return (float(group_config.get('initial_accumulator', 0.1)),
          float(group_config.get('eps', 1e-7)))


def group_transform(name: str, group_config, total_steps: int) -> optax.GradientTransformation:
  opt = group_config.optimizer
  lr = schedule(group_config, total_steps, name)
  if opt == 'adagrad':
    initial, eps = adagrad_settings(group_config)
    return optax.adagrad(lr, initial_accumulator_value=initial, eps=eps)
  if opt == 'adam':
    return optax.adam(lr, b1=group_config.get('b1', 0.9), b2=group_config.get('b2', 0.999),
                      eps=group_config.get('eps', 1e-8))
  if opt == 'adamw':
    return optax.adamw(lr, weight_decay=group_config.get('weight_decay', 1e-4))
  if opt == 'sgd':
    return optax.sgd(lr)
  raise ValueError(f'config.optim.{name}.optimizer={opt!r} is not one of {GROUP_OPTIMIZERS}')


def build_optimizer(optim_config, total_steps: int, exclude: tuple[str, ...] = ()):
  """``optax.multi_transform`` over the configured groups.

  ``exclude``: groups updated elsewhere (the row-sparse embedding update);
  the returned optimizer then expects a tree without those parameters.
  """
  transforms = {name: group_transform(name, optim_config[name], total_steps)
                for name in optim_config.groups if name not in exclude}
  labels = lambda params: param_labels(params, optim_config)
  return optax.multi_transform(transforms, labels)


def describe(params, optim_config) -> Mapping[str, list[str]]:
  """Group name -> parameter paths, for logs and tests."""
  out: dict[str, list[str]] = {name: [] for name in optim_config.groups}
  labels = param_labels(params, optim_config)
  for path, lab in jax.tree_util.tree_flatten_with_path(labels)[0]:
    out[lab].append(param_path(path))
  return out
