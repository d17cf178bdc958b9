"""Checkpoints with orbax: periodic saves, keep-N, resume from the latest step.

Every save is a Composite of the train state and a small JSON record (step,
examples seen), so one directory never mixes single-item and Composite saves.
Saves are asynchronous; ``close()`` (or ``wait()``) blocks until they land.
An interrupted save leaves only a temporary directory, which orbax ignores.

Failures are turned into one-line errors instead of orbax/TensorStore dumps (the errors and
the reasons they quote: ``checkpoint_errors.py``):

* ``restore_latest`` tries steps newest first. A damaged step (a truncated or
  missing file, an empty ``_METADATA``, a step directory without its ``meta``
  item) prints one warning and the next older step is used. Before reading
  any array the saved tree (paths, shapes, dtypes) is compared with the
  target, so a checkpoint that is readable but was saved by another config
  raises ``CheckpointMismatch`` and is never mistaken for damage (or the
  reverse).
* With ``move_damaged=True`` (the trainer, which holds the workdir lock) a
  damaged step that was skipped is renamed to ``<step>.damaged``. Left in
  place it would still be orbax's latest step: the resumed run's saves of
  lower steps would be skipped (orbax only saves steps above the latest), a
  save of the same step would collide with it, and keep-N would count it and
  delete good checkpoints. Renaming keeps the files for inspection. Nothing
  is moved when no step is readable (a passing I/O fault must not demote
  every checkpoint), nor by readers such as evaluate and predict, which may
  run next to a trainer that is pruning old steps.
* ``save`` refuses a state with NaN/inf (``NonFiniteStateError``), so keep-N
  never deletes good checkpoints in favour of diverged ones.
* A failed write (disk full, file too large, ...) raises
  ``CheckpointSaveError`` naming the step, the directory and the OS error,
  from ``save``/``wait``/``close`` (whichever first sees the async save
  fail). Orbax writes into ``<step>.orbax-checkpoint-tmp`` and prunes old
  steps only after a save completes, so the previous checkpoints stay
  intact; the partial directory is removed to give the space back. Orbax
  logs such failures from its threads with full tracebacks; those records
  are dropped, since the same failure is raised here as one error.
"""

from __future__ import annotations

import errno as errno_lib
import glob
import os
import shutil
import sys
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from pepnet_jax.training.checkpoint_errors import (  # noqa: F401  (the errors are re-exported)
    DAMAGED_SUFFIX, _TMP_MARK, CheckpointError, CheckpointDamaged, NoReadableCheckpoint,
    CheckpointMismatch, NonFiniteStateError, CheckpointSaveError, _os_errno, _reason,
    _ORBAX_ERRORS, _FAILED, _install_quiet_hooks)

__all__ = ['Checkpointer', 'CheckpointError', 'CheckpointDamaged', 'NoReadableCheckpoint',
           'CheckpointMismatch', 'NonFiniteStateError', 'CheckpointSaveError',
           'nonfinite_paths', 'load_state_arrays']


# --------------------------------------------------------------------------
# Tree comparison and the finite check
# --------------------------------------------------------------------------

def _key_name(k) -> str:
  for attr in ('key', 'name', 'idx'):
    if hasattr(k, attr):
      return str(getattr(k, attr))
  return str(k)


def _flat(tree) -> dict[str, Any]:
  leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
  return {'/'.join(_key_name(k) for k in path): leaf for path, leaf in leaves}


def _dtype_name(x) -> str | None:
  dt = getattr(x, 'dtype', None)
  return None if dt is None else str(jnp.dtype(dt))


def _tree_differences(saved, target) -> list[str]:
  """'path: why' for every leaf whose presence, shape or dtype differs."""
  s, t = _flat(saved), _flat(target)
  out = [f'{p}: in the checkpoint, not in the target' for p in s if p not in t]
  out += [f'{p}: in the target, not in the checkpoint' for p in t if p not in s]
  for p in s.keys() & t.keys():
    ss, ts = getattr(s[p], 'shape', None), getattr(t[p], 'shape', None)
    sd, td = _dtype_name(s[p]), _dtype_name(t[p])
    if ss is not None and ts is not None and tuple(ss) != tuple(ts):
      out.append(f'{p}: saved shape {tuple(ss)}, target {tuple(ts)}')
    elif sd is not None and td is not None and sd != td:
      out.append(f'{p}: saved dtype {sd}, target {td}')
  return sorted(out)


@jax.jit
def _finite_flags(leaves):
  flags = [jnp.isfinite(x).all() for x in leaves]
  return jnp.stack(flags).all(), flags


def _scalar(x) -> bool:
  """A 0-d (hence replicated) jax result as a Python bool, on any process."""
  if isinstance(x, jax.Array) and not x.is_fully_addressable:
    x = x.addressable_data(0)
  return bool(np.asarray(x))


def nonfinite_paths(state) -> tuple[list[str], int]:
  """(paths of float leaves holding NaN/inf, number of float leaves).

  Device arrays (sharded or not) are reduced in one jitted call on their
  devices; only one bool per leaf comes back to the host.
  """
  flat = {p: x for p, x in _flat(state).items()
          if hasattr(x, 'dtype') and jnp.issubdtype(x.dtype, jnp.inexact)}
  dev = {p: x for p, x in flat.items() if isinstance(x, jax.Array)}
  bad = [p for p, x in flat.items() if p not in dev and not np.isfinite(np.asarray(x)).all()]
  if dev:
    try:
      all_ok, flags = _finite_flags(list(dev.values()))
    except ValueError:  # leaves committed to different devices: one call each
      flags = [jnp.isfinite(x).all() for x in dev.values()]
      all_ok = all(_scalar(f) for f in flags)
    if not _scalar(all_ok):
      bad += [p for p, f in zip(dev, flags) if not _scalar(f)]
  return sorted(bad), len(flat)


def _agree(ok: bool) -> bool:
  """True only if every process says True (multi-process runs must all fall
  back to the same step, even when only one process hit the damaged bytes)."""
  if jax.process_count() == 1:
    return ok
  from jax.experimental import multihost_utils
  return bool(np.all(multihost_utils.process_allgather(np.asarray(ok, np.int32))))


def _sync(name: str):
  if jax.process_count() > 1:
    from jax.experimental import multihost_utils
    multihost_utils.sync_global_devices(name)


class _Damage(Exception):

  def __init__(self, reason: str):
    super().__init__(reason)
    _FAILED[0] = True


# --------------------------------------------------------------------------
# The checkpointer
# --------------------------------------------------------------------------

class Checkpointer:
  """Thin wrapper over ``ocp.CheckpointManager`` for one training run."""

  def __init__(self, directory: str, *, max_to_keep: int = 3, save_interval_steps: int = 1,
               async_save: bool = True):
    self.directory = os.path.abspath(directory)
    options = ocp.CheckpointManagerOptions(
        max_to_keep=max_to_keep, save_interval_steps=save_interval_steps,
        enable_async_checkpointing=async_save, create=True)
    self.manager = ocp.CheckpointManager(self.directory, options=options)
    self._pending: int | None = None  # step of a save that may still be writing
    self._pending_existed = False  # its directory was there before (orbax refuses)
    _install_quiet_hooks()

  def latest_step(self) -> int | None:
    return self.manager.latest_step()

  def all_steps(self) -> list[int]:
    return sorted(self.manager.all_steps())

  # ------------------------------------------------------------------ save

  def save(self, step: int, state: Any, meta: dict | None = None, force: bool = False,
           replace: bool = False) -> bool:
    """Starts an async save; False when orbax's interval policy skips ``step``.

    ``replace``: a checkpoint of ``step`` already there is deleted first (orbax refuses to
    write a step twice); the best-step folder needs it when a resumed run validates a step
    again that an earlier, interrupted run had already kept.

    Raises NonFiniteStateError (nothing saved, earlier steps untouched) when
    a float array of ``state`` holds NaN/inf, and CheckpointSaveError when
    this or the previous save's write failed.
    """
    step = int(step)
    if not force and not self.manager.should_save(step):
      return False
    self._finish()  # a failure of the previous save is reported as that step's
    bad, n_float = nonfinite_paths(state)
    if bad:
      raise NonFiniteStateError(self.directory, step, bad, n_float, self.latest_step())
    self._preflight(step, state)
    if replace and step in self.manager.all_steps():
      self.manager.delete(step)
    args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                              meta=ocp.args.JsonSave(dict(meta or {}, step=step)))
    self._pending, self._pending_existed = step, os.path.isdir(self._step_dir(step))
    saved = self._guard(lambda: self.manager.save(step, args=args, force=force))
    if not saved:
      self._pending = None
    return saved

  def _preflight(self, step: int, state: Any):
    """Refuses, before writing anything, a save that cannot fit in the free
    space of the checkpoint filesystem (a write that fails midway surfaces as
    the same error, after orbax has cleaned up its temporary folder)."""
    need = sum(int(getattr(x, 'nbytes', 0)) for x in jax.tree.leaves(state))
    need = need // max(jax.process_count(), 1) + (1 << 20)  # each process writes its share
    free = shutil.disk_usage(self.directory).free
    if free < need:
      raise CheckpointSaveError(
          self.directory, step, f'[Errno {errno_lib.ENOSPC}] No space left on device: only '
          f'{free / 2**20:.1f} MB free, it needs ~{need / 2**20:.1f} MB', errno_lib.ENOSPC,
          False, self.latest_step())

  def _finish(self):
    self._guard(self.manager.wait_until_finished)
    if self._pending is not None and _ORBAX_ERRORS.dropped:
      print(f'warning: orbax reported errors while saving checkpoint step {self._pending} in '
            f'{self.directory}, though the save completed: {_ORBAX_ERRORS.dropped[-1]}',
            file=sys.stderr, flush=True)
    _ORBAX_ERRORS.dropped.clear()
    self._pending = None

  def _guard(self, fn):
    """Runs a save/wait call; a write failure becomes one CheckpointSaveError."""
    try:
      return fn()
    except CheckpointError:
      raise
    except Exception as e:  # pylint: disable=broad-except
      step, self._pending = self._pending, None
      _FAILED[0] = True
      _ORBAX_ERRORS.dropped.clear()
      written = (step is not None and not self._pending_existed
                 and os.path.isdir(self._step_dir(step)))
      if step is not None and not written and jax.process_index() == 0:
        for tmp in glob.glob(os.path.join(self.directory, f'{step}{_TMP_MARK}*')):
          shutil.rmtree(tmp, ignore_errors=True)  # give the space back
      self.manager.reload()
      code = _os_errno(e)
      raise CheckpointSaveError(self.directory, step, _reason(e, self.directory), code,
                                written, self.latest_step()) from None

  def wait(self):
    """Blocks until the pending save has landed; raises CheckpointSaveError if it failed."""
    self._finish()

  def close(self):
    try:
      self._finish()
    finally:
      self.manager.close()

  # --------------------------------------------------------------- restore

  def _step_dir(self, step: int) -> str:
    return os.path.join(self.directory, str(step))

  def _read(self, handler, target: Any, step: int) -> tuple[Any, dict]:
    """Restores one step; raises _Damage(reason) or CheckpointMismatch."""
    sdir = self._step_dir(step)
    for item in ('state', 'meta'):
      if not os.path.isdir(os.path.join(sdir, item)):
        raise _Damage(f'its {item!r} item is missing (an incomplete copy?)')
    md_file = os.path.join(sdir, 'state', '_METADATA')
    if not os.path.isfile(md_file):
      raise _Damage('state/_METADATA is missing')
    if os.path.getsize(md_file) == 0:
      raise _Damage('state/_METADATA is empty')
    # Handlers, not the manager: the manager's restore ends in a barrier that
    # a process which failed to read never reaches (see _try).
    root = epath.Path(sdir)
    try:
      saved = handler.metadata(root / 'state')
    except Exception as e:  # pylint: disable=broad-except
      raise _Damage(f'state metadata: {_reason(e, sdir)}') from None
    diffs = _tree_differences(getattr(saved, 'tree', saved), target)
    if diffs:
      raise CheckpointMismatch(self.directory, step, diffs)
    try:
      meta = ocp.JsonCheckpointHandler().restore(root / 'meta', args=ocp.args.JsonRestore())
    except Exception as e:  # pylint: disable=broad-except
      raise _Damage(f'meta: {_reason(e, sdir)}') from None
    if not isinstance(meta, dict):
      raise _Damage(f'meta: expected a JSON object, found {type(meta).__name__}')
    abstract = jax.tree.map(ocp.utils.to_shape_dtype_struct, target)
    try:
      state = handler.restore(root / 'state', args=ocp.args.StandardRestore(abstract))
    except Exception as e:  # pylint: disable=broad-except
      raise _Damage(f'state: {_reason(e, sdir)}') from None
    return state, meta

  def _try(self, target: Any, step: int):
    """(state, meta, None) or (None, None, reason), the same on every process.

    A process that hit damaged bytes (its own shards) and one that did not
    must still fall back together, so the outcome is agreed on here.
    """
    handler = ocp.StandardCheckpointHandler()
    try:
      state, meta = self._read(handler, target, step)
      reason = None
    except _Damage as d:
      state, meta, reason = None, None, str(d)
      _ORBAX_ERRORS.dropped.clear()  # raised here as damage; not a save problem
    finally:
      handler.close()
    if not _agree(reason is None):
      return None, None, reason or 'unreadable on another process'
    return state, meta, None

  def restore(self, target: Any, step: int | None = None) -> tuple[Any, dict]:
    """Restores ``step`` (default: the latest) into the structure, dtypes and
    shardings of ``target``; no fallback.

    Raises FileNotFoundError (no such step), CheckpointDamaged or
    CheckpointMismatch.
    """
    step = self.latest_step() if step is None else int(step)
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    if step not in self.all_steps():
      raise FileNotFoundError(
          f'no checkpoint for step {step} in {self.directory}; have {self.all_steps()}')
    state, meta, reason = self._try(target, step)
    if reason is not None:
      raise CheckpointDamaged(self.directory, step, reason, self.all_steps())
    return state, meta

  def restore_latest(self, target: Any, *, move_damaged: bool = False
                     ) -> tuple[Any, dict, int]:
    """(state, meta, step) of the newest readable step, trying newest first.

    Each damaged step that is skipped prints one warning line to stderr
    and, with ``move_damaged``, is renamed to ``<step>.damaged`` (see the
    module docstring). Raises FileNotFoundError (no checkpoint),
    NoReadableCheckpoint (all damaged; nothing moved) or CheckpointMismatch
    (the newest readable step does not fit ``target``: older ones would not
    either, so there is no fallback).
    """
    steps = sorted(self.all_steps(), reverse=True)
    if not steps:
      raise FileNotFoundError(f'no checkpoint in {self.directory}')
    damaged: dict[int, str] = {}
    for step in steps:
      try:
        state, meta, reason = self._try(target, step)
      except CheckpointMismatch:
        self._warn(damaged, None)
        raise
      if reason is None:
        moved = self._move_aside(list(damaged)) if move_damaged else {}
        self._warn(damaged, step, moved)
        return state, meta, step
      damaged[step] = reason
    raise NoReadableCheckpoint(self.directory, damaged)

  def _warn(self, damaged: dict[int, str], used: int | None, moved: dict | None = None):
    for step, reason in damaged.items():
      then = f'; falling back to step {used}' if used is not None else ''
      where = f'; moved it to {moved[step]}' if moved and step in moved else ''
      print(f'warning: checkpoint step {step} in {self.directory} is damaged ({reason})'
            f'{then}{where}', file=sys.stderr, flush=True)

  def _move_aside(self, steps: list[int]) -> dict[int, str]:
    """Renames damaged step directories to ``<step>.damaged[-k]`` (on process 0)."""
    if not steps:
      return {}
    moved = {}
    for step in steps:
      dst, k = self._step_dir(step) + DAMAGED_SUFFIX, 1
      while os.path.exists(dst):
        k += 1
        dst = f'{self._step_dir(step)}{DAMAGED_SUFFIX}-{k}'
      moved[step] = dst
    _sync('pepnet_checkpoint_move_damaged_names')
    if jax.process_index() == 0:
      for step, dst in list(moved.items()):
        try:
          os.rename(self._step_dir(step), dst)
        except OSError as e:
          print(f'warning: could not move damaged checkpoint step {step} aside: {e}',
                file=sys.stderr, flush=True)
          del moved[step]
    _sync('pepnet_checkpoint_move_damaged')
    self.manager.reload()
    return moved


def restore_for_inference(workdir: str, state: Any, step: int | None) -> tuple[Any, int]:
  """(state, step) for evaluate and predict: by default the step the training
  report used, i.e. the best validation step in ``<workdir>/best`` when the run
  selected one, else the newest readable step of ``<workdir>/checkpoints`` (a
  damaged newest step is skipped with a warning and left in place: evaluate and
  predict may run beside a trainer); ``step`` picks one from either folder."""
  workdir = os.path.abspath(workdir)
  best_dir = os.path.join(workdir, 'best')
  best = Checkpointer(best_dir) if os.path.isdir(best_dir) else None  # (it would create one)
  ckpt = Checkpointer(os.path.join(workdir, 'checkpoints'))
  try:
    best_step = best.latest_step() if best else None
    if step is None and best_step is not None:
      state, meta, step = best.restore_latest(state)
      print(f'Using the best validation step {step} (the one the training report used; '
            '--step=N picks another)', flush=True)
    elif step is not None and step == best_step and step not in ckpt.all_steps():
      state, meta = best.restore(state, step)
    elif ckpt.latest_step() is None:
      raise FileNotFoundError(f'no checkpoint in {ckpt.directory}: train first '
                              f'(python run.py --config ... --workdir {workdir})')
    elif step is None:
      state, meta, step = ckpt.restore_latest(state)
    else:
      state, meta = ckpt.restore(state, step)
  finally:
    ckpt.close()
    if best:
      best.close()
  return state, int(meta.get('step', step))


def load_state_arrays(workdir: str, step: int, folder: str = 'checkpoints') -> Any:
  """The saved train state of ``step`` as host numpy arrays, whatever the
  topology it was saved from (e.g. for inspection or comparing runs)."""
  path = os.path.join(os.path.abspath(workdir), folder, str(step), 'state')
  ckptr = ocp.StandardCheckpointer()
  meta = ckptr.metadata(path)
  tree = getattr(meta, 'item_metadata', meta)
  device = jax.local_devices()[0]
  target = jax.tree.map(
      lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype,
                                     sharding=jax.sharding.SingleDeviceSharding(device)), tree)
  restored = ckptr.restore(path, target)
  return jax.tree.map(np.asarray, restored)
