"""Checkpoint errors, each with a message a user can act on, and the short reasons taken out
of orbax / TensorStore exceptions; the logging and unraisable-exception hooks that keep
orbax's background noise about a failed read or write off the console."""

from __future__ import annotations

import logging
import os
import re
import sys

DAMAGED_SUFFIX = '.damaged'
_TMP_MARK = '.orbax-checkpoint-tmp'


class CheckpointError(Exception):
  """Base of this module's errors: catch it to print ``str(e)`` and exit."""


class CheckpointDamaged(CheckpointError):
  """An explicitly requested step cannot be read (files damaged or missing)."""

  def __init__(self, directory: str, step: int, reason: str, other_steps=()):
    self.directory, self.step, self.reason = directory, step, reason
    others = [s for s in other_steps if s != step]
    super().__init__(f'checkpoint step {step} in {directory} is damaged ({reason})'
                     + (f'; other steps: {others}' if others else ''))


class NoReadableCheckpoint(CheckpointError):
  """Every step in the directory is damaged; ``damaged`` maps step -> reason."""

  def __init__(self, directory: str, damaged: dict[int, str]):
    self.directory, self.damaged = directory, dict(damaged)
    lines = ''.join(f'\n  step {s}: {r}' for s, r in damaged.items())
    super().__init__(f'no readable checkpoint in {directory}; every step is damaged:{lines}')


class CheckpointMismatch(CheckpointError, ValueError):
  """A readable checkpoint whose tree, shapes or dtypes differ from the target
  (the model/optimizer config changed since it was saved).

  ``differences`` lists every differing path as ``'path: why'``.
  """

  def __init__(self, directory: str, step: int, differences: list[str]):
    self.directory, self.step, self.differences = directory, step, list(differences)
    shown = '; '.join(differences[:6]) + (f'; and {len(differences) - 6} more'
                                          if len(differences) > 6 else '')
    super().__init__(f'checkpoint step {step} in {directory} does not fit the state being '
                     f'restored: {shown}')

  @property
  def paths(self) -> list[str]:
    return [d.split(': ', 1)[0] for d in self.differences]


class NonFiniteStateError(CheckpointError, FloatingPointError):
  """``save`` was given a state with NaN/inf in a float array; nothing was saved."""

  def __init__(self, directory: str, step: int, paths: list[str], n_float: int,
               latest: int | None):
    self.directory, self.step, self.paths = directory, step, list(paths)
    shown = ', '.join(paths[:5]) + (f' and {len(paths) - 5} more' if len(paths) > 5 else '')
    super().__init__(
        f'refusing to save checkpoint step {step} in {directory}: {len(paths)} of {n_float} '
        f'float arrays hold NaN/inf ({shown}); training diverged. '
        + (f'The last checkpoint (step {latest}) is kept.' if latest is not None
           else 'No earlier checkpoint exists.'))


class CheckpointSaveError(CheckpointError, OSError):
  """Writing a checkpoint failed (e.g. disk full); earlier steps are intact.

  ``errno`` is the OS error number when the failure came from the OS.
  """

  def __init__(self, directory: str, step: int | None, reason: str, errno: int | None,
               written: bool, latest: int | None):
    super().__init__(
        (f'checkpoint step {step} was written to {directory}, but finishing the save failed: '
         f'{reason}' if written else
         f'checkpoint step {step} could not be saved to {directory}: {reason}; '
         + (f'the latest complete checkpoint is step {latest}' if latest is not None
            else 'there is no complete checkpoint')))
    self.directory, self.step, self.errno, self.written = directory, step, errno, written

  def __str__(self) -> str:
    return str(self.args[0])


# --------------------------------------------------------------------------
# Short reasons out of orbax / TensorStore exceptions
# --------------------------------------------------------------------------

_TS_STATUS = re.compile(r'\b(?:[A-Z]+_)*[A-Z]{4,}: ')
_OS_CODE = re.compile(r"os_error_code='?(\d+)")


def _chain(exc: BaseException) -> list[BaseException]:
  out, seen = [], set()
  while exc is not None and id(exc) not in seen:
    seen.add(id(exc))
    out.append(exc)
    exc = exc.__cause__ or exc.__context__
  return out


def _os_errno(exc: BaseException) -> int | None:
  for e in _chain(exc):
    if isinstance(e, OSError) and e.errno:
      return e.errno
    m = _OS_CODE.search(str(e))
    if m:
      return int(m.group(1))
  return None


def _reason(exc: BaseException, strip: str = '', limit: int = 300) -> str:
  """One line saying what went wrong, without TensorStore's spec dumps."""
  chain = _chain(exc)
  # The innermost TensorStore status ('NOT_FOUND: ...') or OS error says most.
  best = next((e for e in reversed(chain)
               if isinstance(e, OSError) or _TS_STATUS.match(str(e))), chain[0])
  text = (str(best).strip().splitlines() or [''])[0]
  for cut in (' [tensorstore_spec=', ' See full TensorStore details', ' [source locations='):
    text = text.split(cut)[0]
  if strip:
    text = text.replace(strip.rstrip('/') + '/', '')
  if not _TS_STATUS.match(text) and not isinstance(best, OSError):
    text = f'{type(best).__name__}: {text}' if text else type(best).__name__
  code = _os_errno(exc)
  if code and not isinstance(best, OSError):
    text = f'[Errno {code}] {os.strerror(code)}: {text}'
  return text if len(text) <= limit else text[:limit - 3] + '...'


class _DropOrbaxErrors(logging.Filter):
  """Drops orbax's ERROR records (thread tracebacks); Checkpointer raises the
  same failures as one exception. Counts them so a save that completes
  despite them is still reported."""

  def __init__(self):
    super().__init__()
    self.dropped: list[str] = []

  def filter(self, record: logging.LogRecord) -> bool:
    if record.levelno >= logging.ERROR and f'{os.sep}orbax{os.sep}' in (record.pathname or ''):
      self.dropped.append((record.getMessage().splitlines() or [''])[0][:200])
      del self.dropped[:-5]
      return False
    return True


_ORBAX_ERRORS = _DropOrbaxErrors()
_FAILED = [False]  # an orbax read/write failed in this process


def _orbax_leftover(unraisable) -> bool:
  """Whether an 'Exception ignored' report is debris of a failed orbax call:
  its abandoned read coroutines (garbage-collected later) or TensorStore
  callbacks into the event loop orbax already closed."""
  if not _FAILED[0]:
    return False
  code = getattr(unraisable.object, 'cr_code', None)
  if code is not None and f'{os.sep}orbax{os.sep}' in code.co_filename:
    return True
  exc = unraisable.exc_value
  return isinstance(exc, RuntimeError) and str(exc) == 'Event loop is closed'


class _DropOrbaxFutures(logging.Filter):
  """Drops asyncio's 'exception was never retrieved' for the reads orbax
  abandons after the first failed one (a damaged checkpoint is reported once,
  by Checkpointer)."""

  def filter(self, record: logging.LogRecord) -> bool:
    msg = record.getMessage()
    return not ('never retrieved' in msg and ('TensorStore' in msg or 'orbax' in msg))


_ORBAX_FUTURES = _DropOrbaxFutures()


def _install_quiet_hooks():
  logger = logging.getLogger('absl')
  if _ORBAX_ERRORS not in logger.filters:
    logger.addFilter(_ORBAX_ERRORS)
  asyncio_logger = logging.getLogger('asyncio')
  if _ORBAX_FUTURES not in asyncio_logger.filters:
    asyncio_logger.addFilter(_ORBAX_FUTURES)
  previous = sys.unraisablehook
  if getattr(previous, '_pepnet_quiet', False):
    return

  def hook(unraisable):
    if not (_orbax_leftover(unraisable)
            or _closed_loop_callback(unraisable.exc_value, unraisable.exc_traceback)):
      previous(unraisable)

  hook._pepnet_quiet = True
  sys.unraisablehook = hook

  # TensorStore reports the same debris through sys.excepthook (its C++
  # callbacks print the error): a callback into orbax's closed event loop.
  previous_excepthook = sys.excepthook

  def excepthook(kind, value, tb):
    if not _closed_loop_callback(value, tb):
      previous_excepthook(kind, value, tb)

  sys.excepthook = excepthook


def _closed_loop_callback(exc, tb) -> bool:
  """A RuntimeError('Event loop is closed') raised by call_soon_threadsafe."""
  if not (isinstance(exc, RuntimeError) and str(exc) == 'Event loop is closed'):
    return False
  while tb is not None and tb.tb_next is not None:
    tb = tb.tb_next
  names = set()
  frame = tb.tb_frame if tb is not None else None
  while frame is not None:
    names.add(frame.f_code.co_name)
    frame = frame.f_back
  return 'call_soon_threadsafe' in names or tb is None
