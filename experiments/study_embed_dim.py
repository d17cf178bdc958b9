r"""Hyperparameter study: embedding dimension 8/16/32/64, 3 seeds.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/study_embed_dim.py --workdir sweeps/study_embed_dim

PEPNet on configs.synthetic_experiment (600k generated rows, one epoch, the
setup of the generator-v1 comparison) with `model.embed_dim` varied;
the aggregation draws mean test AUC / GAUC against it (curve_model.embed_dim.png)
with a band of one standard deviation over seeds, and writes results.md.
Presets (comma-separated): paper_lr, rows=N, epochs=N.
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  return configs.apply_preset(configs.synthetic_experiment(), preset, __file__)


def get_sweep(preset: str = ''):
  return dict(product={'model.embed_dim': [8, 16, 32, 64]}, seeds=[0, 1, 2])
