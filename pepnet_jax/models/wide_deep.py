"""Wide & Deep (Cheng et al., DLRS 2016), multi-task: per task, a linear model
over the ids (wide) plus an MLP over their embeddings (deep), added as logits.

  logit_t = b_t + sum_f w_f[id_f, t] + deep_t(E)

Each id feature owns two tables, ``embed/<f>/deep`` [V, embed_dim] and
``embed/<f>/wide`` [V, T]; both are ordinary tables to the trainer (AdaGrad,
row-sparse, updated with f's ids), which is the point of the model contract
(``models/contract.py``): no table is widened and sliced. The wide part sees
every feature, the domain-side ones (tab) and crosses (``data.crosses``)
included, as logistic regression does; the deep part sees E, the shared
fields, like the DNN baseline. The wide bias is made in ``setup``.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax.numpy as jnp

from pepnet_jax.models import layers
from pepnet_jax.models.registry import register
from pepnet_jax.models.baselines import _Base


class WideDeep(_Base):
  """Wide (per-id, per-task weights) + deep (``bottom`` MLP, then towers)."""
  bottom: Sequence[int] = (256,)
  tower: Sequence[int] = (64,)

  def make_tables(self) -> nn.Module:
    return layers.FeatureEmbeddings(
        self.features, {'deep': self.embed_dim, 'wide': self.num_tasks},
        init_scale={'deep': 0.05, 'wide': 0.0}, row_multiple=self.row_multiple)

  def setup(self):
    super().setup()
    self.wide_bias = self.param('wide_bias', nn.initializers.zeros, (self.num_tasks,))
    self.bottom_mlp = layers.MLP(tuple(self.bottom), layers.activation_fn(self.activation),
                                 self.dtype)
    self.towers = self._towers(self.tower)

  def head(self, rows, inputs, domain):
    """Rows {feature: {'deep', 'wide'}} -> logits [B, T] in float32."""
    wide = jnp.broadcast_to(self.wide_bias, (domain.shape[0], self.num_tasks))
    for f in self.features:
      if f.kind not in layers.table_kinds():
        continue
      w = rows[f.name]['wide'].astype(jnp.float32)
      if f.kind == 'multi':
        mask = (inputs[f.name] > 0).astype(jnp.float32)[..., None]
        w = jnp.sum(w * mask, axis=-2)
      wide = wide + w
    deep_rows = {name: r['deep'] for name, r in rows.items()}
    _, e = self._fields(deep_rows, inputs)
    return wide + self._run_towers(self.towers, self.bottom_mlp(e))


@register('wide_deep')
def _wide_deep(mc, infos, spec, common):
  return WideDeep(bottom=tuple(mc.bottom), tower=tuple(mc.tower), activation=mc.activation,
                  **common)
