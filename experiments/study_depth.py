r"""Hyperparameter study: tower depth 2..5 (widths 256, 128, 64, 32, 16), 3 seeds.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/study_depth.py --workdir sweeps/study_depth

PEPNet on configs.synthetic_experiment (600k generated rows, one epoch, the
setup of the generator-v1 comparison) with `model.tower` varied;
the aggregation draws mean test AUC / GAUC against it (curve_model.tower.png)
with a band of one standard deviation over seeds, and writes results.md.
Presets (comma-separated): paper_lr, rows=N, epochs=N.
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  return configs.apply_preset(configs.synthetic_experiment(), preset, __file__)


def get_sweep(preset: str = ''):
  return dict(product={'model.tower': [(256, 128), (256, 128, 64), (256, 128, 64, 32), (256, 128, 64, 32, 16)]}, seeds=[0, 1, 2])
