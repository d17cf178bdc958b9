"""PEPNet: Parameter and Embedding Personalized Network (Chang et al., KDD 2023).

Notation follows the paper (arXiv 2302.01115, section 3):

* E: the shared embedding, the concatenation of every shared field's vector.
* EPNet: ``delta_domain = U_ep(E(F_d) (+) sg(E))``; ``O_ep = delta_domain * E``.
* PPNet: ``O_prior = E(F_u) (+) E(F_i) (+) E(F_a)``; for each tower layer l,
  ``delta_task_l = U_pp_l(O_prior (+) sg(O_ep))`` split into T task gates;
  ``O_l = delta_task_l * H_l`` and ``H_{l+1} = f(O_l W_l + b_l)``, the tower
  input ``H_0 = O_ep`` included; the last layer gives one logit per task.

``U`` is the Gate NU (``layers.GateNU``), ``sg`` stop-gradient, ``(+)``
concatenation. Switches reproduce the paper's ablations.

Not in the paper, off by default: ``task_transfer`` adds to each task's logit a
learned combination of the other tasks' logits, ``z_t + sum_{s != t} W[s, t] sg(z_s)``
(``W`` starts at 0), so a rare action borrows what the dense ones learned about the row
(see ``task_transfer_logits``).
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pepnet_jax.models import layers
from pepnet_jax.models.registry import register

Array = jax.Array


class PEPNet(nn.Module):
  """Embeddings -> EPNet -> PPNet-gated task towers -> T logits.

  Attributes:
    features: FeatureInfo tuple (name, kind, vocab_size, max_len, shared).
    domain_inputs / prior_inputs: feature names feeding the EPNet gate and
      the PPNet gate (user, item and author priors, in that order).
    num_tasks, num_domains: output tasks; domains (for per-domain towers).
    embed_dim: width of every field's vector.
    tower: hidden widths of each task tower; a final width-1 layer follows.
    epnet_hidden, ppnet_hidden: Gate NU hidden widths (0 = the gate's
      output width for EPNet, the prior input width for PPNet). The paper
      does not fix them; 128 and 64 are the config defaults.
    gamma: gate scale; gate outputs lie in (0, gamma).
    use_epnet, use_ppnet: off = plain path with no gate parameters.
    gate_stop_gradient: the paper's sg() on E and O_ep at the gate inputs.
    task_gates: 'split' (paper: one Gate NU per layer, output split over
      tasks) or 'separate' (one Gate NU per task per layer).
    domain_towers: one output layer per domain (ablation).
    task_transfer: add a learned mix of the other tasks' stop-gradient logits to
      each task's logit (an extension, not in the paper).
  """
  features: Sequence[Any]
  domain_inputs: Sequence[str]
  prior_inputs: Sequence[str]
  num_tasks: int
  num_domains: int = 1
  embed_dim: int = 16
  tower: Sequence[int] = (256, 128, 64)
  epnet_hidden: int = 128
  ppnet_hidden: int = 64
  gamma: float = 2.0
  use_epnet: bool = True
  use_ppnet: bool = True
  gate_stop_gradient: bool = True
  task_gates: str = 'split'
  domain_towers: bool = False
  activation: str = 'relu'
  dtype: Any = jnp.float32
  row_multiple: int = 1
  dropout: float = 0.0  # on each tower layer's output but the logit (training only)
  task_transfer: bool = False

  def make_tables(self) -> nn.Module:
    """The embedding tables (one [vocab, embed_dim] table per id feature)."""
    return layers.FeatureEmbeddings(self.features, self.embed_dim,
                                    row_multiple=self.row_multiple)

  def setup(self):
    if self.task_gates not in ('split', 'separate'):
      raise ValueError(f"config.model.task_gates={self.task_gates!r}: use 'split' or 'separate'")
    self.embed = self.make_tables()
    self.pool = layers.FieldPooling(self.features, self.embed_dim)
    shared = [f.name for f in self.features if f.shared]
    e_dim = len(shared) * self.embed_dim
    if self.use_epnet:
      self.epnet_gate = layers.GateNU(
          self.epnet_hidden or e_dim, e_dim, self.gamma, self.dtype)
    widths = [e_dim] + list(self.tower)  # input width of each gated layer
    if self.use_ppnet:
      hidden = self.ppnet_hidden or len(self.prior_inputs) * self.embed_dim
      if self.task_gates == 'split':
        self.ppnet_gates = [
            layers.SplitGateNU(hidden, gamma=self.gamma, dtype=self.dtype,
                               parts=self.num_tasks, width=w)
            for w in widths]
      else:
        self.ppnet_gates = [
            [layers.GateNU(hidden, w, self.gamma, self.dtype) for _ in range(self.num_tasks)]
            for w in widths]
    out = self.num_domains if self.domain_towers else 1
    self.towers = [layers.TaskDense(self.num_tasks, w, self.dtype, task_major=True)
                   for w in list(self.tower) + [out]]
    if self.task_transfer:
      self.transfer = self.param('task_transfer', nn.initializers.zeros,
                                 (self.num_tasks, self.num_tasks), jnp.float32)

  def __call__(self, inputs, domain):
    return self.head(self.lookup(inputs), inputs, domain)

  def lookup(self, inputs):
    """Gathers embedding rows; the only method that reads the tables."""
    return self.embed(inputs)

  def _sg(self, x):
    return jax.lax.stop_gradient(x) if self.gate_stop_gradient else x

  def head(self, rows, inputs, domain):
    """Rows (from ``lookup``) -> logits [B, T] in float32."""
    fields = self.pool(rows, inputs)
    e = jnp.concatenate([fields[f.name] for f in self.features if f.shared], -1)
    # Perturbation points (no-ops unless a 'perturbations' collection is passed)
    # expose dL/dE, dL/dO_ep and dL/dH_0 to tests of the stop-gradient paths.
    e = self.perturb('E', e)
    if self.use_epnet:
      dom = [fields[n] for n in self.domain_inputs]
      delta_domain = self.epnet_gate(dom + [self._sg(e)])
      self.sow('intermediates', 'epnet_gate_value', delta_domain)
      o_ep = delta_domain * e
    else:
      o_ep = e
    o_ep = self.perturb('O_ep', o_ep)
    if self.use_ppnet:
      prior = [fields[n] for n in self.prior_inputs]
      gate_in = prior + [self._sg(o_ep)]  # parts of the gate input (layers.PartsDense)
    act = layers.activation_fn(self.activation)
    # Tower activations are task-major, [T, B, width] (see layers.TaskDense);
    # H_0 is [B, in], shared by all tasks until the first gate.
    h = self.perturb('H_0', o_ep)
    for l, dense in enumerate(self.towers):
      if self.use_ppnet:
        if self.task_gates == 'split':
          gate = self.ppnet_gates[l](gate_in)  # [T, B, width]
        else:
          gate = jnp.stack([g(gate_in) for g in self.ppnet_gates[l]], axis=0)
        self.sow('intermediates', f'ppnet_gate_value_{l}', gate)
        if h.ndim == 2:  # the tower input, shared by all tasks
          h = layers.broadcast_tasks(h, self.num_tasks)
        h = gate.astype(h.dtype) * h
      h = dense(h)  # [T, B, width]
      if l < len(self.towers) - 1:
        h = layers.dropout(self, act(h), self.dropout)
    h = h.astype(jnp.float32)
    if self.domain_towers:
      idx = jnp.broadcast_to(domain[None, :, None], (h.shape[0], h.shape[1], 1))
      h = jnp.take_along_axis(h, idx, axis=-1)
    logits = h[..., 0].T  # [B, T]
    if self.task_transfer:
      logits = task_transfer_logits(self.transfer, logits)
    return logits


def task_transfer_logits(w: Array, logits: Array) -> Array:
  """``z_t + sum_{s != t} W[s, t] sg(z_s)``: each task's logit plus a learned mix of the
  others', ``W`` [T, T] (param ``task_transfer``, initialised at 0; its diagonal is unused).

  Why: the rare actions (follow, comment, forward, hate: a few hundred to a few thousand
  positives in KuaiRand-Pure's logs) share most of their signal with click and long view,
  which have hundreds of thousands; a separate tower per task must find it again from its own
  few positives and overfits first. The stop-gradient keeps the rare tasks' losses out of the
  dense tasks' towers, as the paper's sg() keeps the gates out of E. Measured on generated
  data of KuaiRand-Pure's size, it gains nothing that validation sees (README, "Quality
  against a floor and a ceiling"), so no config turns it on.
  """
  t = logits.shape[-1]
  w = w * (1.0 - jnp.eye(t, dtype=w.dtype))
  return logits + jax.lax.stop_gradient(logits) @ w


@register('pepnet')
def _pepnet(mc, infos, spec, common):
  g = spec.groups
  priors = tuple(g.get('user', ())) + tuple(g.get('item', ())) + tuple(g.get('author', ()))
  return PEPNet(
      domain_inputs=tuple(g.get('domain', ())), prior_inputs=priors,
      tower=tuple(mc.tower), epnet_hidden=mc.epnet_hidden, ppnet_hidden=mc.ppnet_hidden,
      gamma=mc.gamma, use_epnet=mc.use_epnet, use_ppnet=mc.use_ppnet,
      gate_stop_gradient=mc.gate_stop_gradient, task_gates=mc.task_gates,
      domain_towers=mc.domain_towers, activation=mc.activation,
      task_transfer=bool(mc.get('task_transfer', False)), **common)
