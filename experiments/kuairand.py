r"""PEPNet on the real KuaiRand logs (Pure, 1K or 27K), downloaded by you.

Run (after downloading and unpacking KuaiRand-Pure, see README):
  python run.py --config experiments/kuairand.py --workdir runs/kuairand_pure \
      --config.data.dir=/path/to/KuaiRand-Pure/data

Reads log_standard_4_08_to_4_21_pure.csv (train, 2022-04-08..04-21) and
log_standard_4_22_to_5_08_pure.csv (valid 04-22..04-28, test 04-29..05-08),
joins user_features_pure.csv and video_features_basic_pure.csv, keeps the
four large tabs {0, 1, 2, 4} as domains, trains PEPNet on the seven tasks
and prints AUC / GAUC / logloss per task x tab on the test days (saved as
report.json / report.png in the workdir). The first run parses the CSVs into
a columnar cache (<workdir>/cache); later runs start in seconds.

Recipe: 'budget' (pepnet_jax/configs.py RECIPES), 2 epochs. KuaiRand-Pure's 1.2M
training rows are read twice, so the towers get Adam 2e-3 (after a 100-step warm-up,
decaying linearly to 0 at the last step) instead of the paper's 5e-6, which suits one pass
over Kuaishou's billions of rows but leaves the towers nearly untrained here; the tables get
AdaGrad 0.75 with L2 3e-5 on the rows a batch touches (users are seen a few dozen times
each: their rows need a large step and a pull towards 0), the towers dropout 0.3. The
run validates on 04-22..04-28 once, after its last step (the decay makes that step the
best, so an earlier validation would select nothing; --config.train.eval_every=N adds one
every N steps), and reports the test days with those parameters. The log's first lines name
the recipe. On generated data of Pure's size it reaches the slower 'converge' recipe's best
validation AUC in 0.32x the time and finishes in 0.22x, its test AUC 0.002 lower
(docs/performance.md, "Time to quality"); more epochs at its rates overfit.

Presets (comma-separated):
  converge  the 'converge' recipe (AdaGrad 0.75, L2 3e-5, Adam 1.6e-4 constant, dropout
            0.4): up to 20 epochs, a validation each epoch, early stopping after 2 without
            improvement (this file's default before 'budget'; the README's quality tables
            were made with it)
  paper     the paper's recipe: AdaGrad 0.05 on tables, Adam 5e-6 on the rest,
            one epoch, no model selection (the streaming-scale recipe)
  fast      the 'converge_fast' recipe (AdaGrad 0.4, L2 2e-5, Adam 4e-4, dropout
            0.3): best step in about half the epochs, a little less accurate
  scaled    Adam 1e-3 for exactly one epoch (this file's default before the
            'converge' recipe; kept so earlier results can be reproduced)
  paper_protocol  train on 10 days, validate on day 11, test on day 12
            (04-08..04-17 / 04-18 / 04-19), as in the paper's setup
"""

from pepnet_jax import configs
from pepnet_jax.data import formats


def get_config(preset: str = ''):
  c = configs.base_config()
  c.data.format = 'kuairand'
  c.data.dir = ''  # required: --config.data.dir=/path/to/KuaiRand-Pure/data
  # The format's split dates, spelled out so that one can be changed on the command line
  # (--config.data.splits.valid="('20220422', '20220425')").
  c.data.splits = {k: tuple(v) for k, v in formats.get('kuairand').splits.items()}
  configs.apply_recipe(c, 'budget', max_epochs=2)
  c.train.log_every = 100
  c.train.checkpoint_every = 500
  for p in filter(None, preset.split(',')):
    if p == 'converge':
      configs.apply_recipe(c, 'converge', max_epochs=20)
    elif p == 'paper':
      configs.apply_recipe(c, 'paper')
    elif p == 'fast':
      configs.apply_recipe(c, 'converge_fast', max_epochs=20)
    elif p == 'scaled':
      configs.apply_recipe(c, 'paper')
      c.optim = configs.optim_config(embed_lr=0.05, dense_lr=1e-3)
      c.train.recipe = 'scaled'
    elif p == 'paper_protocol':
      c.data.splits = dict(train=('20220408', '20220417'), valid=('20220418', '20220418'),
                           test=('20220419', '20220419'))
    else:
      raise ValueError(f'unknown preset {p!r} for experiments/kuairand.py: '
                       'use converge, paper, fast, scaled and/or paper_protocol '
                       '(comma-separated)')
  return c
