"""hostmem: glibc keeps the blocks XLA:CPU frees, on import of pepnet_jax, and says when not."""

import os
import platform
import subprocess
import sys

import pytest

from pepnet_jax import hostmem

GLIBC = platform.system() == 'Linux' and platform.libc_ver()[0] == 'glibc'
needs_glibc = pytest.mark.skipif(not GLIBC, reason='the allocator settings are glibc mallopt')

# A 64 MB block written, freed, allocated again and written again: the page faults of the
# second write. With the memory kept, the second block is the first one, already mapped.
REUSE = r'''
import ctypes, resource, sys
import pepnet_jax
from pepnet_jax import hostmem
libc = ctypes.CDLL(None)
libc.malloc.restype = ctypes.c_void_p
libc.malloc.argtypes = [ctypes.c_size_t]
libc.free.argtypes = [ctypes.c_void_p]
n = 64 << 20
p = libc.malloc(n); ctypes.memset(p, 1, n); libc.free(p)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
p = libc.malloc(n); ctypes.memset(p, 1, n)
print(hostmem.keep_freed_memory(), resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
'''


def run_python(code, **env):
  full = dict(os.environ)
  full.pop(hostmem.ENV, None)
  full.update(env)
  return subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, env=full,
                        timeout=120)


@needs_glibc
def test_freed_blocks_are_reused_without_page_faults_and_the_opt_out_restores_glibc():
  kept = run_python(REUSE)
  assert kept.returncode == 0, kept.stderr
  state, faults = kept.stdout.split()
  assert state == 'kept'
  # 64 MB is 16,384 pages of 4 KB; kept, the block is already mapped.
  assert int(faults) < 1000, kept.stdout

  system = run_python(REUSE, PEPNET_JAX_MALLOC='system')
  assert system.returncode == 0, system.stderr
  state, faults = system.stdout.split()
  assert state == 'PEPNET_JAX_MALLOC=system'
  # glibc's own rule: a block over 32 MB is a fresh mmap, faulted in again (huge pages, where
  # the kernel gives them to every mapping, would fault 32 times; none are asked for here).
  assert int(faults) > 30, system.stdout


@needs_glibc
def test_too_late_once_a_backend_exists_and_it_says_so():
  r = run_python('import jax.numpy as jnp; jnp.zeros(1).block_until_ready()\n'
                 'from pepnet_jax import hostmem; print(hostmem.keep_freed_memory())')
  assert r.returncode == 0, r.stderr
  assert r.stdout.strip() == 'JAX backend already initialised'


def test_an_unknown_setting_names_the_variable_and_the_choices():
  r = run_python('import pepnet_jax', PEPNET_JAX_MALLOC='tcmalloc')
  assert r.returncode != 0
  assert "PEPNET_JAX_MALLOC='tcmalloc': use keep (the default) or system" in r.stderr


def test_applied_once_per_process(monkeypatch):
  monkeypatch.setitem(hostmem._state, 'applied', None)
  monkeypatch.setenv(hostmem.ENV, 'system')
  assert hostmem.keep_freed_memory() == 'PEPNET_JAX_MALLOC=system'
  monkeypatch.setenv(hostmem.ENV, 'keep')  # not read again: the first answer stands
  assert hostmem.keep_freed_memory() == 'PEPNET_JAX_MALLOC=system'
