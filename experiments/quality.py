r"""Does the recipe for real data learn what the data holds? PEPNet vs LR vs the ceiling.

The quality check of the project: on generated KuaiRand-format data at
KuaiRand-Pure's user / video / author counts (27,285 / 7,583 / 6,510), train
PEPNet with the recipe experiments/kuairand.py:converge uses ('converge': validation
each epoch, early stopping, report from the best step) and the floor, a
logistic regression on every feature PEPNet sees, one-hot (the ids, tab, the
side features, bucketed numbers), plus the crosses tab x video and tab x
author (L2 on the rows a batch touches), and compare both with the ceiling: the AUC
of the generator's true probabilities given what a model can see.

Run (from the repository root):
  python -m pepnet_jax.sweep --config experiments/quality.py --workdir sweeps/quality
  python benchmarks/quality_table.py sweeps/quality
or, as the README's table was made, each model on its own (the PEPNet point
is experiments/kuairand.py:converge's config, but for log and checkpoint intervals):
  python run.py --config experiments/quality.py:lr --workdir runs/quality/lr
  python run.py --config experiments/kuairand.py:converge --workdir runs/quality/pepnet \
      --config.data.dir=data_cache/synth_2200000_u27285_v7583_a6510_s0_g3
  python benchmarks/quality_table.py runs/quality/pepnet runs/quality/lr

The default makes 2,200,000 log rows (about 1,000,000 training rows, as
KuaiRand-Pure); ``:rows=N`` makes a smaller set (e.g. rows=600000 for a
first look on 2 CPU cores), ``:epochs=N`` changes the epoch cap, ``:lr``
makes the config the logistic regression's (for a search of its own).

Tuning each model on the validation days with the same budget (random
search; TPE with --sampler tpe):
  python -m pepnet_jax.sweep --config experiments/quality.py:rows=600000 \
      --workdir sweeps/quality_search_pepnet --search
  python -m pepnet_jax.sweep --config experiments/quality.py:rows=600000,lr \
      --workdir sweeps/quality_search_lr --search
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
    c.optim.embedding.lr = LR['optim.embedding.lr']
    c.train.embed_l2 = LR['train.embed_l2']
    c.optim.dense.lr = LR['optim.dense.lr']
    c.train.num_epochs = 5 * epochs
  return c


# The floor: logistic regression on the same features plus two crosses.
# Its rates are the best of its own 3-trial search on generator v3 (experiments/compare.py
# model=lr: AdaGrad 0.746, embed_l2 3.0e-5, Adam 1.64e-3, 400k rows), rounded.
LR = {'model.name': 'lr', 'data.crosses': ('tab,video_id', 'tab,author_id'),
      'optim.embedding.lr': 0.75, 'train.embed_l2': 3e-5, 'optim.dense.lr': 1.6e-3,
      # LR learns slowly (it ran into a 20-epoch cap still improving; at 400k rows it stops
      # after about 80) and an epoch costs it little: a cap of 100, so that early stopping
      # ends it.
      'train.num_epochs': 100.0}


def get_sweep(preset: str = ''):
  return {
      'points': [
          {'_name': 'pepnet'},
          dict(LR, _name='lr'),
      ],
  }


def get_search(preset: str = ''):
  """The same budget for each model: 3 random trials over its learning rates
  and regularisers (configs.search_space, as experiments/compare.py), scored on
  the validation days' mean AUC."""
  return dict(space=configs.search_space(linear='lr' in preset.split(',')), trials=3,
              metric='mean_auc', sampler_seed=0)
