r"""The paper's three narrower settings, each against its plain DNN, 3 seeds.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/narrow_settings.py --workdir sweeps/narrow

1. PPNet alone, one domain (tab 1), many tasks (all 7);
2. EPNet alone, many domains (tabs 0, 1, 2, 4), one task (is_click);
3. PPNet alone, one domain (tab 1), one task (is_click).
Each setting's DNN is PEPNet with both gates off on the same data, so the
difference is the personalization module alone. Measures test AUC / GAUC.
Presets (comma-separated): paper_lr, rows=N, epochs=N.
"""

from pepnet_jax import configs

ONE_TAB = {'data.domains': (1,)}
ONE_TASK = {'data.tasks': ('is_click',)}
NO_GATES = {'model.use_epnet': False, 'model.use_ppnet': False}

POINTS = [
    dict(_name='1tab_7tasks_ppnet', **ONE_TAB, **{'model.use_epnet': False}),
    dict(_name='1tab_7tasks_dnn', **ONE_TAB, **NO_GATES),
    dict(_name='4tabs_1task_epnet', **ONE_TASK, **{'model.use_ppnet': False}),
    dict(_name='4tabs_1task_dnn', **ONE_TASK, **NO_GATES),
    dict(_name='1tab_1task_ppnet', **ONE_TAB, **ONE_TASK, **{'model.use_epnet': False}),
    dict(_name='1tab_1task_dnn', **ONE_TAB, **ONE_TASK, **NO_GATES),
]


def get_config(preset: str = ''):
  return configs.apply_preset(configs.synthetic_experiment(), preset, __file__)


def get_sweep(preset: str = ''):
  return dict(points=POINTS, seeds=[0, 1, 2])
