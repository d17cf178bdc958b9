"""The workdir lock: one run per workdir, released by the kernel when its holder dies."""

import os
import signal
import socket
import subprocess
import sys
import textwrap

import pytest

from pepnet_jax.training import runlock


def _holder_process(workdir, body=None):
  """A child that takes the lock (with ``hold`` unless ``body`` is given),
  prints 'held' and sleeps until killed."""
  body = body or 'ctx = runlock.hold(sys.argv[1]); ctx.__enter__()'
  code = textwrap.dedent(f'''
      import fcntl, os, sys, time
      from pepnet_jax.training import runlock
      {body}
      print('held', flush=True)
      time.sleep(120)
  ''')
  proc = subprocess.Popen([sys.executable, '-c', code, str(workdir)], stdout=subprocess.PIPE,
                          text=True)
  try:
    assert proc.stdout.readline().strip() == 'held'
  except BaseException:
    proc.kill()
    raise
  return proc


def test_second_holder_fails_naming_the_first_and_lock_survives_sigkill(tmp_path):
  workdir = tmp_path / 'run'
  proc = _holder_process(workdir)
  try:
    with pytest.raises(runlock.RunLockedError) as err:
      with runlock.hold(workdir):
        pass
    msg = str(err.value)
    assert f'pid {proc.pid} on host {socket.gethostname()}, since ' in msg
    assert str(workdir) in msg and 'another --workdir' in msg
    assert err.value.holder['pid'] == proc.pid
  finally:
    proc.send_signal(signal.SIGKILL)
    proc.wait()
  # The kernel dropped the dead run's lock: no stale lock to clean up.
  with runlock.hold(workdir) as info:
    assert info['pid'] == os.getpid()
    assert runlock.holder(workdir)['pid'] == os.getpid()


def test_lock_is_exclusive_within_one_process_and_released_on_exit(tmp_path):
  with runlock.hold(tmp_path):
    with pytest.raises(runlock.RunLockedError, match=f'pid {os.getpid()}'):
      with runlock.hold(tmp_path):
        pass
  assert runlock.holder(tmp_path) == {}  # cleared: nobody holds it now
  with runlock.hold(tmp_path):
    with runlock.hold(tmp_path, enabled=False) as info:  # non-primary processes
      assert info == {}


@pytest.mark.parametrize('content', ['', 'garbage{', '[1, 2]', '{"pid": "x", "host": 3}'])
def test_empty_or_garbled_lock_file_still_gives_a_clear_error(tmp_path, content):
  lock = tmp_path / runlock.LOCK_NAME
  # Another process locks the file by hand and writes no usable info.
  body = (f'fd = os.open(sys.argv[1] + "/.lock", os.O_RDWR | os.O_CREAT); '
          f'os.write(fd, {content!r}.encode()); fcntl.flock(fd, fcntl.LOCK_EX)')
  proc = _holder_process(tmp_path, body)
  try:
    assert lock.read_text() == content
    with pytest.raises(runlock.RunLockedError,
                       match=r'another run \(details unknown: its lock file is empty or '
                             r'unreadable\) is using'):
      with runlock.hold(tmp_path):
        pass
  finally:
    proc.kill()
    proc.wait()
