"""Host memory: keep the memory XLA:CPU frees in the process instead of handing it back.

Why: XLA:CPU allocates one temporary buffer per execution of a compiled program (117 MB for
a KuaiRand training step at batch 1024) and frees it at the end. glibc serves any block over
32 MB with a fresh ``mmap`` and returns it with ``munmap``, so every step faulted in 30,000
new pages: a third of the process's CPU time went to the kernel, and the step ran about 25%
slower than with the memory kept (docs/performance.md, "Host memory"). ``keep_freed_memory``
sets glibc's allocator so that such blocks come from one heap that is never trimmed: one
arena (``M_ARENA_MAX`` 1; a thread's own arena cannot hold a block over 64 MB), no ``mmap``
(``M_MMAP_MAX`` 0) and no trimming (``M_TRIM_THRESHOLD`` 2^31 - 1). The price: the process
keeps its peak heap, as tcmalloc and jemalloc do.

It must run before the first JAX computation: a thread keeps the arena it first allocated
from. ``pepnet_jax/__init__.py`` calls it on import, before any backend exists, so every
entry point (run.py, the benchmarks, the tests, a notebook that imports pepnet_jax first)
gets it. ``PEPNET_JAX_MALLOC=system`` leaves the allocator as it is. Elsewhere than Linux with
glibc it does nothing.
"""

from __future__ import annotations

import ctypes
import os
import platform
import sys

ENV = 'PEPNET_JAX_MALLOC'

# mallopt's parameter numbers (glibc malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4
_M_ARENA_MAX = -8
SETTINGS = ((_M_ARENA_MAX, 1), (_M_MMAP_MAX, 0), (_M_TRIM_THRESHOLD, 2**31 - 1))

_state = {'applied': None}  # None: not tried; else the reason / 'kept'


def keep_freed_memory() -> str:
  """Applies ``SETTINGS`` once per process; returns what happened, for logs and tests:
  'kept' (applied), or why not ('PEPNET_JAX_MALLOC=system', 'not glibc', 'mallopt refused',
  'JAX backend already initialised')."""
  if _state['applied'] is not None:
    return _state['applied']
  _state['applied'] = _apply()
  return _state['applied']


def _apply() -> str:
  choice = os.environ.get(ENV, '').strip().lower()
  if choice == 'system':
    return f'{ENV}=system'
  if choice not in ('', 'keep'):
    raise ValueError(f'{ENV}={os.environ[ENV]!r}: use keep (the default) or system')
  if platform.system() != 'Linux' or platform.libc_ver()[0] != 'glibc':
    return 'not glibc'
  if _backend_initialised():
    return 'JAX backend already initialised'
  try:
    mallopt = ctypes.CDLL(None).mallopt
  except (OSError, AttributeError):
    return 'not glibc'
  mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
  if not all(mallopt(param, value) == 1 for param, value in SETTINGS):
    return 'mallopt refused'
  return 'kept'


def _backend_initialised() -> bool:
  """True once JAX has made a backend (its threads may already own arenas)."""
  xla_bridge = sys.modules.get('jax._src.xla_bridge')  # not imported: no backend yet
  return bool(getattr(xla_bridge, '_backends', None))
