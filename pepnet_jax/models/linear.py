"""Logistic regression on the one-hot features: the floor every model must beat.

  logit_t = bias_t + sum_f w_f[id_f, t] + sum_d v_d[t] * x_d

One weight per (id, task) for each id feature f, so the tables are ordinary
``embed/<feature>`` tables of width T (num_tasks), not embed_dim: the trainer
gathers them in ``lookup`` and updates them row-sparsely like any other
model's embeddings. Every feature enters, the domain-side ones (shared=False,
e.g. tab) included: LR has no EPNet to route them. Interactions exist only
as declared crosses (``kind='cross'`` in config.data.features, e.g.
tab x video_id), which reach the model as plain categoricals.

A multi-valued feature adds the weights of its ids (``multi_pool='sum'``,
the usual multi-hot LR) or their mean (``'mean'``, the pooling the deep
models use); dense features, standardized by the data layer, get one weight
per task; those and the bias live in ``linear/`` (the dense optimizer group).
Weights and bias start at zero; the problem is convex, so nothing is gained
by a random start. Compute is float32 whatever ``dtype`` says: a sum of
T-wide rows is not worth a lower precision.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pepnet_jax.models import layers
from pepnet_jax.models.registry import register

Array = jax.Array
POOLS = ('sum', 'mean')


class DenseTerms(nn.Module):
  """bias [T] plus one weight per dense feature and task, ``dense_weights`` [n, T].

  A submodule, so that ``lookup`` (run with the tables alone) never asks for them.
  """
  num_tasks: int

  @nn.compact
  def __call__(self, x):
    """x: float32 [B, n] dense values, or None -> [T] or [B, T]."""
    out = self.param('bias', nn.initializers.zeros, (self.num_tasks,))
    if x is not None:
      w = self.param('dense_weights', nn.initializers.zeros, (x.shape[-1], self.num_tasks))
      out = out + x @ w
    return out


class LogisticRegression(nn.Module):
  """Per-task LR over every feature; same lookup/head contract as the zoo."""
  features: Sequence[Any]
  num_tasks: int
  num_domains: int = 1
  multi_pool: str = 'sum'
  dtype: Any = jnp.float32
  row_multiple: int = 1

  def setup(self):
    if self.multi_pool not in POOLS:
      raise ValueError(f'config.model.lr_multi_pool={self.multi_pool!r} is not one of {POOLS}')
    self.embed = layers.FeatureEmbeddings(self.features, self.num_tasks, init_scale=0.0,
                                         row_multiple=self.row_multiple)
    self.linear = DenseTerms(self.num_tasks)

  def __call__(self, inputs, domain):
    return self.head(self.lookup(inputs), inputs, domain)

  def lookup(self, inputs):
    """Gathers the weight rows [B, T] / [B, L, T]; the only method reading tables."""
    return self.embed(inputs)

  def head(self, rows, inputs, domain):
    """Rows (from ``lookup``) -> logits [B, T] in float32. ``domain`` only
    gives the batch size: the domain reaches LR as its feature (tab)."""
    dense = [inputs[f.name].astype(jnp.float32) for f in self.features if f.kind == 'dense']
    logit = self.linear(jnp.stack(dense, -1) if dense else None)
    for f in self.features:
      if f.kind == 'multi':
        mask = (inputs[f.name] > 0).astype(jnp.float32)[..., None]
        w = jnp.sum(rows[f.name].astype(jnp.float32) * mask, axis=-2)
        if self.multi_pool == 'mean':
          w = w / jnp.maximum(jnp.sum(mask, axis=-2), 1.0)
        logit = logit + w
      elif f.kind in layers.table_kinds():
        logit = logit + rows[f.name].astype(jnp.float32)
    return jnp.broadcast_to(logit, (domain.shape[0], self.num_tasks))


@register('lr')
def _lr(mc, infos, spec, common):
  return LogisticRegression(features=common['features'], num_tasks=common['num_tasks'],
                            num_domains=common['num_domains'],
                            multi_pool=mc.get('lr_multi_pool', 'sum'), dtype=common['dtype'],
                            row_multiple=common['row_multiple'])
