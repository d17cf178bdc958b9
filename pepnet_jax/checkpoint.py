"""Checkpoints with orbax: periodic saves, keep-N, resume from the latest step.

Every save is a Composite of the train state and a small JSON record (step,
examples seen), so one directory never mixes single-item and Composite saves.
Saves are asynchronous; ``close()`` (or ``wait()``) blocks until they land.
An interrupted save leaves only a temporary directory, which orbax ignores.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
  """Thin wrapper over ``ocp.CheckpointManager`` for one training run."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, save_interval_steps: int = 1,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return list(self.manager.all_steps())

  def save(self, step: int, state: Any, meta: dict | None = None, force: bool = False) -> bool:
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(dict(meta or {}, step=int(step))))
    return self.manager.save(int(step), args=args, force=force)

  def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores into the structure, dtypes and shardings of ``target``."""
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    if step not in self.all_steps():
      raise FileNotFoundError(
          f'no checkpoint for step {step} in {self.directory}; have {self.all_steps()}')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    out = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract), meta=ocp.args.JsonRestore()))
    return out.state, dict(out.meta or {})

  def wait(self):
    self.manager.wait_until_finished()

  def close(self):
    self.manager.wait_until_finished()
    self.manager.close()


def load_state_arrays(workdir: str, step: int) -> Any:
  """The saved train state of ``step`` as host numpy arrays, whatever the
  topology it was saved from (e.g. for inspection or comparing runs)."""
  import numpy as np
  path = os.path.join(os.path.abspath(workdir), 'checkpoints', str(step), 'state')
  ckptr = ocp.StandardCheckpointer()
  meta = ckptr.metadata(path)
  tree = getattr(meta, 'item_metadata', meta)
  device = jax.local_devices()[0]
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype,
                                     sharding=jax.sharding.SingleDeviceSharding(device)), tree)
  restored = ckptr.restore(path, target)
  return jax.tree.map(np.asarray, restored)
