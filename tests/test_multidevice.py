"""1 device vs 8 (virtual CPU) devices: same gradients, losses and parameters.

Tolerances. On 8 devices the batch's sums (the loss, every gradient) are
reduced in a different order than on 1, so float32 results differ in the last
bits: relative differences of ~1e-7..1e-6, whatever the CPU. Those are checked
tightly: the first step's gradients (relative norm 1e-4) and the losses
(1e-5). Parameters after several optimizer steps are not: Adam and AdaGrad
divide a gradient by its own running magnitude, so a gradient entry near zero
moves its parameter by about +-lr whatever its size, and a last-bit difference
can flip that sign. The parameters are therefore compared relative to how far
training moved them (norm per leaf, 2%); a real sharding fault (a row updated
on the wrong shard, a missing cross-device sum) moves them by tens of percent.
Measured on one AMD EPYC: gradients 4e-7, losses 5e-7, parameters 0.2%.
"""

import json
import os
import subprocess
import sys

import pytest

from conftest import cli_env

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.fixture(scope='module')
def result():
  # The repository root on PYTHONPATH (pepnet_jax imports uninstalled); four programs compiled
  # for a few steps each: the tests' fast-compile level (conftest.FAST_COMPILE).
  env = cli_env(cache=False, fast_compile=True)
  out = subprocess.run([sys.executable, os.path.join(HERE, 'multidevice_check.py')],
                       capture_output=True, text=True, env=env, timeout=900)
  assert out.returncode == 0, out.stderr[-3000:]
  return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize('update', ['embedding', 'dense'])
def test_eight_devices_match_one(result, update):
  assert result['devices'] == 8
  assert result['mesh_sizes'] == [1, 8, 1]  # mesh.num_devices = 1, 8, left out
  r = result[update]
  assert r['table_sharded'], 'the large tables should be row-sharded over the 8 devices'
  assert r['layout_kept'], 'a train step should return the state in the layout jit_steps chose'
  assert r['eval_replicated'], 'evaluation should return its probabilities replicated'
  assert r['moved'] > 1e-4  # training changed the tables, so equality is not vacuous
  assert r['init_param_diff'] == 0.0, r
  assert r['grad_rel_diff'] < 1e-4, r
  assert r['max_loss_diff'] < 1e-5, r
  assert r['param_rel_diff'] < 2e-2, r
