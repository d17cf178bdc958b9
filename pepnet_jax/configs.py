"""The base config every experiment starts from; each field says what it does.

Experiments (``experiments/*.py``) call ``base_config()`` and override. Any
field can be set on the command line: ``--config.model.gamma=1.5``.
"""

from __future__ import annotations

import os

import ml_collections

def optim_config(embed_lr: float = 0.05, dense_lr: float = 5e-6) -> ml_collections.ConfigDict:
  """The paper's recipe: AdaGrad on embedding tables, Adam on the rest."""
  c = ml_collections.ConfigDict()
  c.groups = ('embedding', 'dense')  # regex groups in match order; first match wins
  c.embedding = dict(
      regex=r'^embed/',        # parameter paths of the embedding tables
      optimizer='adagrad', lr=embed_lr,
      schedule='constant',     # constant | cosine | warmup_cosine | linear
      warmup_steps=0,
      initial_accumulator=0.1, eps=1e-7)
  c.dense = dict(regex=r'.*', optimizer='adam', lr=dense_lr, schedule='constant',
                 warmup_steps=0, b1=0.9, b2=0.999, eps=1e-8)
  # Group updated row-sparsely (only the rows a batch touches; needs adagrad;
  # identical results to the dense optax path). '' = dense optax for every group.
  c.sparse_group = 'embedding'
  return c


def base_config() -> ml_collections.ConfigDict:
  c = ml_collections.ConfigDict()

  # ---- data: files -> features -> batches (see pepnet_jax/features.py) ----
  # Empty fields (tasks, domains, splits, domain_column, group_column, features,
  # groups) take the format's defaults, from its DataFormat record.
  c.data = ml_collections.ConfigDict()
  # A registered format (pepnet_jax/data/formats.py): kuairand | aliccp | the
  # name of a module in pepnet_jax/data | an import path 'my_pkg.my_format'.
  c.data.format = 'kuairand'
  c.data.dir = ''                     # folder with the dataset's files
  c.data.version = 'auto'             # KuaiRand: pure | 1k | 27k | auto (from file names)
  c.data.cache_dir = ''               # columnar cache; '' = <workdir>/cache
  # {split: what the reader reads}: KuaiRand inclusive date ranges
  # (train=('20220408', '20220421'), ...), Ali-CCP file stems. Set it whole:
  # --config.data.splits="{'train': ('20220408', '20220417'), ...}".
  c.data.splits = {}
  c.data.random_log_split = ''        # e.g. 'test_random': also read log_random_* as a split
  # Raw values of domain_column kept, in domain-index order: ints (KuaiRand
  # tabs: the format's default is 0, 1, 2, 4) or strings ('home,search').
  c.data.domains = ()
  c.data.tabs = ()                    # deprecated alias of domains (old configs); set one
  c.data.domain_column = ''           # KuaiRand 'tab', Ali-CCP '301'
  c.data.tasks = ()                   # label columns, one task each
  # GAUC groups: a column, or columns joined by commas ('user_id,tab': one
  # group per user and domain). KuaiRand's default is 'user_id'.
  c.data.group_column = ''
  c.data.max_rows = 0                 # a seeded random sample of each split (data.seed); 0 = all
  # Training rows cut into this many contiguous shards, one per host (0 = one per
  # process): each host reads only its shard; one process with shards=N trains
  # with exactly the global batches of an N-host job (pipeline.Dataset.train_batches).
  c.data.shards = 0
  c.data.features = []                # FeatureSpec dicts; [] = the format's preset
  c.data.crosses = ()                 # e.g. ('tab,video_id',): cross features added to the
                                      # list above (named tab_x_video_id)
  c.data.groups = {}                  # gate inputs; {} = the format's preset
  c.data.batch_size = 1024
  c.data.eval_batch_size = 8192
  c.data.seed = 0                     # shuffling and the max_rows sample
  # Generate a KuaiRand-format dataset into data.dir (or <workdir>/data) when
  # its files are missing; rows = 0 never generates.
  c.data.generate = dict(rows=0, users=3000, videos=2000, authors=600, seed=0, random_rows=0)

  # ---- model ----
  c.model = ml_collections.ConfigDict()
  c.model.name = 'pepnet'             # see pepnet_jax/models/registry.py
  c.model.embed_dim = 16
  c.model.tower = (256, 128, 64)      # task tower widths; a width-1 logit layer follows
  # EPNet Gate NU hidden width (0 = width of E, the default until 2026-12-07; 128 matched its
  # validation AUC on KuaiRand-format data at 0.8x the FLOPs: docs/results/epnet_hidden/)
  c.model.epnet_hidden = 128
  c.model.ppnet_hidden = 64           # PPNet Gate NU hidden width (0 = prior width)
  c.model.gamma = 2.0                 # gate outputs in (0, gamma)
  c.model.use_epnet = True
  c.model.use_ppnet = True
  c.model.gate_stop_gradient = True   # paper: no gradient into E / O_ep via gate inputs
  c.model.task_gates = 'split'        # split (paper) | separate (one Gate NU per task)
  c.model.domain_towers = False       # one output layer per domain
  c.model.domain_in_input = False     # domain-side fields (shared=False) also join E; the
                                      # only way a model without EPNet sees the domain
  c.model.activation = 'relu'
  c.model.dtype = 'float32'           # towers and gates compute dtype; params stay float32
  c.model.table_row_multiple = 128    # table rows rounded up so they split over devices
  c.model.dropout = 0.0               # tower dropout (training only); 0 = off
  c.model.task_transfer = False       # PEPNet: each logit + a learned mix of the other tasks'
                                      # stop-gradient logits (not in the paper; models/pepnet.py)
  # baselines (pepnet_jax/models/baselines.py)
  c.model.bottom = (256,)             # shared-bottom / expert widths
  c.model.num_experts = 4             # MMoE / PLE shared experts
  c.model.specific_experts = 1        # PLE task-specific experts per task
  c.model.ple_levels = 2
  c.model.star_aux_hidden = 32        # STAR auxiliary (domain) network width

  c.optim = optim_config()        # the 'paper' recipe (see RECIPES / apply_recipe)

  # ---- training loop ----
  c.train = ml_collections.ConfigDict()
  c.train.recipe = 'paper'            # a name for the log; apply_recipe() sets the fields
  c.train.seed = 0
  c.train.num_epochs = 1.0
  c.train.num_steps = 0               # > 0 overrides num_epochs
  c.train.task_weights = ()            # one weight per task in data.tasks; () = all 1
  c.train.log_every = 50
  c.train.eval_every = 0              # validation evaluation interval (0 = only at the end)
  c.train.checkpoint_every = 200
  c.train.keep_checkpoints = 3
  c.train.report_split = 'test'
  # Share of training rows whose user (and, independently, whose video) is
  # made unseen: its id and side features set to missing, so the OOV rows
  # learn what a new user / video looks like (pepnet_jax/training/cold_start.py;
  # benchmarks/cold_start.py measures it); 0 = off.
  c.train.oov_rate = 0.05
  # A step whose loss or gradients are not finite: 'stop' (exit non-zero,
  # naming the step and the last good checkpoint) or 'skip' (leave the state
  # as it was; stop after max_skipped_steps such steps in a row).
  c.train.nonfinite = 'stop'
  c.train.max_skipped_steps = 10
  # L2 on the embedding rows a batch touches (per example, summed over
  # features): keeps rows of users / videos seen a few dozen times small.
  c.train.embed_l2 = 0.0
  # Model selection on the validation split (pepnet_jax/training/selection.py): with
  # eval_every > 0 (or patience > 0: then one validation an epoch) the best
  # step by select_metric is kept in <workdir>/best and the report uses it.
  c.train.select_best = True
  c.train.select_metric = 'mean_auc'  # any key of the 'valid' lines of metrics.jsonl
  # With a mean_* select_metric: average only the tasks with at least this many
  # positives in the validation split (the key <select_metric>_judged); a task with
  # a few dozen positives moves the mean by noise. 0 = every task.
  c.train.select_min_positives = 0
  # Extra evaluation metrics beside AUC / GAUC / logloss, by registered name
  # ('pr_auc') or 'module:name' (pepnet_jax/evaluation/metrics.py register_metric).
  c.train.metrics = ()
  c.train.patience = 0                # validations without improvement; 0 = never stop early
  # With eval_every = 0 and patience = 0: one validation, after the last step (its metrics
  # logged, the report from that step). 'budget' sets it: its decay makes the last step the
  # best, so a validation before it would select nothing (9 s of a 3-minute run on 2 cores).
  c.train.valid_at_end = False
  c.train.min_delta = 0.0

  # ---- devices ----
  c.mesh = ml_collections.ConfigDict()
  c.mesh.num_devices = 0              # 0 = all visible devices; batch split over them
  c.mesh.shard_min_rows = 4096        # tables with at least this many rows are row-sharded

  c.distributed = ml_collections.ConfigDict()
  c.distributed.enabled = False       # jax.distributed.initialize (multi-host)
  c.distributed.coordinator_address = ''
  c.distributed.num_processes = 1
  c.distributed.process_id = 0
  c.distributed.cpu_collectives = 'gloo'  # CPU backend's cross-process collectives
  return c


RECIPES = {
    'paper': "the paper's streaming-scale recipe: AdaGrad 0.05 on the tables, Adam 5e-6 on "
             'the rest, one pass over the data, no model selection (Kuaishou trains on '
             'billions of rows once; on 10^5..10^7 rows Adam 5e-6 barely moves the towers)',
    'converge': 'for datasets read many times (10^5..10^8 rows): AdaGrad 0.75 on the tables '
                'with L2 3e-5 on the rows a batch touches, Adam 1.6e-4 after a 100-step '
                'warm-up on the rest, tower dropout 0.4, up to num_epochs passes with a '
                'validation each epoch, early stopping after 2 validations without improvement '
                'of the mean AUC, and the report from the best step (the rates and regularisers '
                'random searches chose on the validation days)',
    'converge_fast': "'converge' with the faster, less regularised settings of an earlier "
                     'search (AdaGrad 0.4, L2 2e-5, Adam 4e-4, dropout 0.3): its best step comes '
                     'in about half the epochs at a slightly lower validation AUC, for demos '
                     'and short budgets',
    'budget': 'a fixed number of passes (2 at KuaiRand-Pure\'s size) that ends on its best '
              'step: AdaGrad 0.75 on the tables with L2 3e-5 on the rows a batch touches, Adam '
              '2e-3 after a 100-step warm-up decaying linearly to 0 at the last step on the '
              'rest, tower dropout 0.3, one validation after the last step and the report '
              'from it (the decay makes the last step the best as a rule, so nothing runs '
              'after it and nothing before it needs validating)',
}


# The rates and regularisers of the 'converge' recipe: PEPNet's best of the 3 random-search
# trials of experiments/compare.py (generator v3, 400k rows, validation mean AUC 0.7815 against
# 0.7685 and 0.7717; AdaGrad 0.746, embed_l2 2.99e-5, Adam 1.64e-4, dropout 0.399), rounded.
# At Pure's size (README, "Quality against a floor and a ceiling") they reach a validation
# mean AUC of 0.7882 at epoch 4, against 0.7839 at epoch 3 with CONVERGE_FAST.
CONVERGE = dict(embed_lr=0.75, embed_l2=3e-5, dense_lr=1.6e-4, dropout=0.4)
# 'converge_fast': PEPNet's best of 4 random-search trials of experiments/quality.py (600k
# generated rows, generator v2: AdaGrad 0.461, embed_l2 2e-5, Adam 4.19e-4, dropout 0.299),
# rounded; the recipe of every result before the v3 comparison. The paper's AdaGrad 0.05
# with no L2 left the id rows of users seen a few dozen times under-fit.
CONVERGE_FAST = dict(embed_lr=0.4, embed_l2=2e-5, dense_lr=4e-4, dropout=0.3)
# 'budget': CONVERGE's tables, a 12x faster tower rate decayed linearly to 0 over 2 epochs, so
# that the last step is the best and nothing is spent after it. Chosen on the validation days
# of the quality data (experiments/quality.py, 1M training rows; docs/performance.md, "Time
# to quality") among Adam 1e-3 / 2e-3, dropout 0.2-0.4, tables 0.75 / 1.0 at 2 epochs (0.7866
# to 0.7880) and 3 epochs (0.7850: a longer high-rate phase overfits the towers).
BUDGET = dict(embed_lr=0.75, embed_l2=3e-5, dense_lr=2e-3, dropout=0.3)


def search_space(linear: bool = False) -> dict:
  """The random-search space of the experiments that tune each model at equal budget
  (experiments/compare.py, quality.py): its learning rates and regularisers, plus tower
  dropout for the networks; a linear model's dense rate ranges higher."""
  space = {'optim.embedding.lr': ('log', 0.05, 0.8), 'train.embed_l2': ('log', 1e-7, 1e-4)}
  if linear:
    space['optim.dense.lr'] = ('log', 1e-3, 3e-2)
  else:
    space['optim.dense.lr'] = ('log', 1e-4, 3e-3)
    space['model.dropout'] = ('float', 0.0, 0.4)
  return space


# The batch size the 'converge' recipes' rates were searched at (experiments/compare.py and
# quality.py train with base_config()'s batch of 1024).
RECIPE_BATCH = 1024


def apply_recipe(c: ml_collections.ConfigDict, name: str, max_epochs: float = 20.0,
                 batch_size: int = 0):
  """Sets the optimizer and training-loop fields of a named recipe (RECIPES).

  ``batch_size`` > 0 also sets ``config.data.batch_size`` and scales the recipe's
  rates to it by ``scale_to_batch``'s rule.
  """
  if name == 'paper':
    c.optim = optim_config()
    c.train.embed_l2 = 0.0
    c.model.dropout = 0.0
    c.train.num_epochs = 1.0
    c.train.eval_every = 0
    c.train.patience = 0
    c.train.valid_at_end = False
  elif name in ('converge', 'converge_fast', 'budget'):
    r = {'converge': CONVERGE, 'converge_fast': CONVERGE_FAST, 'budget': BUDGET}[name]
    c.optim = optim_config(embed_lr=r['embed_lr'], dense_lr=r['dense_lr'])
    c.optim.dense.warmup_steps = 100
    if name == 'budget':
      c.optim.dense.schedule = 'linear'  # to 0 at the last step: the last step is the best
    c.train.embed_l2 = r['embed_l2']
    c.model.dropout = r['dropout']
    c.train.num_epochs = float(max_epochs)
    c.train.eval_every = 0    # patience > 0: one validation an epoch
    # 'budget' ends on its best step (the decay): it validates that step alone
    c.train.patience = 0 if name == 'budget' else 2
    c.train.valid_at_end = name == 'budget'
    c.train.select_metric = 'mean_auc'
  else:
    raise ValueError(f'config.train.recipe={name!r}: use one of {sorted(RECIPES)}')
  c.train.recipe = name
  if batch_size:
    scale_to_batch(c, batch_size)
  return c


def scale_to_batch(c: ml_collections.ConfigDict, batch_size: int, reference: int = RECIPE_BATCH):
  """Sets ``config.data.batch_size`` and moves the recipe's rates from ``reference`` to it.

  With k = batch_size / reference, every group's rate x k and its warm-up steps / k (the
  warm-up covers the same examples). For the tables this is exact in the regime these
  recipes train in: an id row is looked up about once a batch and its AdaGrad sum stays
  near the initial 0.1 for many epochs, so AdaGrad acts on it as SGD on the batch-mean
  gradient, whose share of each example falls as 1/batch. For Adam it is the linear rule,
  chosen by measurement (docs/performance.md, "Larger batches"): on the demo's data at
  batch 2048 against its 512 (k = 4), rates scaled by less (tables x2, Adam x1.41) were
  0.09 validation AUC behind after one epoch; the linear rule tracked the reference epoch
  by epoch for two epochs (0.7244 / 0.7785 against 0.7216 / 0.7787), then fell 0.002-0.004
  behind: a larger batch generalises a little worse at this size.
  """
  if batch_size < 1 or reference < 1:
    raise ValueError(f'config.data.batch_size={batch_size}: must be >= 1')
  k = batch_size / reference
  for g in c.optim.groups:
    gc = c.optim[g]
    gc.lr = float(gc.lr) * k
    if gc.get('warmup_steps'):
      gc.warmup_steps = max(1, int(round(gc.warmup_steps / k)))
  c.data.batch_size = int(batch_size)
  return c


def describe_recipe(c: ml_collections.ConfigDict) -> str:
  """One line for the run's log: the recipe's name and the fields that define it."""
  o, t = c.optim, c.train
  parts = [f'{g} {o[g].optimizer} lr {o[g].lr:g}'
           + (f' (warm-up {o[g].warmup_steps})' if o[g].get('warmup_steps') else '')
           + (f' {o[g].schedule}' if o[g].get('schedule', 'constant') != 'constant' else '')
           for g in o.groups]
  extra = [f'{k} {t.get(k)}' for k in ('embed_l2', 'oov_rate') if t.get(k)]
  if c.model.get('dropout'):
    extra.append(f'dropout {c.model.dropout}')
  length = f'{t.num_steps} steps' if t.num_steps else f'up to {t.num_epochs:g} epoch(s)'
  return (f"recipe {t.get('recipe', 'custom')!r}: " + ', '.join(parts + [length] + extra)
          + f', batch {c.data.batch_size}')


def validate_train(c: ml_collections.ConfigDict) -> None:
  """Errors naming the field, before any data is read, for a training config
  that cannot mean what it says (e.g. 0 epochs would report an untrained model)."""
  tc = c.train

  def need(ok: bool, field: str, what: str):
    if not ok:
      raise ValueError(f'config.train.{field}={tc.get(field)!r}: {what}')

  need(int(tc.num_steps) == tc.num_steps and tc.num_steps >= 0, 'num_steps',
       'must be a whole number >= 0 (0 = use num_epochs)')
  if not tc.num_steps:
    need(tc.num_epochs > 0, 'num_epochs', 'must be > 0 (or set config.train.num_steps)')
  need(tc.log_every >= 1, 'log_every', 'must be >= 1')
  need(tc.eval_every >= 0, 'eval_every', 'must be >= 0 (0 = only at the end)')
  need(tc.checkpoint_every >= 0, 'checkpoint_every', 'must be >= 0 (0 = only at the end)')
  need(tc.keep_checkpoints >= 1, 'keep_checkpoints', 'must be >= 1')
  need(0.0 <= tc.get('oov_rate', 0.0) < 1.0, 'oov_rate', 'must be in [0, 1)')
  need(tc.get('nonfinite', 'stop') in ('stop', 'skip'), 'nonfinite', "use 'stop' or 'skip'")
  need(tc.get('max_skipped_steps', 10) >= 0, 'max_skipped_steps', 'must be >= 0')
  min_pos = tc.get('select_min_positives', 0)
  need(int(min_pos) == min_pos and min_pos >= 0, 'select_min_positives',
       'must be a whole number >= 0 (0 = every task)')
  if min_pos:
    need(str(tc.get('select_metric', 'mean_auc')).startswith('mean_'), 'select_metric',
         f'select_min_positives={min_pos} averages a metric over tasks: use a mean_* '
         'metric (mean_auc, mean_gauc, mean_logloss...)')
  from pepnet_jax.evaluation import metrics
  metrics.resolve_metrics(tc.get('metrics', ()))  # a ValueError naming the entry
  if c.data.batch_size < 1:
    raise ValueError(f'config.data.batch_size={c.data.batch_size}: must be >= 1')


def data_cache_root() -> str:
  """Where generated datasets live: ``$PEPNET_DATA_CACHE`` if set, else ``data_cache/`` in
  this checkout (beside ``experiments/``), else ``~/.cache/pepnet_jax`` for an installed
  package; never the current directory, so a run started elsewhere finds the same data."""
  if os.environ.get('PEPNET_DATA_CACHE'):
    return os.path.abspath(os.environ['PEPNET_DATA_CACHE'])
  checkout = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
  if os.path.isdir(os.path.join(checkout, 'experiments')):
    return os.path.join(checkout, 'data_cache')
  return os.path.join(os.path.expanduser('~'), '.cache', 'pepnet_jax')


def use_generated_data(c: ml_collections.ConfigDict, rows: int, users: int = 5000,
                       videos: int = 2000, authors: int = 600, seed: int = 0):
  """Points ``c`` at a generated KuaiRand-format dataset shared by every run.

  The data and its columnar cache live in
  ``<data_cache_root()>/synth_<rows>_u<users>_v<videos>_a<authors>_s<seed>_g<generator
  version>`` (a newer generator makes a new folder), so the points of a sweep generate and
  parse it once, whatever their workdirs.
  """
  from pepnet_jax.synth import GENERATOR_VERSION  # pulls pandas: lazily
  name = f'synth_{rows}_u{users}_v{videos}_a{authors}_s{seed}_g{GENERATOR_VERSION}'
  c.data.dir = os.path.join(data_cache_root(), name)
  c.data.cache_dir = os.path.join(c.data.dir, '.cache')
  c.data.generate = dict(rows=rows, users=users, videos=videos, authors=authors, seed=seed,
                         random_rows=0)
  return c


# Learning rates for generated data of ~1M rows (found by experiments/lr_sweep.py):
# the paper's Adam 5e-6 barely moves the towers at this scale.
SCALED_DENSE_LR = 1e-3


LEAN_FEATURES = ('user_id', 'video_id', 'author_id', 'tab', 'user_active_degree',
                 'is_video_author', 'onehot_feat1', 'onehot_feat2', 'video_type', 'upload_type',
                 'tag', 'duration', 'hourmin', 'follow_user_num')


def lean_kuairand_features() -> list:
  """A 14-field subset of the KuaiRand preset: the ids, the domain, and the
  side features that carry most signal; about 3x cheaper a step than all 40."""
  from pepnet_jax.data import kuairand  # pulls pandas: lazily
  by_name = {f['name']: f for f in kuairand.kuairand_features()}
  return [dict(by_name[n]) for n in LEAN_FEATURES]


def synthetic_experiment(rows: int = 600_000, dense_lr: float = SCALED_DENSE_LR):
  """Base of the ablation / study experiments on generated data (the setup of the
  generator-v1 comparison; experiments/compare.py now tunes each model instead).

  ``rows`` log rows in all (train gets 14/31 of them: days 04-08..04-21; valid
  04-22..04-28; test 04-29..05-08), the 14 lean features, one epoch, batch
  1024, AdaGrad 0.05 on the tables and Adam ``dense_lr`` on the rest.
  """
  c = base_config()
  use_generated_data(c, rows)
  c.data.features = lean_kuairand_features()
  c.optim = optim_config(embed_lr=0.05, dense_lr=dense_lr)
  c.train.num_epochs = 1.0
  c.train.log_every = 100
  c.train.checkpoint_every = 200
  return c


def apply_preset(c: ml_collections.ConfigDict, preset: str, file: str):
  """Common presets of the experiment files, comma-separated.

  paper_lr  the paper's recipe (Adam 5e-6 on dense layers)
  rows=N    size of the generated dataset
  epochs=N  training epochs
  """
  for p in filter(None, preset.split(',')):
    if p == 'paper_lr':
      c.optim = optim_config()
    elif p.startswith('rows='):
      use_generated_data(c, int(p.split('=', 1)[1]))
    elif p.startswith('epochs='):
      c.train.num_epochs = float(p.split('=', 1)[1])
    else:
      raise ValueError(f'unknown preset {p!r} for {file}: use paper_lr, rows=N, epochs=N')
  return c


def resolved_data(tree: dict) -> dict:
  """A config.json dict whose data section means what it says on its own: the
  deprecated data.tabs folded into data.domains and the empty fields filled
  with the format's defaults. An old config.json (tabs, explicit KuaiRand
  values) and a new one (domains, empty = the format's) of the same run then
  compare equal. Left as it is when the format cannot be found."""
  data = tree.get('data') if isinstance(tree, dict) else None
  if not isinstance(data, dict):
    return tree
  from pepnet_jax.data.resolve import resolve
  try:
    resolved = resolve(data)
  except (ValueError, ImportError):
    return tree
  spec = resolved.spec
  data = dict(data, domains=list(spec.domains), tasks=list(spec.tasks),
              splits={k: v if isinstance(v, str) else list(v)
                      for k, v in resolved.splits.items()},
              domain_column=spec.domain_column,
              group_column=resolved.reader_config.group_column)
  data.pop('tabs', None)
  return dict(tree, data=data)


def flat_fields(tree: dict, prefix: str = '') -> dict:
  """A config.json dict as {'model.gamma': 2.0, ...}; empty dicts stay leaves."""
  out = {}
  for k, v in tree.items():
    key = f'{prefix}{k}'
    if isinstance(v, dict) and v:
      out.update(flat_fields(v, key + '.'))
    else:
      out[key] = v
  return out


# Names for the log only: the fields a recipe sets are compared themselves, so a renamed
# recipe with the same settings does not make a finished run another configuration.
LABEL_FIELDS = ('train.recipe',)


def changed_fields(old: dict, new: dict, one_sided: bool = True) -> dict:
  """{'model.tower': (old value, new value)} for every dotted field of two
  config.json dicts that differs, sorted by field. ``one_sided=False`` leaves
  out fields only one side has (a field added to the code since). Data
  fields compare as resolved (resolved_data): old and new spellings of the
  same run do not differ; LABEL_FIELDS do not count."""
  a, b = flat_fields(resolved_data(old)), flat_fields(resolved_data(new))
  keys = (set(a) | set(b) if one_sided else set(a) & set(b)) - set(LABEL_FIELDS)
  return {k: (a.get(k), b.get(k)) for k in sorted(keys) if a.get(k) != b.get(k)}
