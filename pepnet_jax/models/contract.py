"""The model contract: what the trainer needs from a model, and nothing more.

A model is a Flax Linen module built by a factory registered under a name
(``models.register('my_model')``, see ``models/registry.py``). It provides:

``lookup(inputs) -> rows``
    The only method that reads embedding tables. ``inputs`` is the batch's
    ``features`` dict ({feature: int32 ids [B] or [B, L], or float32 [B] for
    dense features}). ``rows`` mirrors the tables: ``rows[f]`` for a table
    ``embed/<f>``, ``rows[f][t]`` for a table ``embed/<f>/<t>``.
``head(rows, inputs, domain) -> outputs``
    Everything after the gather. ``domain`` is int32 [B], the index into
    ``config.data.domains``. By default ``outputs`` are float32 logits [B, T],
    one per task in ``config.data.tasks``.
``__call__(inputs, domain)``
    ``head(lookup(inputs), inputs, domain)``.

Optional, for models whose outputs are not T independent logits (ESMM's
pCTR x pCVR, a model with learned task weights):

``loss(outputs, labels, label_mask, weight, task_weights) -> (loss, per_task)``
    ``labels``/``label_mask`` float32 [B, T], ``weight`` float32 [B] (0 for
    padding rows), ``task_weights`` float32 [T]; returns a scalar and [T]
    (per-task losses, logged and checked for non-finite values). Default:
    ``multitask_loss`` on logits. It runs inside ``apply``, so it may use
    parameters.
``probabilities(outputs) -> [B, T]``
    What evaluation, metrics and predict mode score. Default: sigmoid.

Tables. Every parameter under ``embed/`` is a table [rows, width] indexed by
the ids of the feature its path names: ``embed/<feature>`` or
``embed/<feature>/<table>``, any number of tables per feature. The optimizer
groups find tables by regex on the path (``config.optim.embedding.regex``,
'^embed/'); the group named by ``config.optim.sparse_group`` is updated
row-sparsely (``sparse.adagrad_rows``) with that feature's ids, which is why
``lookup`` must return every table's gathered rows. Everything else
(parameters made in ``setup`` or ``@compact`` methods, under any name but
``embed``) is dense and reaches the optimizer's other groups.

Dropout: ``layers.dropout(module, x, rate)`` is active only when ``apply``
gets a 'dropout' rng, which the train step passes and evaluation does not.
"""

from __future__ import annotations

from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

from pepnet_jax.models.layers import EMBED_SCOPE

Array = jax.Array


def multitask_loss(logits, labels, label_mask, weight, task_weights):
  """Sum over tasks of weighted mean binary cross-entropy.

  A row counts for a task when its label is present (mask 1) and the row is
  real (weight 1); each task's mean is over its own counted rows.
  """
  mask = label_mask * weight[:, None]
  bce = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), labels)
  per_task = jnp.sum(bce * mask, axis=0) / jnp.maximum(jnp.sum(mask, axis=0), 1.0)
  return jnp.sum(per_task * task_weights), per_task


def has_method(model, name: str) -> bool:
  return callable(getattr(type(model), name, None))


def loss(module, outputs, labels, label_mask, weight, task_weights):
  """The model's own ``loss`` when it has one, else ``multitask_loss``; call
  inside ``apply`` (``module`` is bound)."""
  if has_method(module, 'loss'):
    return module.loss(outputs, labels, label_mask, weight, task_weights)
  return multitask_loss(outputs, labels, label_mask, weight, task_weights)


def probabilities(module, outputs):
  """The model's own ``probabilities`` when it has one, else sigmoid(logits)."""
  if has_method(module, 'probabilities'):
    return module.probabilities(outputs)
  return jax.nn.sigmoid(outputs.astype(jnp.float32))


# ---- tables: paths under embed/ and the ids that index them ------------------


def flat(tree) -> dict[tuple, Any]:
  """{path tuple: leaf} of a nested dict (empty subtrees dropped)."""
  return flax.traverse_util.flatten_dict(dict(tree)) if tree else {}


def nest(flat_tree: dict[tuple, Any]) -> dict:
  return flax.traverse_util.unflatten_dict(flat_tree) if flat_tree else {}


def merge(*trees) -> dict:
  """Nested dicts merged leaf by leaf; later trees win."""
  out = {}
  for t in trees:
    out.update(flat(t))
  return nest(out)


def table_feature(path: tuple) -> str:
  """The feature whose ids index the table at ``path`` ('embed', feature, ...)."""
  return path[1]


def check_tables(params, features: dict) -> None:
  """ValueError naming a table that is not a 2-D array of a known feature, or whose name
  holds '/' (paths are joined with '/' for the optimizer's regexes)."""
  for path, leaf in flat(params.get(EMBED_SCOPE, {})).items():
    slashed = [k for k in path if '/' in str(k)]
    if slashed:  # joined with '/', it would read as a path of the allowed form
      raise ValueError(
          f'model table under {EMBED_SCOPE}/ named {slashed[0]!r} (keys {path!r}): a name may '
          f'not hold "/"; tables live at {EMBED_SCOPE}/<feature> or '
          f'{EMBED_SCOPE}/<feature>/<table>, one nested module or parameter per level')
    name = '/'.join((EMBED_SCOPE,) + path)
    if path[0] not in features:
      raise ValueError(
          f'model table {name!r}: tables live at {EMBED_SCOPE}/<feature> or '
          f'{EMBED_SCOPE}/<feature>/<table>, but {path[0]!r} is not a feature of the batch '
          f'({sorted(features)})')
    if getattr(leaf, 'ndim', 0) != 2:
      raise ValueError(f'model table {name!r} has shape {getattr(leaf, "shape", None)}; a '
                       'table must be 2-D [rows, width]')


def rows_at(rows: dict, table_path: tuple):
  """The gathered rows of the table at ('embed', feature[, table])."""
  out = rows
  for k in table_path[1:]:
    if not isinstance(out, dict) or k not in out:
      raise ValueError(f'lookup() returned no rows for table {"/".join(table_path)!r}; it must '
                       'return rows for every table it owns (see models/contract.py)')
    out = out[k]
  return out
