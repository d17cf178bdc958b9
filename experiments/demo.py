r"""Demo: PEPNet on a generated KuaiRand-format dataset, end to end in minutes.

Run:
  python run.py --config experiments/demo.py --workdir /tmp/pepnet_demo

The first run writes a KuaiRand-format dataset (logs, user and video feature
files, and the generator's true probabilities) into <workdir>/data, parses it
into a columnar cache, trains PEPNet (selecting the best step on the validation
days), evaluates on the test days
and prints a per-task x per-domain table of AUC, GAUC, logloss, positives and
impressions (also saved as <workdir>/report.json and report.png). Running the
same command again resumes from the last checkpoint (here: already finished,
so it only re-evaluates).

Recipe: 'budget' (pepnet_jax/configs.py RECIPES), as experiments/kuairand.py runs it:
AdaGrad 0.75 with L2 on the rows a batch touches on the tables, Adam 2e-3 (after a warm-up,
decaying linearly to 0 at the last step) with dropout 0.3 on the rest, 2 epochs at
batch 1024, one validation after the last step and the report from that step. (The paper's Adam
5e-6 suits one pass over billions of rows and barely moves the towers on a few hundred
thousand.) Until 2026-12-07 the demo ran 'converge_fast' for 4 epochs at batch 512
(preset converge_fast): twice the time, a test mean AUC 0.0016 higher and a validation AUC
0.002 lower (docs/results/budget_recipe/README.md).

Presets:
  experiments/demo.py          ~600k generated rows, 2 epochs
  experiments/demo.py:quick    ~60k rows, a smoke test in well under a minute
  experiments/demo.py:converge_fast   the demo before 2026-12-07 (4 epochs, batch 512)
"""

from pepnet_jax import configs

EPOCHS = 2


def get_config(preset: str = ''):
  c = configs.base_config()
  c.data.generate.rows = 600_000
  configs.apply_recipe(c, 'budget', max_epochs=EPOCHS)
  c.train.log_every = 50
  c.train.checkpoint_every = 200
  if preset == 'converge_fast':
    c.data.batch_size = 512
    configs.apply_recipe(c, 'converge_fast', max_epochs=4)
  elif preset == 'quick':
    c.data.generate.rows = 60_000
    c.data.generate.users = 800
    c.data.generate.videos = 500
    c.data.generate.authors = 150
    c.train.log_every = 10
    c.train.checkpoint_every = 20
  elif preset:
    raise ValueError(f'unknown preset {preset!r} for experiments/demo.py: use "", "quick" or '
                     '"converge_fast"')
  return c
