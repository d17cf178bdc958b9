r"""Demo: PEPNet on a generated KuaiRand-format dataset, end to end in minutes.

Run:
  python run.py --config experiments/demo.py --workdir /tmp/pepnet_demo

The first run writes a KuaiRand-format dataset (logs, user and video feature
files, and the generator's true probabilities) into <workdir>/data, parses it
into a columnar cache, trains PEPNet for one epoch, evaluates on the test days
and prints a per-task x per-domain table of AUC, GAUC, logloss, positives and
impressions (also saved as <workdir>/report.json and report.png). Running the
same command again resumes from the last checkpoint (here: already finished,
so it only re-evaluates).

Learning rates: the paper's Adam lr 5e-6 for the dense layers suits Kuaishou's
billions of examples; on a few hundred thousand rows it barely moves the
towers, so the demo keeps AdaGrad 0.05 on the tables but uses Adam 1e-3 on the
rest (a demo-scale rate; see experiments/README for the sweep that chose it).
Presets:
  experiments/demo.py          ~600k generated rows, 1 epoch
  experiments/demo.py:quick    ~60k rows, a smoke test in well under a minute
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  c = configs.base_config()
  c.data.generate.rows = 600_000
  c.data.batch_size = 512
  c.optim = configs.optim_config(embed_lr=0.05, dense_lr=1e-3)
  c.train.num_epochs = 1.0
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
