"""Device mesh and shardings: batch split over 'data', large tables row-sharded.

One mesh axis, 'data'. Every batch is split along it. Embedding tables whose
row count is at least ``min_rows`` are split by rows across the same devices
(their optimizer state with them); everything else is replicated. On one
device every sharding is trivial, so the same config runs on 1 or N devices.
"""

from __future__ import annotations

import re
from typing import Any

import jax
import numpy as np
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec as P

from pepnet_jax.training.optim import param_path

AXIS = 'data'


def make_mesh(num_devices: int = 0) -> Mesh:
  """A 1-D mesh over the first ``num_devices`` devices (0 = all)."""
  devices = jax.devices()
  n = len(devices) if num_devices in (0, None) else int(num_devices)
  if n > len(devices):
    raise ValueError(f'config.mesh.num_devices={n} but only {len(devices)} devices are visible')
  # Auto axes: nn.Embed-style gathers fail under Explicit sharding.
  return Mesh(np.asarray(devices[:n]), (AXIS,), axis_types=(AxisType.Auto,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def state_shardings(abstract_state: Any, mesh: Mesh, table_regex: str, min_rows: int) -> Any:
  """Row-shards table-shaped leaves (params and their optimizer state).

  A leaf is row-sharded when its path contains a parameter path matching
  ``table_regex`` (optimizer state mirrors the parameter tree, so AdaGrad
  accumulators and Adam moments of a table match too), it is 2-D, has at
  least ``min_rows`` rows and splits evenly over the mesh.
  """
  rx = re.compile(table_regex)
  n = mesh.shape[AXIS]

  def rule(path, leaf):
    p = param_path(path)
    shape = getattr(leaf, 'shape', ())
    tail = p.split('/')
    is_table = any(rx.search('/'.join(tail[i:])) for i in range(len(tail)))
    if is_table and len(shape) == 2 and shape[0] >= min_rows and shape[0] % n == 0:
      return NamedSharding(mesh, P(AXIS, None))
    return NamedSharding(mesh, P())

  return jax.tree_util.tree_map_with_path(rule, abstract_state)


def put_batch(batch: Any, mesh: Mesh) -> Any:
  """Host numpy batch -> device arrays split along the batch axis."""
  sharding = batch_sharding(mesh)
  if jax.process_count() == 1:
    return jax.device_put(batch, sharding)
  return jax.tree.map(
      lambda x: jax.make_array_from_process_local_data(sharding, x), batch)
