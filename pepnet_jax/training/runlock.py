"""One run per workdir: an exclusive ``flock`` on ``<workdir>/.lock``.

Two runs training into the same workdir would interleave checkpoints and
prune each other's steps. ``hold(workdir)`` takes the lock for the life of a
run, and a second run fails at once with ``RunLockedError`` saying which run
(pid, host, start time) holds it.

Why flock: the kernel drops it when the holder's process dies, however it
dies (SIGKILL, OOM killer, crash), so a stale lock never needs cleaning up;
the pid/host/time written into the file are only for the message. The file
is never deleted: unlinking a lock file lets a waiter lock the old inode
while a newcomer locks a new one, and both would "hold" the lock.

Limits:
* flock is reliable on local filesystems only. On NFS it depends on the
  client (Linux emulates it with NFS byte-range locks, which do work across
  hosts with NFSv4 or a running lockd; ``local_lock=flock``/``nolock`` mounts
  and many FUSE/object-store mounts lock per host only), so two hosts may
  both get the lock on a shared workdir.
* A forked child (not exec'd) shares the locked file description and keeps
  the lock while it lives; the descriptor is not inherited across exec.
* In a multi-process JAX run every process shares the workdir: take the lock
  on one process (``enabled=jax.process_index() == 0``).
* Not re-entrant: holding it twice in one process fails like another run.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import time
from typing import Iterator

__all__ = ['RunLockedError', 'hold', 'holder', 'LOCK_NAME']

LOCK_NAME = '.lock'


class RunLockedError(RuntimeError):
  """Another live process holds the workdir lock.

  ``holder`` is what it wrote (pid, host, since) or {} if unreadable.
  """

  def __init__(self, workdir: str, info: dict):
    self.workdir, self.holder = workdir, dict(info)
    super().__init__(f'another run ({describe(info)}) is using {workdir}; '
                     'wait for it or use another --workdir')


def describe(info: dict) -> str:
  """'pid 1234 on host abc, since 2024-05-01 12:00:01' from whatever is known."""
  parts = []
  if info.get('pid') is not None:
    parts.append(f'pid {info["pid"]}')
  if info.get('host'):
    parts.append(f'on host {info["host"]}')
  text = ' '.join(parts) or 'details unknown: its lock file is empty or unreadable'
  if info.get('since'):
    text += f', since {info["since"]}'
  return text


def _parse(text: str) -> dict:
  """The holder info of a lock file; {} for empty or garbled content."""
  try:
    info = json.loads(text)
  except ValueError:
    return {}
  if not isinstance(info, dict):
    return {}
  out = {}
  if isinstance(info.get('pid'), int) and not isinstance(info.get('pid'), bool):
    out['pid'] = info['pid']
  for k in ('host', 'since'):
    if isinstance(info.get(k), str) and info[k]:
      out[k] = info[k][:200]
  return out


def _read_fd(fd: int) -> dict:
  try:
    os.lseek(fd, 0, os.SEEK_SET)
    return _parse(os.read(fd, 4096).decode('utf-8', 'replace'))
  except OSError:
    return {}


def holder(workdir: str) -> dict:
  """What the lock file of ``workdir`` says about its holder ({} if nothing;
  the info may be stale when no process holds the lock)."""
  try:
    with open(os.path.join(workdir, LOCK_NAME), 'rb') as f:
      return _parse(f.read(4096).decode('utf-8', 'replace'))
  except OSError:
    return {}


@contextlib.contextmanager
def hold(workdir: str, enabled: bool = True) -> Iterator[dict]:
  """Holds the lock of ``workdir`` (created if needed) for the ``with`` body.

  Yields the info written to the lock file. Raises RunLockedError at once
  if another process holds it. ``enabled=False`` holds nothing (for the
  non-primary processes of a multi-process run).
  """
  if not enabled:
    yield {}
    return
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  fd = os.open(os.path.join(workdir, LOCK_NAME), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
  try:
    try:
      fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as e:
      if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
        raise
      raise RunLockedError(workdir, _read_fd(fd)) from None
    info = {'pid': os.getpid(), 'host': socket.gethostname(),
            'since': time.strftime('%Y-%m-%d %H:%M:%S')}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + '\n').encode(), 0)
    try:
      yield info
    finally:
      os.ftruncate(fd, 0)  # a later reader must not take this run for a live one
  finally:
    os.close(fd)  # releases the lock
