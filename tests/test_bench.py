"""The throughput benchmark's command runs and reports what it measured."""

import json

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
