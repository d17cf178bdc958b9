"""Checkpointer under faults: damaged steps, config changes, NaN states, failed writes."""

import collections
import errno
import glob
import json
import os
import shutil
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from pepnet_jax.training import checkpoint as ckpt

# Orbax debris (abandoned coroutines, callbacks into closed loops) must not leak.
pytestmark = pytest.mark.filterwarnings('error::pytest.PytestUnraisableExceptionWarning')


def make_state(scale=1.0, w_shape=(48, 40)):
  """A tiny train-state-like tree; 'w' is big enough for its own data file."""
  w = jnp.arange(np.prod(w_shape), dtype=jnp.float32).reshape(w_shape) / 100
  return {'step': jnp.asarray(int(scale), jnp.int32),
          'params': {'w': w * scale, 'b': jnp.full((4,), scale, jnp.bfloat16)},
          'opt': [jnp.ones((3,)) * scale]}


def assert_tree_equal(a, b):
  """Same tree (every key and container, so a lost or extra leaf fails), and equal leaves
  of the same dtype and shape."""
  la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
  assert jax.tree.structure(a) == jax.tree.structure(b), ([p for p, _ in la], [p for p, _ in lb])
  for (p, x), (_, y) in zip(la, lb, strict=True):
    assert (np.shape(x), np.asarray(x).dtype) == (np.shape(y), np.asarray(y).dtype), p
    np.testing.assert_array_equal(np.asarray(x, np.float32), np.asarray(y, np.float32),
                                  err_msg=jax.tree_util.keystr(p))


@pytest.fixture
def saved(tmp_path):
  """A directory with steps 10 (scale 1) and 20 (scale 2)."""
  d = str(tmp_path / 'checkpoints')
  c = ckpt.Checkpointer(d, max_to_keep=3)
  c.save(10, make_state(1.0), {'examples': 100})
  c.save(20, make_state(2.0), {'examples': 200})
  c.close()
  return d


def biggest_file(step_dir):
  files = [f for f in glob.glob(os.path.join(step_dir, 'state', '**'), recursive=True)
           if os.path.isfile(f)]
  return max(files, key=os.path.getsize)


def truncate_array(s):
  f = biggest_file(s)
  os.truncate(f, os.path.getsize(f) // 2)


def delete_array(s):
  os.remove(biggest_file(s))


def delete_manifest(s):
  os.remove(os.path.join(s, 'state', 'manifest.ocdbt'))


def empty_metadata(s):
  open(os.path.join(s, 'state', '_METADATA'), 'w').close()


def empty_meta_json(s):
  open(os.path.join(s, 'meta', 'metadata'), 'w').close()


def half_copied(s):
  shutil.rmtree(os.path.join(s, 'meta'))


DAMAGE = {'truncated array file': truncate_array, 'deleted array file': delete_array,
          'deleted manifest': delete_manifest, 'emptied _METADATA': empty_metadata,
          'emptied meta json': empty_meta_json, 'missing meta item': half_copied}


def warnings_in(err):
  return [line for line in err.splitlines() if line.startswith('warning:')]


@pytest.mark.parametrize('damage', list(DAMAGE))
def test_damaged_newest_step_falls_back_with_one_warning(saved, damage, capfd):
  DAMAGE[damage](os.path.join(saved, '20'))
  c = ckpt.Checkpointer(saved)
  state, meta, step = c.restore_latest(make_state(0.0))
  assert step == 10 and meta == {'examples': 100, 'step': 10}
  assert_tree_equal(state, make_state(1.0))
  err = capfd.readouterr().err
  warns = warnings_in(err)
  assert len(warns) == 1, err
  assert warns[0].startswith(f'warning: checkpoint step 20 in {saved} is damaged (')
  assert warns[0].endswith('; falling back to step 10')
  assert 'Traceback' not in err and len(warns[0]) < 500
  assert os.path.isdir(os.path.join(saved, '20'))  # readers never move anything
  # Asking for the damaged step (or the strict latest) is a clear error, not
  # a ValueError the trainer would take for a config change.
  for requested in (None, 20):
    with pytest.raises(ckpt.CheckpointDamaged, match='checkpoint step 20 .* is damaged') as e:
      c.restore(make_state(0.0), requested)
    assert not isinstance(e.value, ValueError) and e.value.step == 20
  assert_tree_equal(c.restore(make_state(0.0), 10)[0], make_state(1.0))
  c.close()


def test_damage_reasons_name_what_is_wrong(saved, capfd):
  empty_metadata(os.path.join(saved, '20'))
  ckpt.Checkpointer(saved).restore_latest(make_state(0.0))
  assert '(state/_METADATA is empty)' in capfd.readouterr().err
  half_copied(os.path.join(saved, '20'))
  with pytest.raises(ckpt.CheckpointDamaged, match="'meta' item is missing"):
    ckpt.Checkpointer(saved).restore(make_state(0.0), 20)


def test_changed_target_is_a_mismatch_not_damage(saved, capfd):
  c = ckpt.Checkpointer(saved)
  wider = make_state(0.0, w_shape=(48, 41))
  with pytest.raises(ckpt.CheckpointMismatch) as e:
    c.restore_latest(wider)
  assert isinstance(e.value, ValueError) and e.value.step == 20
  assert e.value.paths == ['params/w']
  assert 'params/w: saved shape (48, 40), target (48, 41)' in str(e.value)
  renamed = make_state(0.0)
  renamed['params']['kernel'] = renamed['params'].pop('w')
  renamed['opt'][0] = renamed['opt'][0].astype(jnp.bfloat16)
  with pytest.raises(ckpt.CheckpointMismatch) as e:
    c.restore(renamed, 10)
  assert e.value.step == 10
  assert e.value.paths == ['opt/0', 'params/kernel', 'params/w']
  assert 'opt/0: saved dtype float32, target bfloat16' in e.value.differences
  # A damaged newest step, then an older readable one that does not fit: the
  # mismatch is reported for the older step (no fallback beyond it).
  empty_metadata(os.path.join(saved, '20'))
  with pytest.raises(ckpt.CheckpointMismatch) as e:
    c.restore_latest(wider)
  assert e.value.step == 10
  assert len(warnings_in(capfd.readouterr().err)) == 1
  c.close()


def test_no_readable_step_lists_them_and_moves_nothing(saved):
  empty_metadata(os.path.join(saved, '20'))
  truncate_array(os.path.join(saved, '10'))
  c = ckpt.Checkpointer(saved)
  with pytest.raises(ckpt.NoReadableCheckpoint) as e:
    c.restore_latest(make_state(0.0), move_damaged=True)
  assert sorted(e.value.damaged) == [10, 20]
  assert 'step 20: state/_METADATA is empty' in str(e.value)
  assert 'step 10: state: ' in str(e.value)
  assert sorted(os.listdir(saved)) == ['10', '20']
  c.close()


def test_move_damaged_frees_the_step_for_saves_and_keep_n(saved, capfd):
  truncate_array(os.path.join(saved, '20'))
  c = ckpt.Checkpointer(saved, max_to_keep=2)
  _, _, step = c.restore_latest(make_state(0.0), move_damaged=True)
  assert step == 10 and c.latest_step() == 10
  warns = warnings_in(capfd.readouterr().err)
  assert len(warns) == 1 and warns[0].endswith(f'moved it to {saved}/20.damaged')
  # Resumed from 10: steps 20 and 30 save again (left in place, the damaged
  # step 20 would have made orbax skip step 20 and collide at 20), and keep-N
  # prunes the good step 10, never the damaged copy.
  assert c.save(20, make_state(3.0)) and c.save(30, make_state(4.0))
  c.close()
  assert sorted(os.listdir(saved)) == ['20', '20.damaged', '30']
  state, _, step = ckpt.Checkpointer(saved).restore_latest(make_state(0.0))
  assert step == 30
  assert_tree_equal(state, make_state(4.0))
  # A step number damaged again does not overwrite the copy set aside before.
  os.mkdir(os.path.join(saved, '30.damaged'))
  empty_metadata(os.path.join(saved, '30'))
  _, _, step = ckpt.Checkpointer(saved).restore_latest(make_state(0.0), move_damaged=True)
  assert step == 20
  assert sorted(os.listdir(saved)) == ['20', '20.damaged', '30.damaged', '30.damaged-2']


def test_save_refuses_nonfinite_state(saved):
  c = ckpt.Checkpointer(saved, max_to_keep=2)
  bad = make_state(3.0)
  bad['params']['w'] = bad['params']['w'].at[1, 2].set(jnp.nan)
  bad['params']['b'] = bad['params']['b'].at[0].set(jnp.inf)
  with pytest.raises(ckpt.NonFiniteStateError) as e:
    c.save(30, bad)
  assert e.value.step == 30 and e.value.paths == ['params/b', 'params/w']
  assert 'refusing to save checkpoint step 30' in str(e.value)
  assert '2 of 3 float arrays hold NaN/inf' in str(e.value)
  assert 'last checkpoint (step 20) is kept' in str(e.value)
  # Host numpy leaves are checked too; int leaves are not float arrays.
  with pytest.raises(ckpt.NonFiniteStateError, match='opt/0'):
    c.save(30, dict(make_state(3.0), opt=[np.array([1.0, -np.inf], np.float32)]))
  # Nothing was written and keep-N deleted nothing.
  assert c.all_steps() == [10, 20]
  assert c.save(30, make_state(3.0))
  c.close()
  assert sorted(os.listdir(saved)) == ['20', '30']


def test_failed_sync_write_is_one_clear_error(saved, monkeypatch):
  c = ckpt.Checkpointer(saved, max_to_keep=2)

  def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, 'No space left on device')
  monkeypatch.setattr(c.manager, 'save', no_space)
  with pytest.raises(ckpt.CheckpointSaveError) as e:
    c.save(30, make_state(3.0))
  assert isinstance(e.value, OSError) and e.value.errno == errno.ENOSPC
  assert str(e.value) == (f'checkpoint step 30 could not be saved to {saved}: [Errno 28] No '
                          'space left on device; the latest complete checkpoint is step 20')
  c.close()


DISK_FULL = textwrap.dedent('''
    import json, resource, signal, sys
    import jax.numpy as jnp, numpy as np
    from pepnet_jax.training import checkpoint as ckpt
    small = {'w': jnp.ones((4, 4))}
    big = {'w': jnp.asarray(np.random.default_rng(0).random((100, 100), np.float32))}
    c = ckpt.Checkpointer(sys.argv[1], max_to_keep=1)
    c.save(10, small)
    c.wait()
    # Files may not grow past 20 kB: the big state's write fails with EFBIG.
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (20000, 20000))
    started = c.save(20, big)
    try:
      c.save(30, small)  # the async failure of step 20 surfaces here
    except ckpt.CheckpointSaveError as e:
      print(json.dumps({'started': started, 'msg': str(e), 'step': e.step, 'errno': e.errno}))
    c.close()
''')


def test_disk_full_during_async_save_keeps_previous_checkpoint(tmp_path):
  d = str(tmp_path / 'checkpoints')
  proc = subprocess.run([sys.executable, '-c', DISK_FULL, d], capture_output=True, text=True,
                        timeout=120)
  assert proc.returncode == 0, proc.stderr
  out = json.loads(proc.stdout.strip().splitlines()[-1])
  assert out['started'] and out['step'] == 20 and out['errno'] == errno.EFBIG
  assert out['msg'].startswith(f'checkpoint step 20 could not be saved to {d}: [Errno 27] '
                               'File too large')
  assert out['msg'].endswith('the latest complete checkpoint is step 10')
  assert 'Traceback' not in proc.stderr and 'ERROR' not in proc.stderr, proc.stderr
  # keep-N (max_to_keep=1) did not drop step 10 for the failed step 20, the
  # partial write is gone, and the run could resume from step 10.
  assert sorted(os.listdir(d)) == ['10']
  state, meta, step = ckpt.Checkpointer(d).restore_latest({'w': jnp.zeros((4, 4))})
  assert step == 10 and meta == {'step': 10}
  np.testing.assert_array_equal(np.asarray(state['w']), np.ones((4, 4)))


def test_save_refuses_up_front_when_the_disk_is_too_full(saved, monkeypatch):
  c = ckpt.Checkpointer(saved, max_to_keep=2)
  before = c.all_steps()
  usage = collections.namedtuple('usage', 'total used free')
  monkeypatch.setattr(ckpt.shutil, 'disk_usage', lambda p: usage(10 << 20, 10 << 20, 1000))
  with pytest.raises(ckpt.CheckpointSaveError, match=r'No space left.*latest complete checkpoint'):
    c.save(30, make_state(3.0))
  assert c.all_steps() == before
  c.close()


def test_replace_writes_a_step_that_is_already_there(saved):
  """The best-step folder of a resumed run: a step kept by an earlier, interrupted run is
  validated again and saved over; without ``replace`` orbax refuses the second write."""
  c = ckpt.Checkpointer(saved, max_to_keep=3)
  with pytest.raises(ckpt.CheckpointSaveError, match='already exists'):
    c.save(20, make_state(3.0), {'examples': 300}, force=True)
    c.wait()
  c.close()
  c = ckpt.Checkpointer(saved, max_to_keep=3)
  assert c.save(20, make_state(3.0), {'examples': 300}, force=True, replace=True)
  c.wait()
  state, meta = c.restore(make_state(0.0), 20)
  c.close()
  assert_tree_equal(state, make_state(3.0))
  assert meta['examples'] == 300
  c = ckpt.Checkpointer(saved)
  assert c.all_steps() == [10, 20]
  c.close()
