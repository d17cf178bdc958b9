r"""Hyperparameter study: stop-gradient at the gate inputs on/off, 3 seeds.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/study_gate_grad.py --workdir sweeps/study_gate_grad

PEPNet on configs.synthetic_experiment (600k generated rows, one epoch, the
setup of the generator-v1 comparison) with `model.gate_stop_gradient` varied;
the aggregation draws mean test AUC / GAUC against it (curve_model.gate_stop_gradient.png)
with a band of one standard deviation over seeds, and writes results.md.
Presets (comma-separated): paper_lr, rows=N, epochs=N.
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  return configs.apply_preset(configs.synthetic_experiment(), preset, __file__)


def get_sweep(preset: str = ''):
  return dict(product={'model.gate_stop_gradient': [True, False]}, seeds=[0, 1, 2])
