r"""The paper's ablations of PEPNet, 3 seeds each.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/ablations.py --workdir sweeps/ablations

PEPNet; without EPNet; without PPNet; without both (a plain DNN with the same
towers); gate inputs with gradient (no stop-gradient); per-domain output
towers; PPNet gates as one Gate NU per task (`task_gates='separate'`). Same
data and one-epoch setup as the generator-v1 comparison
(configs.synthetic_experiment; experiments/compare.py now tunes each model).
Measures test AUC / GAUC per task x tab (sweeps/ablations/results.md).
Presets (comma-separated): paper_lr, rows=N, epochs=N.
"""

from pepnet_jax import configs

POINTS = [
    dict(_name='pepnet'),
    dict(_name='no_epnet', **{'model.use_epnet': False}),
    dict(_name='no_ppnet', **{'model.use_ppnet': False}),
    dict(_name='no_epnet_no_ppnet', **{'model.use_epnet': False, 'model.use_ppnet': False}),
    dict(_name='gate_grad', **{'model.gate_stop_gradient': False}),
    dict(_name='domain_towers', **{'model.domain_towers': True}),
    dict(_name='separate_task_gates', **{'model.task_gates': 'separate'}),
]


def get_config(preset: str = ''):
  return configs.apply_preset(configs.synthetic_experiment(), preset, __file__)


def get_sweep(preset: str = ''):
  return dict(points=POINTS, seeds=[0, 1, 2])
