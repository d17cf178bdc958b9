r"""Hyperparameter study: gate scale gamma 1/1.5/2/2.5/3, 3 seeds.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/study_gamma.py --workdir sweeps/study_gamma

PEPNet on configs.synthetic_experiment (600k generated rows, one epoch, the
setup of the generator-v1 comparison) with `model.gamma` varied;
the aggregation draws mean test AUC / GAUC against it (curve_model.gamma.png)
with a band of one standard deviation over seeds, and writes results.md.
Presets (comma-separated): paper_lr, rows=N, epochs=N.
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  return configs.apply_preset(configs.synthetic_experiment(), preset, __file__)


def get_sweep(preset: str = ''):
  return dict(product={'model.gamma': [1.0, 1.5, 2.0, 2.5, 3.0]}, seeds=[0, 1, 2])
