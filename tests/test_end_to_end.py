"""End to end through run.py: train, kill mid-run and resume, evaluate, predict."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest

from conftest import REPO, cli_env
from pepnet_jax.training import checkpoint
from pepnet_jax.evaluation import metrics

STEPS = 60
COMMON = ['--config', os.path.join(REPO, 'experiments', 'demo.py') + ':quick',
          f'--config.train.num_steps={STEPS}', '--config.train.checkpoint_every=20',
          '--config.train.log_every=4', '--config.model.tower=(32,16)',
          '--config.data.batch_size=256', '--config.mesh.num_devices=1']


def run_cli(workdir, data_dir, *extra, wait=True):
  cmd = [sys.executable, os.path.join(REPO, 'run.py'), *COMMON, f'--workdir={workdir}',
         f'--config.data.dir={data_dir}', *extra]
  env = cli_env()  # a shared persistent compilation cache: later processes skip XLA compiles
  if not wait:
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
  out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
  assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
  return out.stdout


def final_params(workdir):
  return checkpoint.load_state_arrays(str(workdir), STEPS)['params']


def flat(tree, prefix=''):
  out = {}
  for k, v in tree.items():
    if isinstance(v, dict):
      out.update(flat(v, f'{prefix}{k}/'))
    else:
      out[prefix + k] = np.asarray(v)
  return out


@pytest.fixture(scope='module')
def runs(tmp_path_factory):
  root = tmp_path_factory.mktemp('e2e')
  data_dir = root / 'data'
  full = root / 'uninterrupted'
  stdout = run_cli(full, data_dir)  # generates the data on first use
  # Interrupted run: SIGKILL as soon as its first checkpoint has landed.
  killed = root / 'killed'
  proc = run_cli(killed, data_dir, wait=False)
  ckpts = killed / 'checkpoints'
  deadline = time.time() + 300
  while time.time() < deadline and proc.poll() is None:
    steps = [int(p) for p in os.listdir(ckpts) if p.isdigit()] if ckpts.exists() else []
    if any(0 < s < STEPS for s in steps):
      break
    time.sleep(0.05)
  proc.send_signal(signal.SIGKILL)
  proc.wait()
  assert not (killed / 'report.json').exists(), 'the run finished before it could be killed'
  resumed_stdout = run_cli(killed, data_dir)
  return dict(root=root, data_dir=data_dir, full=full, killed=killed, stdout=stdout,
              resumed_stdout=resumed_stdout)


def test_demo_prints_a_task_by_domain_table(runs):
  out = runs['stdout']
  assert 'Evaluation on the test split' in out
  for task in ('is_click', 'is_like', 'long_view'):
    assert task in out
  lines = [l.split() for l in out.splitlines()]
  domains = {l[0] for l in lines if len(l) >= 3 and l[1] == 'is_click'}
  assert {'all', '0', '1', '2', '4'} <= domains
  for name in ('report.json', 'report.png', 'config.json', 'metrics.jsonl'):
    assert (runs['full'] / name).exists(), name
  assert os.listdir(runs['full'] / 'tensorboard')


def test_killed_run_resumes_to_identical_parameters(runs):
  assert 'Resumed from checkpoint at step' in runs['resumed_stdout']
  a, b = flat(final_params(runs['full'])), flat(final_params(runs['killed']))
  assert a.keys() == b.keys()
  for k in a:
    np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_resume_with_a_changed_model_names_the_changed_fields(runs):
  """A finished run's checkpoint does not fit a wider tower: a short error that
  names the field, and config.json keeps the config the checkpoint was saved with."""
  before = (runs['killed'] / 'config.json').read_text()
  cmd = [sys.executable, os.path.join(REPO, 'run.py'), *COMMON, f'--workdir={runs["killed"]}',
         f'--config.data.dir={runs["data_dir"]}', '--config.model.tower=(48,16)']
  out = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                       env=cli_env())
  assert out.returncode != 0
  assert 'does not fit this config' in out.stderr and 'model.tower' in out.stderr
  assert 'Source: MISSING' not in out.stderr  # no orbax tree dump
  assert (runs['killed'] / 'config.json').read_text() == before


def test_predict_matches_evaluation(runs):
  """predict's probabilities give the report's AUC on the same file."""
  log = runs['data_dir'] / 'log_standard_4_22_to_5_08_pure.csv'
  out_csv = runs['root'] / 'pred.csv'
  run_cli(runs['full'], runs['data_dir'], '--mode=predict', f'--input={log}',
          f'--output={out_csv}')
  pred = pd.read_csv(out_csv)
  src = pd.read_csv(log, usecols=['user_id', 'video_id', 'time_ms', 'tab', 'is_click', 'date'])
  assert len(pred) == len(src)
  for c in ('user_id', 'video_id', 'time_ms', 'tab'):
    np.testing.assert_array_equal(pred[c].to_numpy(), src[c].to_numpy())
  # The evaluate mode on the test split (the same file's 04-29..05-08 rows).
  stdout = run_cli(runs['full'], runs['data_dir'], '--mode=evaluate', '--split=test')
  assert 'Evaluation on the test split' in stdout

  report = json.loads((runs['full'] / f'report_test_step{STEPS}.json').read_text())
  test_rows = src['date'].between(20220429, 20220508).to_numpy()
  got = metrics.auc(src['is_click'].to_numpy()[test_rows], pred['p_is_click'].to_numpy()[test_rows])
  assert abs(got - report['overall']['is_click']['auc']) < 1e-4


def test_oracle_comparison_reads_the_truth_files(runs):
  """The ceiling column against one computed here: the test split's rows (its dates, the
  run's domains) of the generated logs, their truth file's probabilities, and an AUC
  independent of pepnet_jax.evaluation.metrics (scipy's Mann-Whitney U)."""
  from scipy.stats import mannwhitneyu

  from pepnet_jax import configs
  from pepnet_jax.evaluation import oracle
  out = oracle.compare(str(runs['full']))
  table = {(r['domain'], r['task']): r for r in out['table']}
  report = json.loads((runs['full'] / 'report.json').read_text())
  data = configs.resolved_data(json.loads((runs['full'] / 'config.json').read_text()))['data']
  lo, hi = (int(d) for d in data['splits']['test'])
  tabs = [int(t) for t in data['domains']]
  frames = []
  for name in sorted(os.listdir(runs['data_dir'])):
    if name.startswith('log_standard_') and name.endswith('.csv'):
      log = pd.read_csv(runs['data_dir'] / name)
      truth = pd.read_csv(runs['data_dir'] / 'truth' / name)
      keep = (log['date'].between(lo, hi) & log['tab'].isin(tabs)).to_numpy()
      frames.append(pd.concat([log[keep].reset_index(drop=True),
                               truth[keep].reset_index(drop=True)], axis=1))
  rows = pd.concat(frames, ignore_index=True)
  assert out['rows'] == len(rows) == report['overall']['is_click']['impressions']
  assert {('all', 'is_click'), ('1', 'long_view')} <= set(table)

  def hand_auc(sub, task):
    y, p = sub[task].to_numpy().astype(bool), sub[f'p_{task}'].to_numpy()
    return mannwhitneyu(p[y], p[~y]).statistic / (y.sum() * (~y).sum())
  for (dom, task) in [('all', 'is_click'), ('all', 'long_view'), ('1', 'long_view')]:
    sub = rows if dom == 'all' else rows[rows['tab'] == int(dom)]
    r = table[(dom, task)]
    assert r['oracle_auc'] == pytest.approx(hand_auc(sub, task), abs=1e-9), (dom, task)
    model = report['overall'] if dom == 'all' else report['domains'][dom]
    assert r['model_auc'] == model[task]['auc']  # the run's own report, as written
    assert r['lift_share'] == pytest.approx((r['model_auc'] - 0.5) / (r['oracle_auc'] - 0.5))
  for task in ('is_click', 'long_view'):  # frequent labels: the oracle must win
    r = table[('all', task)]
    assert 0.5 < r['model_auc'] < r['oracle_auc'] < 1.0


def test_predict_in_small_chunks_writes_the_same_file(runs, monkeypatch):
  """Predict streams its input: six chunks give the file one chunk gives."""
  import ml_collections
  from pepnet_jax.evaluation import predict
  from pepnet_jax.data import errors
  log = runs['data_dir'] / 'log_standard_4_22_to_5_08_pure.csv'
  config = ml_collections.ConfigDict(json.loads((runs['full'] / 'config.json').read_text()))
  whole, small = runs['root'] / 'pred_whole.csv', runs['root'] / 'pred_small.csv'
  predict.predict_file(config, str(runs['full']), str(log), str(whole))
  n = len(pd.read_csv(log, usecols=['tab']))
  monkeypatch.setattr(errors, 'CHUNK_ROWS', n // 6 + 7)  # 5 full chunks and a short one
  out = predict.predict_file(config, str(runs['full']), str(log), str(small))
  assert out['rows'] == n
  assert whole.read_bytes() == small.read_bytes()
  assert not list(runs['root'].glob('*.tmp-*'))  # no temporary file left behind
