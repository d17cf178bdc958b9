r"""PEPNet vs its ablations vs the multi-task / multi-domain baselines, 3 seeds.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/compare.py --workdir sweeps/compare
  python -m pepnet_jax.aggregate sweeps/compare      # (the sweep also does this)

Data: a generated KuaiRand-format dataset of 600,000 log rows (about 270k
training rows; tabs 0, 1, 2, 4; 7 tasks; the 14 fields of
configs.LEAN_FEATURES), shared by every point. One epoch,
batch 1024, AdaGrad 0.05 on tables and Adam 1e-3 on the rest (the scaled
learning rate; preset `paper_lr` uses the paper's Adam 5e-6). Every model
sees the same features and is trained by the same loop. The tab feeds only
the EPNet gate by default (`shared=False`); the `+tab` points also put it into
every model's input (`model.domain_in_input`), so models without EPNet see
the domain too.

Measures: test-split AUC / GAUC / logloss per task x tab, mean and std over
seeds 0, 1, 2 (19 configurations, 57 runs, about an hour two at a time on 2
CPU cores), in sweeps/compare/results.{csv,md} and bar charts; the README
shows the table.
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
    # The same models given the tab as an ordinary input field too. Without
    # EPNet, nothing else tells a model which domain a row is from.
    dict(_name='pepnet+tab', **{'model.domain_in_input': True}),
    dict(_name='pepnet_no_epnet+tab', **{'model.use_epnet': False, 'model.domain_in_input': True}),
    dict(_name='dnn_no_gates+tab', **{'model.use_epnet': False, 'model.use_ppnet': False,
                                      'model.domain_in_input': True}),
    dict(_name='shared_bottom+tab', **{'model.name': 'shared_bottom', 'model.domain_in_input': True}),
    dict(_name='single_task+tab', **{'model.name': 'single_task', 'model.domain_in_input': True}),
    dict(_name='mmoe+tab', **{'model.name': 'mmoe', 'model.domain_in_input': True}),
    dict(_name='ple+tab', **{'model.name': 'ple', 'model.domain_in_input': True}),
    dict(_name='star+tab', **{'model.name': 'star', 'model.domain_in_input': True}),
]


def get_config(preset: str = ''):
  return configs.apply_preset(configs.synthetic_experiment(), preset, __file__)


def get_sweep(preset: str = ''):
  return dict(points=MODELS, seeds=[0, 1, 2])
