"""The throughput benchmark's command runs and reports what it measured."""

import json
import types

import pytest

from pepnet_jax import bench


@pytest.mark.slow  # compiles and times the benchmark model (~15 s); a measurement tool, not the library
def test_small_workload_reports_rates_and_flops(tmp_path):
  out = bench.main(['--workloads', 'small', '--batch_sizes', '64', '--steps', '2',
                    '--repeats', '1', '--out', str(tmp_path / 'b.json')])
  (row,) = out['results']
  assert row['batch_size'] == 64 and row['train_examples_per_sec'] > 0
  assert row['train_step_flops'] > 0
  assert json.loads((tmp_path / 'b.json').read_text())['results'][0]['workload'] == 'small'


def test_kernel_share_counts_faults_per_step_and_the_kernel_share():
  r = lambda minflt, user, system: types.SimpleNamespace(ru_minflt=minflt, ru_utime=user, ru_stime=system)
  k = bench.kernel_share(r(100, 1.0, 0.5), r(1100, 4.0, 1.5), n_steps=10)
  assert k == {'page_faults_per_step': 100.0, 'kernel_cpu_share': 0.25}
  assert bench.kernel_share(r(0, 1.0, 0.5), r(0, 1.0, 0.5), 1)['kernel_cpu_share'] is None


def test_set_overrides_config_fields_and_names_a_bad_path():
  from pepnet_jax import configs
  c = bench.apply_overrides(configs.base_config(), ['model.epnet_hidden=0', 'model.tower=(8, 4)',
                                                    'model.activation=gelu'])
  assert (c.model.epnet_hidden, tuple(c.model.tower), c.model.activation) == (0, (8, 4), 'gelu')
  with pytest.raises(ValueError, match='model.epnet_width'):
    bench.apply_overrides(configs.base_config(), ['model.epnet_width=0'])
  with pytest.raises(ValueError, match='PATH=VALUE'):
    bench.apply_overrides(configs.base_config(), ['model.epnet_hidden'])
  with pytest.raises(SystemExit):
    bench.main(['--workloads', 'small', '--set', 'nope.x=1'])


def test_unknown_workload_is_named():
  with pytest.raises(SystemExit):
    bench.main(['--workloads', 'tiny'])


@pytest.mark.slow  # generates 40,000 KuaiRand-format rows and compiles the full 40-field step
def test_kuairand_workload_times_the_real_step(tmp_path):
  out = bench.main(['--workloads', 'kuairand', '--batch_sizes', '256', '--steps', '2',
                    '--repeats', '1', '--kuairand_rows', '40000',
                    '--data_cache', str(tmp_path / 'data_cache'),
                    '--out', str(tmp_path / 'k.json')])
  (row,) = out['results']
  assert row['fields'] == 40 and row['recipe'] == 'converge'
  assert row['fed_train_examples_per_sec'] > 0 and row['evaluate_rows_per_sec'] > 0
  assert row['page_faults_per_step'] >= 0 and 0 <= row['kernel_cpu_share'] <= 1
  assert json.loads((tmp_path / 'k.json').read_text())['allocator']
