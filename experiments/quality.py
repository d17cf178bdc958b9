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
first look on 2 CPU cores), ``:epochs=N`` changes the epoch cap, ``:lr``
makes the config the logistic regression's (for a search of its own).

Tuning each model on the validation days with the same budget (random
search; TPE with --sampler tpe):
  python -m pepnet_jax.sweep --config experiments/quality.py:rows=600000 \
      --workdir sweeps/quality_search_pepnet --search --trials 4
  python -m pepnet_jax.sweep --config experiments/quality.py:rows=600000,lr \
      --workdir sweeps/quality_search_lr --search --trials 4
"""

from pepnet_jax import configs

def get_config(preset: str = ''):
  rows, epochs, lr = 2_200_000, 20.0, False
  for p in filter(None, preset.split(',')):
    if p == 'lr':
      lr = True
    elif p.startswith('rows='):
      rows = int(p.split('=', 1)[1])
    elif p.startswith('epochs='):
      epochs = float(p.split('=', 1)[1])
    else:
      raise ValueError(f'unknown preset {p!r} for experiments/quality.py: '
                       'use rows=N, epochs=N, lr')
  c = configs.base_config()
  configs.use_generated_data(c, rows, users=27_285, videos=7_583, authors=6_510)
  configs.apply_recipe(c, 'converge', max_epochs=epochs)
  c.data.features = []  # the full KuaiRand preset (40 fields)
  c.train.log_every = 200
  c.train.checkpoint_every = 500
  if lr:
    c.model.name = 'lr'
    c.data.crosses = LR['data.crosses']
    c.train.embed_l2 = LR['train.embed_l2']
    c.optim.dense.lr = LR['optim.dense.lr']
  return c


# The floor: logistic regression on the same features plus two crosses.
LR = {'model.name': 'lr', 'data.crosses': ('tab,video_id', 'tab,author_id'),
      'train.embed_l2': 1e-6, 'optim.dense.lr': 1e-2}


def get_sweep(preset: str = ''):
  return {
      'points': [
          {'_name': 'pepnet'},
          dict(LR, _name='lr'),
      ],
  }


def get_search(preset: str = ''):
  """The same budget for each model: 4 random trials over its learning rates
  and regularisers, scored on the validation days' mean AUC."""
  space = {'optim.embedding.lr': ('log', 0.02, 0.5), 'train.embed_l2': ('log', 1e-8, 1e-4)}
  if 'lr' in preset.split(','):
    space['optim.dense.lr'] = ('log', 1e-3, 1e-1)
  else:
    space['optim.dense.lr'] = ('log', 3e-4, 3e-3)
    space['model.dropout'] = ('float', 0.0, 0.3)
  return dict(space=space, trials=4, metric='mean_auc', sampler_seed=0)
