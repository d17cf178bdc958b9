r"""PEPNet vs its ablations vs the multi-task / multi-domain baselines, 3 seeds.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/compare.py --workdir sweeps/compare
  python -m pepnet_jax.aggregate sweeps/compare      # (the sweep also does this)

Data: a generated KuaiRand-format dataset of 600,000 log rows (about 270k
training rows; tabs 0, 1, 2, 4; 7 tasks; the 14 fields of
configs.LEAN_FEATURES), shared by every point. One epoch,
batch 1024, AdaGrad 0.05 on tables and Adam 1e-3 on the rest (the scaled
learning rate; preset `paper_lr` uses the paper's Adam 5e-6). Every model
sees the same features and is trained by the same loop.

Measures: test-split AUC / GAUC / logloss per task x tab, mean and std over
seeds 0, 1, 2, in sweeps/compare/results.{csv,md} and bar charts.
Presets (comma-separated): paper_lr, rows=N, epochs=N.
"""

from pepnet_jax import configs

MODELS = [
    dict(_name='pepnet'),
    dict(_name='pepnet_no_epnet', **{'model.use_epnet': False}),
    dict(_name='pepnet_no_ppnet', **{'model.use_ppnet': False}),
    dict(_name='dnn_no_gates', **{'model.use_epnet': False, 'model.use_ppnet': False}),
    dict(_name='pepnet_gate_grad', **{'model.gate_stop_gradient': False}),
    dict(_name='pepnet_domain_towers', **{'model.domain_towers': True}),
    dict(_name='shared_bottom', **{'model.name': 'shared_bottom'}),
    dict(_name='single_task', **{'model.name': 'single_task'}),
    dict(_name='mmoe', **{'model.name': 'mmoe'}),
    dict(_name='ple', **{'model.name': 'ple'}),
    dict(_name='star', **{'model.name': 'star'}),
]


def get_config(preset: str = ''):
  return configs.apply_preset(configs.synthetic_experiment(), preset, __file__)


def get_sweep(preset: str = ''):
  return dict(points=MODELS, seeds=[0, 1, 2])
