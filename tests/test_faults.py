"""Fault injection through the real CLI (run.py in a subprocess) on tiny generated data.

Each test plays one thing that happens to real runs: preemption (SIGTERM),
Ctrl-C, a diverging learning rate, a damaged newest checkpoint, a second run
in the same workdir, a full disk while saving, a config that cannot mean
what it says. What must hold: nothing already trained is lost, nothing
non-finite is saved, and the user reads one clear line instead of a traceback.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from conftest import REPO, cli_env
from pepnet_jax.training import checkpoint

STEPS = 120
COMMON = ['--config', os.path.join(REPO, 'experiments', 'demo.py') + ':quick',
          '--config.data.generate.rows=12000', f'--config.train.num_steps={STEPS}',
          '--config.train.checkpoint_every=40', '--config.train.log_every=10',
          '--config.model.tower=(16,)', '--config.model.ppnet_hidden=8',
          '--config.data.batch_size=64', '--config.data.eval_batch_size=4096',
          '--config.mesh.num_devices=1', '--config.train.patience=0']
ENV = cli_env()


def command(workdir, data_dir, *extra):
  return [sys.executable, os.path.join(REPO, 'run.py'), *COMMON, f'--workdir={workdir}',
          f'--config.data.dir={data_dir}', *extra]


def run_cli(workdir, data_dir, *extra, expect=0):
  out = subprocess.run(command(workdir, data_dir, *extra), capture_output=True, text=True,
                       env=ENV, timeout=600)
  assert out.returncode == expect, out.stdout[-3000:] + out.stderr[-3000:]
  return out


def start_and_wait_for(workdir, data_dir, pattern: str, *extra):
  """Starts a run; returns (process, output so far) once a line contains ``pattern``."""
  proc = subprocess.Popen(command(workdir, data_dir, *extra), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, env=ENV)
  seen = []
  deadline = time.time() + 300
  for line in proc.stdout:
    seen.append(line)
    if pattern in line or time.time() > deadline:
      break
  return proc, seen


def params(workdir, step):
  return checkpoint.load_state_arrays(str(workdir), step)['params']


def assert_same_params(a, b):
  import jax
  la, lb = jax.tree.leaves_with_path(a), jax.tree.leaves_with_path(b)
  assert [p for p, _ in la] == [p for p, _ in lb]
  for (p, x), (_, y) in zip(la, lb):
    np.testing.assert_array_equal(x, y, err_msg=str(p))


def saved_steps(workdir):
  d = os.path.join(workdir, 'checkpoints')
  return sorted(int(n) for n in os.listdir(d) if n.isdigit())


def no_traceback(out):
  text = out.stdout + out.stderr
  assert 'Traceback' not in text, text[max(0, text.find('Traceback') - 500):][:3000]


@pytest.fixture(scope='module')
def base(tmp_path_factory):
  """The data and one uninterrupted run every other test compares with."""
  root = tmp_path_factory.mktemp('faults')
  data_dir = root / 'data'
  full = root / 'full'
  run_cli(full, data_dir)
  return dict(root=root, data=data_dir, full=full)


# SIGINT goes through the handler SIGTERM takes; its run (~13 s) is under -m slow.
@pytest.mark.parametrize('sig,code', [(signal.SIGTERM, 143),
                                      pytest.param(signal.SIGINT, 130, marks=pytest.mark.slow)])
def test_signal_saves_exits_cleanly_and_resumes_bit_identically(base, sig, code):
  wd = base['root'] / f'sig{int(sig)}'
  proc, _ = start_and_wait_for(wd, base['data'], 'step      50/')
  proc.send_signal(sig)
  rest, _ = proc.communicate(timeout=300)
  assert proc.returncode == code, rest
  assert 'Traceback' not in rest and 'KeyboardInterrupt' not in rest, rest
  stopped = saved_steps(wd)[-1]
  assert 50 <= stopped < STEPS, stopped
  assert f'stopped at step {stopped} of {STEPS}; saved a checkpoint' in rest
  assert not (wd / 'report.json').exists()
  out = run_cli(wd, base['data'])
  assert f'Resumed from checkpoint at step {stopped}' in out.stdout
  assert_same_params(params(base['full'], STEPS), params(wd, STEPS))
  records = [json.loads(l) for l in open(wd / 'metrics.jsonl')]
  keys = [(r['step'], r['split']) for r in records]
  assert len(keys) == len(set(keys)), 'a step was logged twice'
  assert keys == [(r['step'], r['split']) for r in map(json.loads, open(base['full'] / 'metrics.jsonl'))]


def test_diverging_run_stops_without_saving_nonfinite_state(base):
  wd = base['root'] / 'nan'
  out = run_cli(wd, base['data'], '--config.optim.dense.lr=1e30',
                '--config.optim.embedding.lr=1e30', expect=3)
  no_traceback(out)
  assert 'the loss is not finite at step' in out.stderr
  assert 'is_click' in out.stderr  # the per-task losses
  assert not (wd / 'report.json').exists()
  for step in (saved_steps(wd) if (wd / 'checkpoints').exists() else []):
    leaves = [np.asarray(x) for x in __import__('jax').tree.leaves(params(wd, step))]
    assert all(np.isfinite(x).all() for x in leaves), step


def test_skip_mode_gives_up_after_max_skipped_steps_in_a_row(base):
  """With nonfinite='skip' a run whose every step diverges skips exactly
  max_skipped_steps consecutive steps, each named with a warning, then stops at the next
  one naming the setting, with no report and nothing non-finite saved. (That a skipped
  step leaves the state as it was and that a finite step resets the count, so a run with
  rare non-finite steps finishes, is tested on the step and the guard in
  tests/test_reliability.py.)"""
  import re
  wd = base['root'] / 'skip'
  out = run_cli(wd, base['data'], '--config.optim.dense.lr=1e30',
                '--config.optim.embedding.lr=1e30', "--config.train.nonfinite=skip",
                '--config.train.max_skipped_steps=3', expect=3)
  no_traceback(out)
  skipped = [int(s) for s in re.findall(r'step (\d+) is not finite \(.*\); skipped it',
                                         out.stdout)]
  assert len(skipped) == 3 and skipped == list(range(skipped[0], skipped[0] + 3)), skipped
  stopped = re.search(r'the loss is not finite at step (\d+)', out.stderr)
  assert stopped and int(stopped.group(1)) == skipped[-1] + 1, out.stderr[-2000:]
  assert '4 steps in a row were not finite (config.train.max_skipped_steps=3)' in out.stderr
  assert not (wd / 'report.json').exists()
  for step in (saved_steps(wd) if (wd / 'checkpoints').exists() else []):
    leaves = [np.asarray(x) for x in __import__('jax').tree.leaves(params(wd, step))]
    assert all(np.isfinite(x).all() for x in leaves), step


def _truncate_a_data_file(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir / 'state') for f in fs
           if 'd' in d.split(os.sep)[-1] or f.startswith('ocdbt') or d.endswith('d')]
  files = files or [os.path.join(d, f) for d, _, fs in os.walk(step_dir / 'state') for f in fs]
  big = max(files, key=os.path.getsize)
  with open(big, 'r+b') as f:
    f.truncate(os.path.getsize(big) // 2)


def _empty_metadata(step_dir):
  open(step_dir / 'state' / '_METADATA', 'w').close()


def _delete_a_file(step_dir):
  files = [os.path.join(d, f) for d, _, fs in os.walk(step_dir / 'state') for f in fs]
  os.remove(max(files, key=os.path.getsize))


def _drop_meta_item(step_dir):
  shutil.rmtree(step_dir / 'meta')


# Every damage takes the same fallback (the restore fails, the previous step is tried); a
# damaged data file and damaged metadata run by default, the other two (~7 s each) under
# -m slow.
@pytest.mark.parametrize('damage', [_truncate_a_data_file, _empty_metadata,
                                    pytest.param(_delete_a_file, marks=pytest.mark.slow),
                                    pytest.param(_drop_meta_item, marks=pytest.mark.slow)])
def test_damaged_newest_checkpoint_falls_back_to_the_previous_one(base, damage):
  wd = base['root'] / f'damaged{damage.__name__}'
  shutil.copytree(base['full'], wd)
  (wd / 'report.json').unlink()
  newest = saved_steps(wd)[-1]
  assert newest == STEPS
  damage(wd / 'checkpoints' / str(newest))
  out = run_cli(wd, base['data'])
  no_traceback(out)
  assert f'checkpoint step {newest}' in out.stderr and 'damaged' in out.stderr
  assert 'does not fit' not in out.stderr
  previous = saved_steps(base['full'])[-2]
  assert f'Resumed from checkpoint at step {previous}' in out.stdout
  assert_same_params(params(base['full'], STEPS), params(wd, STEPS))


def test_a_second_run_in_the_same_workdir_is_refused(base):
  wd = base['root'] / 'busy'
  first, _ = start_and_wait_for(wd, base['data'], 'step      10/')
  try:
    out = run_cli(wd, base['data'], expect=1)
    no_traceback(out)
    assert f'pid {first.pid}' in out.stderr and str(wd) in out.stderr
  finally:
    first.kill()
    first.wait()
  # A killed run leaves no stuck lock: the next run resumes.
  out = run_cli(wd, base['data'])
  assert 'Evaluation on the test split' in out.stdout


@pytest.mark.slow  # ~20 s of CLI runs; the rule itself (a failed save keeps the previous
# checkpoint, one message) is tested in-process by test_checkpoint_faults.py's
# test_disk_full_during_async_save_keeps_previous_checkpoint in the default run
def test_disk_full_while_saving_keeps_the_previous_checkpoint(base):
  """Files may not grow past 64 KB (as on a full disk): the save of a new
  step fails with one clear message, and the next run resumes from the last
  complete checkpoint."""
  wd = base['root'] / 'diskfull'
  shutil.copytree(base['full'], wd)
  (wd / 'report.json').unlink()

  more = f'--config.train.num_steps={STEPS + 40}'
  # An ignored SIGXFSZ is inherited: writes past the limit fail with EFBIG.
  cmd = ['bash', '-c', 'trap "" XFSZ; ulimit -f 64; exec "$@"', 'bash',
         *command(wd, base['data'], more)]
  out = subprocess.run(cmd, capture_output=True, text=True, env=ENV, timeout=600)
  assert out.returncode == 1, out.stdout[-2000:] + out.stderr[-2000:]
  no_traceback(out)
  assert f'step {STEPS + 40}' in out.stderr, out.stderr[-2000:]
  assert saved_steps(wd)[-1] == STEPS
  out = run_cli(wd, base['data'], more)
  assert f'Resumed from checkpoint at step {STEPS}' in out.stdout


@pytest.mark.parametrize('flag,field', [('--config.train.num_epochs=0', 'num_epochs'),
                                        ('--config.train.num_steps=-5', 'num_steps')])
def test_meaningless_training_length_is_a_config_error(base, flag, field, tmp_path):
  out = run_cli(tmp_path / 'wd', base['data'], flag, '--config.train.num_steps=0'
                if field == 'num_epochs' else flag, expect=1)
  no_traceback(out)
  assert f'config.train.{field}=' in out.stderr


def test_data_errors_print_one_message_and_log_the_traceback(tmp_path):
  wd = tmp_path / 'wd'
  out = subprocess.run(command(wd, tmp_path / 'nowhere', '--config.data.generate.rows=0'),
                       capture_output=True, text=True, env=ENV, timeout=300)
  assert out.returncode == 1
  no_traceback(out)
  assert out.stderr.strip().startswith('error:'), out.stderr
  assert len(out.stderr.strip().splitlines()) <= 3
  assert 'Traceback' in (wd / 'error.log').read_text()


def test_the_out_of_vocabulary_rows_are_trained(base):
  """With config.train.oov_rate > 0 the OOV row of each id table gets
  gradient (its AdaGrad sum grows past the initial 0.1), so unseen users and
  videos score with a learned row, not the random initial one."""
  acc = checkpoint.load_state_arrays(str(base['full']), STEPS)['emb_acc']['embed']
  from pepnet_jax.features import OOV_ID
  for name in ('user_id', 'video_id', 'author_id'):
    assert acc[name][OOV_ID].max() > 0.1 + 1e-6, name
