"""1 device vs 8 (virtual CPU) devices: same losses and parameters."""

import json
import os
import subprocess
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope='module')
def result():
  # The repository root on the path: the check imports pepnet_jax even where the
  # package is not installed into this interpreter.
  path = os.pathsep.join(filter(None, [os.path.dirname(HERE), os.environ.get('PYTHONPATH')]))
  env = dict(os.environ, JAX_PLATFORMS='cpu', PYTHONPATH=path)
  out = subprocess.run([sys.executable, os.path.join(HERE, 'multidevice_check.py')],
                       capture_output=True, text=True, env=env, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('update', ['embedding', 'dense'])
def test_eight_devices_match_one(result, update):
  assert result['devices'] == 8
  r = result[update]
  assert r['table_sharded'], 'the large tables should be row-sharded over the 8 devices'
  assert r['moved'] > 1e-4  # training changed the tables, so equality is not vacuous
  assert r['max_loss_diff'] < 1e-5, r
  assert r['max_param_diff'] < 1e-5 * max(1.0, r['param_scale']), r
