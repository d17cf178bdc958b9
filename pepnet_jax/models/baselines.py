"""Multi-task and multi-domain baselines PEPNet is compared against.

Every model follows PEPNet's contract (see ``pepnet.py``): tables under
``embed/<feature>``, ``lookup`` is the only method reading them, ``head``
maps gathered rows to float32 logits [B, T], and the input E is the
concatenation of the pooled fields of the ``shared=True`` features.

* ``dnn`` / ``shared_bottom``: one shared MLP, then one tower per task.
* ``single_task``: T independent DNNs sharing only the embeddings.
* ``mmoe``: Multi-gate Mixture-of-Experts (Ma et al., KDD 2018).
* ``ple``: Progressive Layered Extraction (Tang et al., RecSys 2020);
  ``ple_levels=1`` is CGC.
* ``star``: STAR (Sheng et al., CIKM 2021), adapted to T tasks; see ``STAR``.

Groups of identical-shape dense layers (the T towers, the K experts) are
stored stacked as ``layers.TaskDense`` kernels [N, in, out] and run as one
batched einsum rather than N small matmuls.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from pepnet_jax.models import layers
from pepnet_jax.models.registry import register

Array = jax.Array


class _Base(nn.Module):
  """Shared embedding/pooling and the lookup/head split every model needs."""
  features: Sequence[Any]
  num_tasks: int
  num_domains: int = 1
  embed_dim: int = 16
  activation: str = 'relu'
  dtype: Any = jnp.float32
  row_multiple: int = 1
  dropout: float = 0.0  # on each tower layer's output but the logit (training only)

  def setup(self):
    self.embed = self.make_tables()
    self.pool = layers.FieldPooling(self.features, self.embed_dim)

  def make_tables(self) -> nn.Module:
    """The embedding tables; a subclass overrides this alone to change their
    widths or add tables per feature (``FeatureEmbeddings(dim={...})``)."""
    return layers.FeatureEmbeddings(self.features, self.embed_dim,
                                    row_multiple=self.row_multiple)

  def __call__(self, inputs, domain):
    return self.head(self.lookup(inputs), inputs, domain)

  def lookup(self, inputs):
    """Gathers embedding rows; the only method that reads the tables."""
    return self.embed(inputs)

  def _fields(self, rows, inputs):
    """(pooled fields by name, E = concat of the shared fields)."""
    fields = self.pool(rows, inputs)
    e = jnp.concatenate([fields[f.name] for f in self.features if f.shared], -1)
    return fields, e

  def _act(self, x):
    return layers.activation_fn(self.activation)(x)

  def _towers(self, widths):
    """Per-task tower layers (hidden widths, then the width-1 logit layer)."""
    return [layers.TaskDense(self.num_tasks, w, self.dtype) for w in list(widths) + [1]]

  def _run_towers(self, towers, h):
    """h [B, in] (shared by tasks) or [B, T, in] -> logits [B, T] float32."""
    for i, dense in enumerate(towers):
      h = dense(h)
      if i < len(towers) - 1:
        h = layers.dropout(self, self._act(h), self.dropout)
    return h[..., 0].astype(jnp.float32)


class ExpertBank(nn.Module):
  """N expert MLPs of identical widths, run together as stacked TaskDense.

  Input [B, in] (every expert sees the same input) or [B, N, in] (one input
  per expert); output [B, N, widths[-1]]. Expert n's weights are the slice n
  of each layer's kernel, so experts share nothing.
  """
  num: int
  widths: Sequence[int]
  activation: str = 'relu'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    act = layers.activation_fn(self.activation)
    for i, w in enumerate(self.widths):
      x = act(layers.TaskDense(self.num, w, self.dtype, name=f'dense_{i}')(x))
    return x


def _softmax(logits: Array) -> Array:
  """Gate softmax in float32 so bfloat16 towers still give weights summing to 1."""
  return jax.nn.softmax(logits.astype(jnp.float32), axis=-1)


class SharedBottom(_Base):
  """Shared MLP ``bottom`` over E, then per-task towers ``tower`` + logit."""
  bottom: Sequence[int] = (256,)
  tower: Sequence[int] = (64,)

  def setup(self):
    super().setup()
    self.bottom_mlp = layers.MLP(tuple(self.bottom), layers.activation_fn(self.activation),
                                 self.dtype)
    self.towers = self._towers(self.tower)

  def head(self, rows, inputs, domain):
    """Rows (from ``lookup``) -> logits [B, T] in float32."""
    _, e = self._fields(rows, inputs)
    return self._run_towers(self.towers, self.bottom_mlp(e))


class SingleTask(_Base):
  """T independent DNNs (``bottom`` then ``tower`` widths, then a logit).

  Only the embeddings are shared, as when single-task models are trained
  jointly; each layer is a TaskDense so task t's DNN is the kernel slice t.
  """
  bottom: Sequence[int] = (256,)
  tower: Sequence[int] = (64,)

  def setup(self):
    super().setup()
    self.towers = self._towers(tuple(self.bottom) + tuple(self.tower))

  def head(self, rows, inputs, domain):
    """Rows (from ``lookup``) -> logits [B, T] in float32."""
    _, e = self._fields(rows, inputs)
    return self._run_towers(self.towers, e)


class MMoE(_Base):
  """``num_experts`` expert MLPs (widths ``bottom``) mixed per task.

  Task t's tower input is sum_k g_t(E)_k * expert_k(E), with g_t a softmax
  gate over experts computed from E; the gate weights are sown as
  ``intermediates/gate_weights`` [B, T, K].
  """
  bottom: Sequence[int] = (256,)
  tower: Sequence[int] = (64,)
  num_experts: int = 4

  def setup(self):
    super().setup()
    if self.num_experts < 1 or not self.bottom:
      raise ValueError('mmoe needs config.model.num_experts >= 1 and a non-empty '
                       f'config.model.bottom, got {self.num_experts} and {tuple(self.bottom)}')
    self.experts = ExpertBank(self.num_experts, tuple(self.bottom), self.activation, self.dtype)
    self.gates = layers.TaskDense(self.num_tasks, self.num_experts, self.dtype)
    self.towers = self._towers(self.tower)

  def head(self, rows, inputs, domain):
    """Rows (from ``lookup``) -> logits [B, T] in float32."""
    _, e = self._fields(rows, inputs)
    experts = self.experts(e)                       # [B, K, d]
    g = _softmax(self.gates(e))                     # [B, T, K]
    self.sow('intermediates', 'gate_weights', g)
    h = jnp.einsum('btk,bkd->btd', g.astype(experts.dtype), experts)
    return self._run_towers(self.towers, h)


class PLELevel(nn.Module):
  """One extraction layer (CGC): shared and task-specific experts, gates.

  Task t's gate mixes its own ``specific`` experts and the ``shared``
  experts; unless ``final``, a shared gate mixes every expert into the next
  level's shared input. Gate weights are sown as ``task_gate_weights`` [B, T, S+K]
  (own experts first) and ``shared_gate_weights`` [B, T*S+K].
  """
  num_tasks: int
  shared: int
  specific: int
  widths: Sequence[int]
  final: bool
  activation: str = 'relu'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x_tasks: Array, x_shared: Array):
    """x_tasks [B, in] or [B, T, in], x_shared [B, in] -> ([B, T, d], [B, d] | None)."""
    t, s, k = self.num_tasks, self.specific, self.shared
    shared = ExpertBank(k, tuple(self.widths), self.activation, self.dtype,
                        name='shared_experts')(x_shared)                 # [B, K, d]
    parts = []
    gate_tasks = layers.TaskDense(t, s + k, self.dtype, name='task_gates')(x_tasks)
    g = _softmax(gate_tasks)                                              # [B, T, S+K]
    self.sow('intermediates', 'task_gate_weights', g)
    g = g.astype(shared.dtype)
    out = jnp.einsum('btk,bkd->btd', g[..., s:], shared)
    if s:
      # Expert t*S+j belongs to task t and reads task t's input.
      x_spec = x_tasks if x_tasks.ndim == 2 else jnp.repeat(x_tasks, s, axis=1)
      specific = ExpertBank(t * s, tuple(self.widths), self.activation, self.dtype,
                            name='specific_experts')(x_spec)            # [B, T*S, d]
      specific = specific.reshape(specific.shape[0], t, s, specific.shape[-1])
      out = out + jnp.einsum('bts,btsd->btd', g[..., :s], specific)
      parts.append(specific.reshape(specific.shape[0], t * s, -1))
    if self.final:
      return out, None
    everything = jnp.concatenate(parts + [shared], axis=1)               # [B, T*S+K, d]
    gs = _softmax(nn.Dense(t * s + k, dtype=self.dtype, name='shared_gate')(x_shared))
    self.sow('intermediates', 'shared_gate_weights', gs)
    return out, jnp.einsum('be,bed->bd', gs.astype(everything.dtype), everything)


class PLE(_Base):
  """``ple_levels`` extraction layers then per-task towers (PLE; 1 level = CGC).

  Each level has ``num_experts`` shared and ``specific_experts`` per-task
  experts, all MLPs of widths ``bottom``; task inputs of a level are the
  previous level's task outputs, the shared input its shared-gate output.
  """
  bottom: Sequence[int] = (256,)
  tower: Sequence[int] = (64,)
  num_experts: int = 4
  specific_experts: int = 1
  ple_levels: int = 2

  def setup(self):
    super().setup()
    if (self.ple_levels < 1 or self.num_experts < 1 or self.specific_experts < 0
        or not self.bottom):
      raise ValueError(
          'ple needs config.model.ple_levels >= 1, num_experts >= 1, specific_experts >= 0 '
          f'and a non-empty bottom, got {self.ple_levels}, {self.num_experts}, '
          f'{self.specific_experts}, {tuple(self.bottom)}')
    self.levels = [
        PLELevel(self.num_tasks, self.num_experts, self.specific_experts, tuple(self.bottom),
                 final=l == self.ple_levels - 1, activation=self.activation, dtype=self.dtype)
        for l in range(self.ple_levels)]
    self.towers = self._towers(self.tower)

  def head(self, rows, inputs, domain):
    """Rows (from ``lookup``) -> logits [B, T] in float32."""
    _, e = self._fields(rows, inputs)
    x_tasks, x_shared = e, e
    for level in self.levels:
      x_tasks, x_shared = level(x_tasks, x_shared)
    return self._run_towers(self.towers, x_tasks)


class PartitionedNorm(nn.Module):
  """STAR's partitioned normalization: shared and per-domain scale and shift.

  ``y = (gamma * gamma_p) * x_hat + (beta + beta_p)`` for the row's domain p.
  Adaptation: x_hat standardizes each row over its features (as LayerNorm
  does) instead of with batch statistics, because the trainer keeps no
  mutable state (no moving averages) and eval must not depend on the batch.
  """
  num_domains: int
  eps: float = 1e-5

  @nn.compact
  def __call__(self, x: Array, domain: Array) -> Array:
    n = x.shape[-1]
    gamma = self.param('scale', nn.initializers.ones, (n,))
    beta = self.param('bias', nn.initializers.zeros, (n,))
    gamma_p = self.param('domain_scale', nn.initializers.ones, (self.num_domains, n))
    beta_p = self.param('domain_bias', nn.initializers.zeros, (self.num_domains, n))
    x = x.astype(jnp.float32)
    mean = jnp.mean(x, -1, keepdims=True)
    var = jnp.var(x, -1, keepdims=True)
    x_hat = (x - mean) * jax.lax.rsqrt(var + self.eps)
    return gamma * gamma_p[domain] * x_hat + beta + beta_p[domain]


class StarDense(nn.Module):
  """Star-topology FC: domain p's kernel is W * W_p (element-wise), bias b + b_p.

  W_p starts at ones and b_p at zeros so that every domain starts as the
  shared layer. All D domain kernels are applied and each row keeps its own
  domain's output: D times the flops of one Dense, cheap for few domains,
  and no [B, in, out] gathered kernel.
  """
  num_domains: int
  out: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array, domain: Array) -> Array:
    d_in = x.shape[-1]
    w = self.param('shared_kernel', nn.initializers.lecun_normal(), (d_in, self.out))
    b = self.param('shared_bias', nn.initializers.zeros, (self.out,))
    w_p = self.param('domain_kernel', nn.initializers.ones, (self.num_domains, d_in, self.out))
    b_p = self.param('domain_bias', nn.initializers.zeros, (self.num_domains, self.out))
    kernel = (w[None] * w_p).astype(self.dtype)
    y = jnp.einsum('bi,pio->bpo', x.astype(self.dtype), kernel)
    y = jnp.take_along_axis(y, domain[:, None, None], axis=1)[:, 0]
    return y + (b + b_p[domain]).astype(self.dtype)


class STAR(_Base):
  """STAR: one star-topology network serving every domain, adapted to T tasks.

  E -> partitioned normalization -> StarDense layers of widths ``tower``
  (activation after each) -> a TaskDense giving one logit per task (the
  paper has one task; its final star layer is replaced by this shared
  multi-task head). An auxiliary network, a small MLP on the domain
  features' embeddings (``domain_inputs``; the one-hot of the ``domain``
  index if there are none), adds its own per-task logit, sown as
  ``intermediates/aux_logits``. Domain selection uses the ``domain`` index.
  """
  tower: Sequence[int] = (256, 128, 64)
  domain_inputs: Sequence[str] = ()
  aux_hidden: int = 32

  def setup(self):
    super().setup()
    self.norm = PartitionedNorm(self.num_domains)
    self.star = [StarDense(self.num_domains, w, self.dtype) for w in self.tower]
    self.out = layers.TaskDense(self.num_tasks, 1, self.dtype)
    self.aux = layers.MLP((self.aux_hidden,), layers.activation_fn(self.activation), self.dtype)
    self.aux_out = nn.Dense(self.num_tasks, dtype=self.dtype)

  def head(self, rows, inputs, domain):
    """Rows (from ``lookup``) -> logits [B, T] in float32."""
    fields, e = self._fields(rows, inputs)
    h = self.norm(e, domain)
    for dense in self.star:
      h = self._act(dense(h, domain))
    main = self.out(h)[..., 0].astype(jnp.float32)
    if self.domain_inputs:
      a = jnp.concatenate([fields[n] for n in self.domain_inputs], -1)
    else:
      a = jax.nn.one_hot(domain, self.num_domains)
    aux = self.aux_out(self.aux(a)).astype(jnp.float32)
    self.sow('intermediates', 'aux_logits', aux)
    return main + aux


# ---- registry builders: (model config, feature infos, data spec, common kwargs) ----

@register('shared_bottom')
@register('dnn')
def _shared_bottom(mc, infos, spec, common):
  return SharedBottom(bottom=tuple(mc.bottom), tower=tuple(mc.tower),
                      activation=mc.activation, **common)


@register('single_task')
def _single_task(mc, infos, spec, common):
  return SingleTask(bottom=tuple(mc.bottom), tower=tuple(mc.tower),
                    activation=mc.activation, **common)


@register('mmoe')
def _mmoe(mc, infos, spec, common):
  return MMoE(bottom=tuple(mc.bottom), tower=tuple(mc.tower), num_experts=mc.num_experts,
              activation=mc.activation, **common)


@register('ple')
def _ple(mc, infos, spec, common):
  return PLE(bottom=tuple(mc.bottom), tower=tuple(mc.tower), num_experts=mc.num_experts,
             specific_experts=mc.specific_experts, ple_levels=mc.ple_levels,
             activation=mc.activation, **common)


@register('star')
def _star(mc, infos, spec, common):
  return STAR(tower=tuple(mc.tower), domain_inputs=tuple(spec.groups.get('domain', ())),
              aux_hidden=mc.get('star_aux_hidden', 32), activation=mc.activation, **common)
