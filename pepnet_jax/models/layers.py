"""Building blocks shared by PEPNet and the baselines.

Embedding tables are kept apart from everything else: a model is
``embed`` (ids -> gathered rows, the only place tables are read) followed by
``head`` (rows -> logits). The split lets the trainer differentiate with
respect to the gathered rows instead of the whole tables, which is what makes
row-sparse AdaGrad updates possible (see ``pepnet_jax/training/sparse.py``), and lets
tables be sharded by rows without the rest of the model noticing.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

Array = jax.Array

# Where every model keeps its tables; the optimizer's embedding group and the
# row-sparse update both find them by this name.
EMBED_SCOPE = 'embed'


def table_kinds() -> tuple[str, ...]:
  """Feature kinds that own an embedding table."""
  return ('categorical', 'bucket', 'multi')


def batched_lecun_normal():
  """LeCun normal init for kernels stacked as [T, in, out] (one per task)."""
  return nn.initializers.variance_scaling(
      1.0, 'fan_in', 'truncated_normal', in_axis=-2, out_axis=-1, batch_axis=(0,))


class FeatureEmbeddings(nn.Module):
  """The embedding tables of every id feature, gathered by that feature's ids.

  ``dim`` an int: one table per feature, ``embed/<feature>`` [vocab, dim], rows
  returned as ``rows[feature]``. ``dim`` a mapping {table: width}: that many
  tables per feature, ``embed/<feature>/<table>``, rows as
  ``rows[feature][table]`` (e.g. a deep embedding and a wide weight per id).
  Rows are [B, width] for single ids and [B, L, width] for multi-valued
  features; pooling happens in ``FieldPooling`` so that gradients can be
  taken with respect to these rows (the row-sparse update needs them).
  """
  features: Sequence[Any]
  dim: int | Mapping[str, int]
  init_scale: float | Mapping[str, float] = 0.05
  row_multiple: int = 1  # rows rounded up so tables split evenly over devices

  @nn.compact
  def __call__(self, ids: Mapping[str, Array]) -> dict[str, Any]:
    rows = {}
    for f in self.features:
      if f.kind not in table_kinds():
        continue
      n = -(-f.vocab_size // self.row_multiple) * self.row_multiple
      if isinstance(self.dim, Mapping):
        rows[f.name] = _FeatureTables(self.dim, self.init_scale, n, name=f.name)(ids[f.name])
      else:
        table = self.param(f.name, symmetric_uniform(_scale(self.init_scale, None)),
                           (n, self.dim))
        rows[f.name] = jnp.take(table, ids[f.name], axis=0)
    return rows


def _scale(init_scale, table):
  if isinstance(init_scale, Mapping):
    return init_scale.get(table, 0.05)
  return init_scale


class _FeatureTables(nn.Module):
  """The tables {table: width} of one feature, all indexed by its ids."""
  dims: Mapping[str, int]
  init_scale: float | Mapping[str, float]
  rows: int

  @nn.compact
  def __call__(self, ids: Array) -> dict[str, Array]:
    out = {}
    for table, width in self.dims.items():
      t = self.param(table, symmetric_uniform(_scale(self.init_scale, table)),
                     (self.rows, int(width)))
      out[table] = jnp.take(t, ids, axis=0)
    return out


def dropout(module, x: Array, rate: float) -> Array:
  """Inverted dropout inside a setup-style module's method: active only when
  the caller passes a 'dropout' rng (the train step does; evaluation and
  predict do not), so no method needs a train/eval flag.

  The mask is ``dropout_mask``'s counter hash, not ``jax.random.bernoulli``:
  on XLA:CPU threefry cost about 11 ns an element, 13% of a KuaiRand training
  step's operations (docs/performance.md); the hash fuses into the activation's loop.
  """
  if not rate or not module.has_rng('dropout'):
    return x
  keep = 1.0 - rate
  mask = dropout_mask(module.make_rng('dropout'), x.shape, keep)
  return jnp.where(mask, x / keep, 0).astype(x.dtype)


def _mix32(h: Array) -> Array:
  """A 32-bit integer finaliser (xor-shift-multiply; every input bit reaches every
  output bit): the constants of the 'lowbias32' hash."""
  h = h ^ (h >> 16)
  h = h * jnp.uint32(0x7FEB352D)
  h = h ^ (h >> 15)
  h = h * jnp.uint32(0x846CA68B)
  return h ^ (h >> 16)


def dropout_mask(key, shape, keep: float) -> Array:
  """Bernoulli(keep) booleans of ``shape``: a hash of each element's flat index and
  two 32-bit words drawn from ``key``, kept where it falls below keep * 2^32.

  A pure function of (key, index): the same mask on every backend and under any
  sharding (the index is the global one), so resumed and multi-device runs draw what
  a single device does. Elements beyond 2^32 would repeat; tensors are far smaller.
  """
  words = jax.random.bits(key, (2,), jnp.uint32)
  idx = jnp.zeros(shape, jnp.uint32)
  stride = 1
  for d in reversed(range(len(shape))):
    idx = idx + jax.lax.broadcasted_iota(jnp.uint32, shape, d) * jnp.uint32(stride & 0xFFFFFFFF)
    stride *= shape[d]
  h = _mix32(idx * jnp.uint32(0x9E3779B9) + words[0])
  h = _mix32(h ^ words[1])
  threshold = min(int(round(keep * 2.0**32)), 2**32 - 1)
  return h < jnp.uint32(threshold)


def symmetric_uniform(scale: float):
  """U(-scale, scale): small, zero-centred embeddings."""
  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -scale, scale)
  return init


class FieldPooling(nn.Module):
  """Rows (and dense values) -> one [B, dim] vector per feature field.

  Multi-valued fields are mean-pooled over their non-padding ids (id 0 is
  padding); dense fields are projected to ``dim`` by a learned linear map so
  that every field occupies the same slot width in the shared embedding E.
  """
  features: Sequence[Any]
  dim: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, rows: Mapping[str, Array], inputs: Mapping[str, Array]) -> dict[str, Array]:
    fields = {}
    for f in self.features:
      if f.kind == 'multi':
        mask = (inputs[f.name] > 0).astype(rows[f.name].dtype)[..., None]
        total = jnp.sum(rows[f.name] * mask, axis=-2)
        fields[f.name] = total / jnp.maximum(jnp.sum(mask, axis=-2), 1.0)
      elif f.kind == 'dense':
        x = inputs[f.name].astype(jnp.float32)[..., None]
        fields[f.name] = nn.Dense(self.dim, name=f'dense_{f.name}')(x)
      else:
        fields[f.name] = rows[f.name]
    return fields


class PartsDense(nn.Module):
  """``nn.Dense`` over the concatenation of ``parts``, without building it.

  Same parameters ('kernel' [sum of widths, features], 'bias'), initialisation
  and function as ``nn.Dense(features)(concatenate(parts, -1))``; the product is
  summed part by part so that a part under ``stop_gradient`` (the gates' sg(E)
  and sg(O_ep)) costs no input gradient: the concatenated form computed the
  gradient of all 640 EPNet gate inputs to keep the 16 of the domain field.
  """
  features: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, parts: Sequence[Array]) -> Array:
    parts = list(parts) if isinstance(parts, (list, tuple)) else [parts]
    widths = [p.shape[-1] for p in parts]
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (sum(widths), self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    kernel = kernel.astype(self.dtype)
    out, start = None, 0
    for p, w in zip(parts, widths):
      y = jnp.dot(p.astype(self.dtype), kernel[start:start + w])
      out, start = (y if out is None else out + y), start + w
    return out + bias.astype(self.dtype)


class GateNU(nn.Module):
  """PEPNet's gate neural unit: Dense+ReLU, then Dense+sigmoid scaled by gamma.

  The output lies in (0, gamma); with gamma=2 a gate can both damp (<1) and
  amplify (>1) what it multiplies, starting near 1 at initialization. The input
  is one array or the list of parts it concatenates (see ``PartsDense``). The one
  implementation of the gate: ``SplitGateNU`` changes only the output layer's layout.
  """
  hidden: int
  out: int
  gamma: float = 2.0
  dtype: Any = jnp.float32

  def project(self, h: Array) -> Array:
    """The second layer's logits, [B, out]."""
    return nn.Dense(self.out, dtype=self.dtype, name='out')(h)

  @nn.compact
  def __call__(self, x) -> Array:
    h = nn.relu(PartsDense(self.hidden, dtype=self.dtype, name='hidden')(x))
    return self.gamma * nn.sigmoid(self.project(h).astype(jnp.float32))


class MLP(nn.Module):
  """Dense layers with an activation after each one (including the last)."""
  widths: Sequence[int]
  activation: Callable[[Array], Array] = nn.relu
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    for i, w in enumerate(self.widths):
      x = self.activation(nn.Dense(w, dtype=self.dtype, name=f'dense_{i}')(x))
    return x


class TaskDense(nn.Module):
  """T independent Dense layers applied at once, kernel [T, in, out].

  Input [B, T, in] (one input per task) or [B, in] (shared by all tasks, then
  computed as a single wide matmul); output [B, T, out]. One batched einsum
  instead of T small matmuls keeps the multi-task towers fast.
  """
  num_tasks: int
  out: int
  dtype: Any = jnp.float32
  # Task-major activations [T, B, .] make every product a plain batched matmul
  # with the batch dimension leading, with no transposes (faster on CPU).
  task_major: bool = False

  @nn.compact
  def __call__(self, x: Array) -> Array:
    d_in = x.shape[-1]
    kernel = self.param('kernel', batched_lecun_normal(), (self.num_tasks, d_in, self.out))
    bias = self.param('bias', nn.initializers.zeros, (self.num_tasks, self.out))
    kernel = kernel.astype(self.dtype)
    x = x.astype(self.dtype)
    bias = bias.astype(self.dtype)
    if self.task_major:
      eq = 'bi,tio->tbo' if x.ndim == 2 else 'tbi,tio->tbo'
      return jnp.einsum(eq, x, kernel) + bias[:, None, :]
    eq = 'bi,tio->bto' if x.ndim == 2 else 'bti,tio->bto'
    return jnp.einsum(eq, x, kernel) + bias


@functools.partial(jax.custom_vjp, nondiff_argnums=(1,))
def broadcast_tasks(x: Array, num_tasks: int) -> Array:
  """[B, w] -> [T, B, w]; its gradient sums over T with T explicit adds.

  XLA:CPU reduces the leading axis of a 3-D array about 100x slower than it
  adds T slices (measured: 61 ms vs 0.5 ms for [7, 1024, 272]); this reduce
  is the backward of every PPNet gate applied to a shared input.
  """
  return jnp.broadcast_to(x, (num_tasks,) + x.shape)


def _broadcast_tasks_fwd(x, num_tasks):
  return broadcast_tasks(x, num_tasks), None


def _broadcast_tasks_bwd(num_tasks, _, ct):
  return (functools.reduce(jnp.add, [ct[t] for t in range(num_tasks)]),)


broadcast_tasks.defvjp(_broadcast_tasks_fwd, _broadcast_tasks_bwd)


class SplitGateNU(GateNU):
  """One Gate NU whose ``parts * width`` outputs are split into ``parts`` gates.

  The same function (and parameter shapes) as ``GateNU(hidden, parts*width)``
  followed by a reshape, returned task-major [parts, B, width]; only the output
  layer differs (its kernel and bias are this module's own parameters).
  """
  out: int = 0  # unused: the output width is parts * width
  parts: int = 1
  width: int = 1

  def project(self, h: Array) -> Array:
    kernel = self.param('kernel', nn.initializers.lecun_normal(),
                        (self.hidden, self.parts * self.width))
    bias = self.param('bias', nn.initializers.zeros, (self.parts * self.width,))
    k = kernel.astype(self.dtype).reshape(self.hidden, self.parts, self.width)
    # A batched matmul over parts keeps the output laid out [parts, B, width];
    # 'bh,htw->tbw' lets XLA pick a [t, w, b] layout whose transposes inside
    # the elementwise fusions after it cost more than the matmul itself.
    hb = broadcast_tasks(h.astype(self.dtype), self.parts)
    logits = jnp.einsum('tbh,thw->tbw', hb, k.transpose(1, 0, 2))
    return logits + bias.astype(self.dtype).reshape(self.parts, 1, self.width)


def activation_fn(name: str) -> Callable[[Array], Array]:
  table = {'relu': nn.relu, 'gelu': nn.gelu, 'silu': nn.silu, 'tanh': jnp.tanh}
  if name not in table:
    raise ValueError(f'config.model.activation={name!r} is not one of {sorted(table)}')
  return table[name]


def dtype_from_name(name: str):
  table = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16, 'float16': jnp.float16}
  if name not in table:
    raise ValueError(f'config.model.dtype={name!r} is not one of {sorted(table)}')
  return table[name]
