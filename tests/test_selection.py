"""Model selection: the best validation step, early stopping, the best checkpoint."""

import json
import os

import numpy as np
import pytest

from pepnet_jax import configs
from pepnet_jax.training import checkpoint, selection, train

CURVE = [0.60, 0.65, 0.70, 0.68, 0.69, 0.67, 0.71, 0.72]  # mean AUC per validation


def test_selector_picks_the_best_and_stops_after_patience():
  s = selection.Selector(metric='mean_auc', patience=3)
  flags = [s.update(10 * (i + 1), {'mean_auc': v}) for i, v in enumerate(CURVE[:6])]
  assert flags == [True, True, True, False, False, False]
  assert s.best_step == 30 and s.best_value == 0.70 and s.should_stop


def test_selector_minimises_losses_and_ignores_nan():
  s = selection.Selector(metric='mean_logloss', patience=2)
  for step, v in [(1, 0.5), (2, 0.4), (3, float('nan')), (4, 0.45)]:
    s.update(step, {'mean_logloss': v})
  assert s.mode == 'min' and s.best_step == 2 and s.should_stop


def test_selector_min_delta_and_unknown_metric():
  s = selection.Selector(metric='mean_auc', min_delta=0.01)
  s.update(1, {'mean_auc': 0.70})
  assert not s.update(2, {'mean_auc': 0.705})
  with pytest.raises(ValueError, match='select_metric'):
    s.update(3, {'mean_gauc': 0.7})


def test_selector_state_survives_a_resume():
  s = selection.Selector(metric='mean_auc', patience=3)
  for i, v in enumerate(CURVE[:4]):
    s.update(i + 1, {'mean_auc': v})
  r = selection.Selector.from_meta({'selection': json.loads(json.dumps(s.to_meta()))},
                                   'mean_auc', 3, 0.0)
  assert (r.best_step, r.best_value, r.evals_since_best) == (3, 0.70, 1)
  fresh = selection.Selector.from_meta({'selection': s.to_meta()}, 'mean_gauc', 3, 0.0)
  assert fresh.best_value is None  # another metric starts over


def tiny_config(tmp_path):
  c = configs.base_config()
  c.data.dir = str(tmp_path / 'data')
  c.data.generate = dict(rows=12000, users=300, videos=200, authors=60, seed=0, random_rows=0)
  c.data.batch_size = 64
  c.data.eval_batch_size = 4096
  c.model.tower = (16,)
  c.model.ppnet_hidden = 8
  c.optim = configs.optim_config(dense_lr=1e-3)
  c.mesh.num_devices = 1
  c.train.num_epochs = 50.0
  c.train.eval_every = 5
  c.train.patience = 3
  c.train.checkpoint_every = 5
  c.train.keep_checkpoints = 1   # periodic saves alone would prune the best step
  c.train.log_every = 5
  return c


def on_validation(monkeypatch, hook):
  """Runs ``hook(result, params)`` on each validation result (the 'valid' split's, not the
  report's) before the trainer reads it: tests fabricate curves or count validations."""
  real_setup, real_eval = train.setup_run, train.evaluate_dataset
  seen = {}

  def setup_run(config, workdir, data=None):
    out = real_setup(config, workdir, data)
    seen['valid'] = out[0]['valid']
    return out

  def evaluate(steps, params, dataset, spec, batch_size, extra_metrics=()):
    res = real_eval(steps, params, dataset, spec, batch_size, extra_metrics)
    if dataset is seen['valid']:
      hook(res, params)
    return res

  monkeypatch.setattr(train, 'setup_run', setup_run)
  monkeypatch.setattr(train, 'evaluate_dataset', evaluate)


def test_early_stopping_reports_the_best_step_on_a_fabricated_curve(tmp_path, monkeypatch):
  """Validation AUC follows CURVE: best at the 3rd evaluation (step 15), three
  worse ones after it stop training at step 30; the test report comes from
  step 15's parameters, which survive keep_checkpoints=1."""
  calls = []

  def fabricate(res, params):
    res['mean']['auc'] = CURVE[len(calls)]
    calls.append(np.asarray(params['embed']['user_id']).copy())

  on_validation(monkeypatch, fabricate)
  workdir = tmp_path / 'run'
  result = train.train_and_evaluate(tiny_config(tmp_path), str(workdir))
  assert len(calls) == 6
  assert result['step'] == 15
  assert result['selected'] == dict(metric='mean_auc', value=0.70, step=15, stopped_at=30,
                                    last_step=30)
  assert result['best_valid']['mean']['auc'] == 0.70
  assert os.listdir(workdir / 'checkpoints') == ['30']
  ck = checkpoint.Checkpointer(str(workdir / 'best'))
  assert ck.all_steps() == [15]
  ck.close()
  best = checkpoint.load_state_arrays(str(workdir), 15, folder='best')['params']
  np.testing.assert_array_equal(best['embed']['user_id'], calls[2])
  assert not np.array_equal(best['embed']['user_id'], calls[5])
  report = json.loads((workdir / 'report.json').read_text())
  assert report['step'] == 15
  # A rerun of the same command does not train on past the early stop.
  calls.clear()
  again = train.train_and_evaluate(tiny_config(tmp_path), str(workdir))
  assert again['step'] == 15 and calls == []
  assert os.listdir(workdir / 'checkpoints') == ['30']


@pytest.mark.parametrize('valid_at_end', [True, False])
def test_valid_at_end_validates_once_after_the_last_step(tmp_path, monkeypatch, valid_at_end):
  """The 'budget' recipe's setting: with eval_every = 0 and patience = 0, one validation
  after the last step, and the report from that step; without it, no validation."""
  steps_validated = []
  on_validation(monkeypatch, lambda res, params: steps_validated.append(True))
  c = tiny_config(tmp_path)
  c.train.num_steps, c.train.eval_every, c.train.patience = 12, 0, 0
  c.train.valid_at_end = valid_at_end
  workdir = tmp_path / 'run'
  result = train.train_and_evaluate(c, str(workdir))
  lines = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  valid_steps = [r['step'] for r in lines if r['split'] == 'valid']
  assert result['step'] == 12
  if valid_at_end:
    assert len(steps_validated) == 1 and valid_steps == [12]
    assert result['selected']['step'] == 12 and result['best_valid']['mean']['auc'] > 0
  else:
    assert steps_validated == [] and valid_steps == [] and 'selected' not in result


def _results(positives: dict, auc: dict) -> dict:
  return {'overall': {t: {'positives': positives[t], 'auc': auc[t]} for t in positives}}


def test_judged_mean_leaves_out_tasks_with_few_positives():
  res = _results({'click': 900, 'like': 150, 'hate': 40},
                 {'click': 0.80, 'like': 0.70, 'hate': 0.20})
  assert selection.judged_tasks(res, 100) == ['click', 'like']
  assert selection.judged_scalars(res, 'mean_auc', 100) == {'mean_auc_judged': pytest.approx(0.75)}
  assert selection.selected_key('mean_auc', 100) == 'mean_auc_judged'
  assert selection.selected_key('mean_auc', 0) == 'mean_auc'
  assert selection.mode_of('mean_logloss_judged') == 'min'
  assert selection.mode_of('mean_auc_judged') == 'max'
  with pytest.raises(ValueError, match=r'select_min_positives=1000: .*click 900'):
    selection.judged_scalars(res, 'mean_auc', 1000)


@pytest.mark.parametrize('field,value,metric,match', [
    ('select_min_positives', -1, 'mean_auc', 'whole number'),
    ('select_min_positives', 100, 'auc/is_click', 'mean_'),
])
def test_select_min_positives_config_errors(tmp_path, field, value, metric, match):
  c = tiny_config(tmp_path)
  c.train[field] = value
  c.train.select_metric = metric
  with pytest.raises(ValueError, match=match):
    configs.validate_train(c)


def test_selection_on_the_judged_mean_ignores_a_rare_task(tmp_path, monkeypatch):
  """is_hate (fabricated: 10 validation positives) peaks where the other tasks are
  worst: the mean over all tasks would keep step 5, the judged mean keeps step 15."""
  calls = []

  def fabricate(res, params):
    for t, v in res['overall'].items():
      rare = t == 'is_hate'
      v['positives'] = 10 if rare else 1000
      v['auc'] = 1.0 - 8 * (CURVE[len(calls)] - 0.60) if rare else CURVE[len(calls)]
    res['mean']['auc'] = float(np.mean([v['auc'] for v in res['overall'].values()]))
    calls.append(res['mean']['auc'])

  on_validation(monkeypatch, fabricate)
  c = tiny_config(tmp_path)
  c.train.select_min_positives = 100
  workdir = tmp_path / 'run'
  result = train.train_and_evaluate(c, str(workdir))
  assert int(np.argmax(calls)) == 0  # the all-task mean would have kept the first step
  assert result['selected']['metric'] == 'mean_auc_judged'
  assert result['selected']['step'] == 15
  assert result['selected']['value'] == pytest.approx(0.70)
  lines = [json.loads(l) for l in (workdir / 'metrics.jsonl').read_text().splitlines()]
  judged = [l['mean_auc_judged'] for l in lines if l.get('split') == 'valid']
  assert judged[:3] == pytest.approx(CURVE[:3])
