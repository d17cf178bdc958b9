r"""PEPNet vs its ablations vs LR and the multi-task / multi-domain baselines: each model
tuned on the validation days with the same budget, then 3 seeds.

Run (from the repository root; `python benchmarks/run_compare.py` runs both steps,
resumably across checkouts):
  # 1. per model, a random search of TRIALS trials over its learning rates and
  #    regularisers, scored on the validation days' mean AUC (seed 0):
  for m in lr shared_bottom single_task mmoe ple star pepnet pepnet_no_epnet \
           pepnet_no_ppnet pepnet_no_gates pepnet_gate_grad; do
    python -m pepnet_jax.sweep --config experiments/compare.py:model=$m \
        --workdir sweeps/compare_search/$m --search
  done
  # 2. every model (and the tab-blind ones again with the tab as an input)
  #    with its best trial's settings, seeds 0, 1, 2; test-day metrics:
  python -m pepnet_jax.sweep --config experiments/compare.py --workdir sweeps/compare

Step 2 reads each model's best trial from sweeps/compare_search/<model>/search.json;
a model whose search has not run keeps the recipe's settings (a warning says so).
The `+tab` points use their model's tuned settings.

Data: generated KuaiRand-format logs (generator v3, with the per-user, per-task
structure PPNet targets and the per-tab structure EPNet targets; docs/generator.md),
ROWS log rows at the generator's default sizes (5,000 users, 2,000 videos, 600
authors: about 181,000 training rows, 36 a user, as KuaiRand-Pure has 37), tabs
0, 1, 2, 4, seven tasks, the 14 fields of configs.LEAN_FEATURES. Every model sees the same features and is trained
by the same loop, that of the 'converge' recipes (validation each epoch, early
stopping, the report from the best step) capped at EPOCHS epochs, a cap meant never to bind: at 8
epochs, 30 of the first 65 runs ended at the cap still improving, a slow-rate trial most
(dense Adam 1.6e-4 gains about 0.007 mean AUC an epoch at epoch 8). The tab feeds only the
EPNet gate (and STAR's domain weights) by default (`shared=False`); the `+tab`
points put it into every model's input (`model.domain_in_input`), so models
without EPNet see the domain too. LR always sees it (one-hot, plus tab x video
and tab x author crosses).

Measures: test-split AUC / GAUC / logloss per task x tab, mean and std over seeds,
the parameter count, in sweeps/compare/results.{csv,md} and bar charts.
Presets (comma-separated): model=NAME (one model, for its search), rows=N, epochs=N.
"""

import json
import os
import sys

from pepnet_jax import configs

ROWS, EPOCHS, TRIALS = 400_000, 30.0, 3
SEARCH_DIR = 'sweeps/compare_search'

# Each tuned model: the config fields that make it.
MODELS = {
    # LR learns slowly and an epoch costs it little: a higher cap (100 bound a seed), so
    # that early stopping, not the cap, ends it.
    'lr': {'model.name': 'lr', 'data.crosses': ('tab,video_id', 'tab,author_id'),
           'train.num_epochs': 300.0},
    'shared_bottom': {'model.name': 'shared_bottom'},  # the zoo's 'dnn': one shared DNN
    'single_task': {'model.name': 'single_task'},      # one DNN per task
    'mmoe': {'model.name': 'mmoe'},
    'ple': {'model.name': 'ple'},
    'star': {'model.name': 'star'},
    'pepnet': {},
    'pepnet_no_epnet': {'model.use_epnet': False},
    'pepnet_no_ppnet': {'model.use_ppnet': False},
    'pepnet_no_gates': {'model.use_epnet': False, 'model.use_ppnet': False},
    'pepnet_gate_grad': {'model.gate_stop_gradient': False},
}
# Models that see no tab unless it is an input too: run again with it (`+tab`).
TAB_BLIND = ('shared_bottom', 'single_task', 'mmoe', 'ple', 'pepnet_no_epnet', 'pepnet_no_gates')


def _set(c, field: str, value):
  *path, last = field.split('.')
  node = c
  for p in path:
    node = node[p]
  node[last] = value


def get_config(preset: str = ''):
  rows, epochs, model = ROWS, EPOCHS, None
  for p in filter(None, preset.split(',')):
    key, _, value = p.partition('=')
    if key == 'rows' and value:
      rows = int(value)
    elif key == 'epochs' and value:
      epochs = float(value)
    elif key == 'model' and value in MODELS:
      model = value
    else:
      raise ValueError(f'unknown preset {p!r} for experiments/compare.py: use rows=N, '
                       f'epochs=N, model=NAME (NAME in {", ".join(MODELS)})')
  c = configs.base_config()
  configs.use_generated_data(c, rows)
  c.data.features = configs.lean_kuairand_features()
  # The loop of 'converge'; the rates and regularisers are each model's own search's, so the
  # base is 'converge_fast', whose settings the comparison's runs were made with (LR keeps
  # its unused dropout field, and the finished runs' configs stay what they were).
  configs.apply_recipe(c, 'converge_fast', max_epochs=epochs)
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  for field, value in MODELS.get(model, {}).items():
    _set(c, field, value)
  return c


def get_search(preset: str = ''):
  """The same budget for every model: TRIALS random trials over its learning rates and
  regularisers (dropout for the networks), scored on the validation days' mean AUC."""
  space = configs.search_space(linear='model=lr' in preset.split(','))
  return dict(space=space, trials=TRIALS, metric='mean_auc', sampler_seed=0)


def tuned(model: str) -> dict:
  """The best trial's settings of ``model``'s search ({} before the search has run)."""
  path = os.path.join(SEARCH_DIR, model, 'search.json')
  try:
    with open(path) as f:
      best = json.load(f).get('best')
  except FileNotFoundError:
    best = None
  if not best:
    print(f'warning: experiments/compare.py: {path} has no finished trial; {model} runs with '
          "the 'converge_fast' recipe's settings (run its search first, see the docstring)",
          file=sys.stderr)
    return {}
  return dict(best['params'])


def get_sweep(preset: str = ''):
  points = []
  for name, fields in MODELS.items():
    settings = {**fields, **tuned(name)}
    points.append(dict(_name=name, **settings))
    if name in TAB_BLIND:
      points.append(dict(_name=f'{name}+tab', **settings, **{'model.domain_in_input': True}))
  return dict(points=points, seeds=[0, 1, 2])
