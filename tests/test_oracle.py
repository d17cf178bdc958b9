"""The oracle report: per task and tab, the ceiling AUC of the truth files and the share of its
lift over 0.5 that a model reaches."""

import json

import numpy as np
import pandas as pd
import pytest

from pepnet_jax.evaluation import oracle
from pepnet_jax.data import kuairand_synth as ks

TASKS = ('is_click', 'long_view')
TABS = (0, 1)
TEST = ('20220429', '20220508')


def hand_auc(y, score):
  """ROC AUC as the Mann-Whitney U of the positives' scores over the negatives' (ties
  count half), from scipy: an implementation independent of pepnet_jax.evaluation.metrics."""
  from scipy.stats import mannwhitneyu
  y, score = np.asarray(y).astype(bool), np.asarray(score, np.float64)
  return mannwhitneyu(score[y], score[~y]).statistic / (y.sum() * (~y).sum())


@pytest.fixture(scope='module')
def workdir(tmp_path_factory):
  root = tmp_path_factory.mktemp('oracle')
  data = root / 'data'
  ks.generate(str(data), 8000, users=300, videos=150, authors=50, seed=3, tabs=TABS,
              progress=False)
  wd = root / 'run'
  wd.mkdir()
  cfg = dict(data=dict(dir=str(data), tasks=list(TASKS), tabs=list(TABS),
                       splits=dict(train=('20220408', '20220421'), test=TEST)))
  (wd / 'config.json').write_text(json.dumps(cfg))
  model = {'is_click': 0.70, 'long_view': 0.65}
  rep = dict(split='test', overall={t: {'auc': a} for t, a in model.items()},
             domains={str(d): {t: {'auc': a - 0.01 * d} for t, a in model.items()}
                      for d in TABS})
  (wd / 'report.json').write_text(json.dumps(rep))
  return wd, data, model


def test_ceiling_and_lift_share_per_task_and_tab(workdir):
  wd, data, model = workdir
  out = oracle.compare(str(wd))
  log = pd.read_csv(data / 'log_standard_4_22_to_5_08_pure.csv')
  truth = pd.read_csv(data / 'truth' / 'log_standard_4_22_to_5_08_pure.csv')
  test = log['date'].between(int(TEST[0]), int(TEST[1])).to_numpy()
  assert out['rows'] == int(test.sum()) and out['generator_version'] == ks.GENERATOR_VERSION
  assert 'warning' not in out
  table = {(r['domain'], r['task']): r for r in out['table']}
  assert set(table) == {(d, t) for d in ('all', '0', '1') for t in TASKS}
  for (dom, task), r in table.items():
    rows = test if dom == 'all' else test & (log['tab'] == int(dom)).to_numpy()
    ceiling = hand_auc(log[task].to_numpy()[rows], truth[f'p_{task}'].to_numpy()[rows])
    assert r['oracle_auc'] == pytest.approx(ceiling, abs=1e-9)
    m = model[task] - (0 if dom == 'all' else 0.01 * int(dom))
    assert r['model_auc'] == pytest.approx(m)
    assert r['lift_share'] == pytest.approx((m - 0.5) / (ceiling - 0.5))
    assert 0 < r['lift_share'] < 1  # a 0.70 model is below a reachable ~0.8 ceiling
  text = oracle.format_comparison(out)
  assert 'ceiling' in text and 'share' in text
  share = table[('all', 'is_click')]['lift_share']
  assert f'{share:.4f}' in text
  assert json.loads((wd / 'oracle_vs_model.json').read_text())['table'][0]['lift_share'] == \
      pytest.approx(out['table'][0]['lift_share'])


def test_lift_share_edge_cases():
  assert oracle.lift_share(0.75, 0.8) == pytest.approx(0.25 / 0.3)
  assert oracle.lift_share(0.5, 0.8) == 0.0
  assert oracle.lift_share(0.45, 0.8) < 0  # worse than chance stays visible
  assert oracle.lift_share(None, 0.8) is None
  assert oracle.lift_share(0.7, float('nan')) is None
  assert oracle.lift_share(0.7, 0.5) is None  # no lift to share


def test_truth_from_an_older_generator_is_flagged(workdir):
  wd, data, _ = workdir
  meta = json.loads((data / 'generator_meta.json').read_text())
  old = dict(meta, args={k: v for k, v in meta['args'].items() if k != 'generator_version'})
  saved = (data / 'generator_meta.json').read_text()
  try:
    (data / 'generator_meta.json').write_text(json.dumps(old))
    out = oracle.compare(str(wd))
    assert out['generator_version'] == 1 and 'not reachable' in out['warning']
    assert oracle.format_comparison(out).startswith('warning:')
  finally:
    (data / 'generator_meta.json').write_text(saved)


def test_truth_from_latent_reproduces_the_truth_files(workdir):
  _, data, _ = workdir
  meta = json.loads((data / 'generator_meta.json').read_text())
  log = pd.read_csv(data / 'log_standard_4_22_to_5_08_pure.csv')
  truth = pd.read_csv(data / 'truth' / 'log_standard_4_22_to_5_08_pure.csv')
  p = ks.truth_from_latent(ks.load_latent(str(data)), meta['intercepts'], log['user_id'],
                           log['video_id'], log['tab'], log['hourmin'])
  for t in ks.TASKS:
    assert abs(p[t] - truth[f'p_{t}'].to_numpy()).max() < 1e-8, t


def test_headroom_takes_each_structure_out_and_reports_its_share(workdir):
  wd, data, model = workdir
  out = oracle.headroom(str(wd))
  # By hand, on the test rows: the truth recomputed from the latent tables with a structure
  # edited out as docs/generator.md describes it, scored by an independent AUC.
  meta = json.loads((data / 'generator_meta.json').read_text())
  log = pd.read_csv(data / 'log_standard_4_22_to_5_08_pure.csv')
  log = log[log['date'].between(int(TEST[0]), int(TEST[1]))].reset_index(drop=True)
  assert out['rows'] == len(log)
  latent = ks.load_latent(str(data))
  args = (meta['intercepts'], log['user_id'].to_numpy(), log['video_id'].to_numpy(),
          log['tab'].to_numpy(), log['hourmin'].to_numpy())

  def aucs(lat):
    p = ks.truth_from_latent(lat, *args)
    return {t: hand_auc(log[t], p[t]) for t in TASKS}
  mean0 = lambda a: np.broadcast_to(a.mean(0, keepdims=True), a.shape)  # noqa: E731
  edited = {
      'affinity': dict(latent, w_aff=np.zeros_like(latent['w_aff'])),
      'item_propensity': dict(latent, item_prop=np.zeros_like(latent['item_prop'])),
      'task_weights': dict(latent, **{k: mean0(latent[k]) for k in ('m_user', 'k_user',
                                                                    'm_item')}),
  }
  ceiling = aucs(latent)
  without = {s: aucs(lat) for s, lat in edited.items()}
  assert [r['task'] for r in out['table']] == list(TASKS)
  for r in out['table']:
    t = r['task']
    assert r['ceiling'] == pytest.approx(ceiling[t], abs=1e-9)
    assert r['model_auc'] == model[t]
    assert r['model_share'] == pytest.approx((model[t] - 0.5) / (ceiling[t] - 0.5))
    for s, w in without.items():
      assert r[f'without_{s}'] == pytest.approx(w[t], abs=1e-9), (s, t)
      assert r[f'share_{s}'] == pytest.approx((ceiling[t] - w[t]) / (ceiling[t] - 0.5)), (s, t)
    assert r['without_tab'] < r['ceiling']  # the tab structure carries some of the lift
    # every structure moves the truth; the affinity carries a real part of the click lift
    assert r['share_affinity'] > 0.05
  assert 'task_weights' in oracle.format_headroom(out)
  assert json.loads((wd / 'oracle_headroom.json').read_text())['table'][0]['task'] == TASKS[0]
