"""Clean stops: SIGTERM / Ctrl-C between steps, and a loss that is not finite.

Preemptible machines send SIGTERM and give a process seconds to exit; a user
presses Ctrl-C. Either way the trainer should finish the step in flight, save a
checkpoint at it and exit with one line, not lose the steps since the last
periodic save. ``deferred`` turns the signals into a flag the loop reads
between steps; a second signal of the same kind stops at once (the default
behaviour), for a run that hangs.
"""

from __future__ import annotations

import contextlib
import signal
import threading


class TrainingStopped(Exception):
  """A run that ended early on purpose; the CLI prints the message alone and
  exits with ``exit_code``."""
  exit_code = 1


class Interrupted(TrainingStopped):
  def __init__(self, message: str, signum: int):
    super().__init__(message)
    self.signum = signum
    self.exit_code = 128 + signum  # the shell's convention: 130 Ctrl-C, 143 SIGTERM


class NonFiniteLoss(TrainingStopped):
  exit_code = 3


class StopFlag:
  """Set by a signal handler; read by the training loop between steps."""

  def __init__(self):
    self.signum = 0

  @property
  def name(self) -> str:
    return signal.Signals(self.signum).name if self.signum else ''


@contextlib.contextmanager
def deferred(flag: StopFlag, signums=(signal.SIGINT, signal.SIGTERM)):
  """Within the block, the first SIGINT/SIGTERM sets ``flag``; a second one of
  the same kind gets the handler that was there before (for SIGINT that raises
  KeyboardInterrupt). Outside the main thread signals cannot be caught: no-op."""
  if threading.current_thread() is not threading.main_thread():
    yield flag
    return
  previous = {s: signal.getsignal(s) for s in signums}

  def handler(signum, frame):
    if flag.signum == signum:
      signal.signal(signum, previous[signum])
      signal.raise_signal(signum)
      return
    flag.signum = signum
    print(f'\n{signal.Signals(signum).name} received: finishing this step, then saving a '
          'checkpoint (send it again to stop at once)', flush=True)

  for s in signums:
    signal.signal(s, handler)
  try:
    yield flag
  finally:
    for s, h in previous.items():
      signal.signal(s, h)


def agreed_signal(flag: StopFlag, step: int, every: int) -> int:
  """The signal every process acts on at ``step`` (0 = go on).

  One process: its own flag, at every step. Several (multi-host): each host
  gets its SIGTERM at a different step, and a host that stops alone leaves
  the others hanging in the next collective; so the hosts compare flags
  every ``every`` steps (one tiny all-gather) and stop together at the same
  step when any of them was signalled.
  """
  import jax
  if jax.process_count() == 1:
    return flag.signum
  if step % max(int(every), 1):
    return 0
  from jax.experimental import multihost_utils
  import numpy as np
  return int(np.max(multihost_utils.process_allgather(np.int32(flag.signum))))
