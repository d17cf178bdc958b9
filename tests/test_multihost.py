"""Two processes on one machine (CPU, gloo) train like one process with two devices.

Each process reads only its own data shard (its contiguous half of the training rows); the
one-process run emulates the two shards (config.data.shards=2), so both feed the same global
batches, step by step, and end with the same parameters."""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

from conftest import cli_env
from pepnet_jax.training import checkpoint

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
STEPS = 12
ARGS = ['--config', os.path.join(REPO, 'experiments', 'demo.py') + ':quick',
        f'--config.train.num_steps={STEPS}', '--config.train.checkpoint_every=6',
        '--config.model.tower=(32,16)', '--config.data.batch_size=128',
        '--config.data.eval_batch_size=512', '--config.mesh.num_devices=0']


def env_for(devices):
  return cli_env(cache=False, XLA_FLAGS=f'--xla_force_host_platform_device_count={devices}')


def free_port():
  with socket.socket() as s:
    s.bind(('127.0.0.1', 0))
    return s.getsockname()[1]


def params_at(workdir, step):
  tree = checkpoint.load_state_arrays(str(workdir), step)
  return _flat(tree['params'])


def _flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    out.update(_flat(v, f'{prefix}{k}/') if isinstance(v, dict) else {prefix + k: v})
  return out


@pytest.mark.slow  # three CLI runs, two as one jax.distributed job (~60 s); 8 devices == 1 stays in the default run (test_multidevice.py)
def test_two_processes_match_one_process_with_two_devices(tmp_path):
  run_py = os.path.join(REPO, 'run.py')
  data = tmp_path / 'data'
  single = tmp_path / 'single'
  out = subprocess.run([sys.executable, run_py, *ARGS, f'--workdir={single}',
                        f'--config.data.dir={data}', '--config.data.shards=2'],
                       env=env_for(2), capture_output=True, text=True, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  multi = tmp_path / 'multi'
  port = free_port()
  procs = [subprocess.Popen(
      [sys.executable, run_py, *ARGS, f'--workdir={multi}', f'--config.data.dir={data}',
       '--config.distributed.enabled=true',
       f'--config.distributed.coordinator_address=127.0.0.1:{port}',
       '--config.distributed.num_processes=2', f'--config.distributed.process_id={i}'],
      env=env_for(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  logs = [p.communicate(timeout=900)[0] for p in procs]
  assert all(p.returncode == 0 for p in procs), '\n'.join(l[-3000:] for l in logs)
  assert 'Evaluation on the test split' in logs[0]
  a, b = params_at(single, STEPS), params_at(multi, STEPS)
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
  # The mid-run checkpoint written by both processes restores too.
  assert params_at(multi, 6).keys() == a.keys()


@pytest.mark.slow  # a two-process job killed and resumed (~60 s); one process's signal handling stays in the default run (test_faults.py)
def test_sigterm_to_one_host_stops_both_at_the_same_step(tmp_path):
  """Preemption reaches hosts at different steps; a host that stopped alone
  would leave the other waiting in a collective. Both stop together, save one
  checkpoint at the same step and exit 143."""
  import re
  import signal
  import time
  run_py = os.path.join(REPO, 'run.py')
  data, multi, port = tmp_path / 'data', tmp_path / 'multi', free_port()
  args = [a for a in ARGS if not a.startswith('--config.train.num_steps')]
  procs = [subprocess.Popen(
      [sys.executable, run_py, *args, '--config.train.num_steps=3000',
       '--config.train.log_every=5', '--config.train.checkpoint_every=0',
       '--config.train.patience=0', f'--workdir={multi}', f'--config.data.dir={data}',
       '--config.distributed.enabled=true',
       f'--config.distributed.coordinator_address=127.0.0.1:{port}',
       '--config.distributed.num_processes=2', f'--config.distributed.process_id={i}'],
      env=env_for(1), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
      for i in range(2)]
  deadline = time.time() + 600
  for line in procs[0].stdout:
    if re.match(r'step +\d+/3000', line) or time.time() > deadline:
      break
  procs[1].send_signal(signal.SIGTERM)
  logs = [p.communicate(timeout=600)[0] for p in procs]
  assert [p.returncode for p in procs] == [143, 143], '\n'.join(l[-3000:] for l in logs)
  stopped = {int(m) for l in logs for m in re.findall(r'stopped at step (\d+) of 3000', l)}
  assert len(stopped) == 1, logs
  step = stopped.pop()
  assert step % 5 == 0 and 0 < step < 3000
  assert sorted(int(n) for n in os.listdir(multi / 'checkpoints') if n.isdigit()) == [step]
