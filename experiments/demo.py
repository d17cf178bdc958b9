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

Recipe: 'converge_fast' (pepnet_jax/configs.py RECIPES), capped at 4 epochs so
the demo stays short: AdaGrad 0.4 with L2 on the rows a batch touches on the
tables and Adam 4e-4 (after a warm-up) with dropout 0.3 on the rest (the
slower 'converge' that experiments/kuairand.py uses needs about twice the
epochs for its better best step), since the
paper's Adam 5e-6 suits one pass over billions of rows and barely moves the
towers on a few hundred thousand; a validation each epoch, early stopping,
and the report from the best step.

Presets:
  experiments/demo.py          ~600k generated rows, up to 4 epochs
  experiments/demo.py:quick    ~60k rows, a smoke test in well under a minute
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  c = configs.base_config()
  c.data.generate.rows = 600_000
  c.data.batch_size = 512
  configs.apply_recipe(c, 'converge_fast', max_epochs=4)
  c.train.log_every = 50
  c.train.checkpoint_every = 200
  if preset == 'quick':
    c.data.generate.rows = 60_000
    c.data.generate.users = 800
    c.data.generate.videos = 500
    c.data.generate.authors = 150
    c.train.log_every = 10
    c.train.checkpoint_every = 20
  elif preset:
    raise ValueError(f'unknown preset {preset!r} for experiments/demo.py: use "" or "quick"')
  return c
