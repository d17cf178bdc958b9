r"""Does the recipe for real data learn what the data holds? PEPNet vs LR vs the ceiling.

The quality check of the project: on generated KuaiRand-format data at
KuaiRand-Pure's user / video / author counts (27,285 / 7,583 / 6,510), train
PEPNet with the recipe experiments/kuairand.py uses ('converge': validation
each epoch, early stopping, report from the best step) and the floor, a
logistic regression on every feature PEPNet sees, one-hot (the ids, tab, the
side features, bucketed numbers), plus the crosses tab x video and tab x
author (L2 on the rows a batch touches), and compare both with the ceiling: the AUC
of the generator's true probabilities given what a model can see.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/quality.py --workdir sweeps/quality
  python benchmarks/quality_table.py sweeps/quality

The default makes 2,200,000 log rows (about 1,000,000 training rows, as
KuaiRand-Pure); ``:rows=N`` makes a smaller set (e.g. rows=600000 for a
first look on 2 CPU cores), ``:epochs=N`` changes the epoch cap.
"""

from pepnet_jax import configs

def get_config(preset: str = ''):
  rows, epochs = 2_200_000, 20.0
  for p in filter(None, preset.split(',')):
    if p.startswith('rows='):
      rows = int(p.split('=', 1)[1])
    elif p.startswith('epochs='):
      epochs = float(p.split('=', 1)[1])
    else:
      raise ValueError(f'unknown preset {p!r} for experiments/quality.py: use rows=N, epochs=N')
  c = configs.base_config()
  configs.use_generated_data(c, rows, users=27_285, videos=7_583, authors=6_510)
  configs.apply_recipe(c, 'converge', max_epochs=epochs)
  c.data.features = []  # the full KuaiRand preset (40 fields)
  c.train.log_every = 200
  c.train.checkpoint_every = 500
  return c


def get_sweep(preset: str = ''):
  return {
      'points': [
          {'_name': 'pepnet'},
          {'_name': 'lr', 'model.name': 'lr',
           'data.crosses': ('tab,video_id', 'tab,author_id'), 'train.embed_l2': 1e-6,
           'optim.dense.lr': 1e-2},
      ],
  }
