r"""Learning rates that fit the data scale: the dense (Adam) and table (AdaGrad) rates.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/lr_sweep.py --workdir sweeps/lr

The paper's Adam lr 5e-6 suits Kuaishou's billions of examples; on a few
hundred thousand rows it barely moves the towers. This sweep trains PEPNet on
configs.synthetic_experiment's data (600k rows) for Adam lr in {5e-6, 1e-4, 3e-4, 1e-3,
3e-3} x AdaGrad lr in {0.01, 0.05, 0.1}, one seed, and reports
validation AUC / GAUC (results.md; the test days stay unseen); configs.SCALED_DENSE_LR records the pick.
Presets (comma-separated): rows=N, epochs=N.
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  c = configs.apply_preset(configs.synthetic_experiment(), preset, __file__)
  c.train.report_split = 'valid'  # choose on validation days, never on test
  return c


def get_sweep(preset: str = ''):
  return dict(product={'optim.dense.lr': [5e-6, 1e-4, 3e-4, 1e-3, 3e-3],
                       'optim.embedding.lr': [0.01, 0.05, 0.1]},
              seeds=[0])
