r"""PEPNet on 1M generated training rows, one epoch, beside the oracle AUC.

Run (from the repository root; about 10-15 minutes on 2 CPU cores):
  python run.py --config experiments/synth_1m.py --workdir runs/synth_1m
  python -m pepnet_jax.oracle --workdir runs/synth_1m

Generates 2,200,000 KuaiRand-format log rows with the real user / video
counts of KuaiRand-Pure (27,285 users, 7,583 videos, 6,510 authors): about
1,000,000 training rows (04-08..04-21), and valid / test days as in the
KuaiRand convention. Trains PEPNet for one epoch (batch 1024; AdaGrad 0.05 on
tables, Adam 1e-3 on the rest) and prints the test report; the second
command prints each task's test AUC (overall and per tab) beside the oracle
AUC computed from the generator's truth file.
Presets (comma-separated): paper_lr, epochs=N.
"""

from pepnet_jax import configs


def get_config(preset: str = ''):
  c = configs.synthetic_experiment(rows=2_200_000)
  configs.use_generated_data(c, 2_200_000, users=27_285, videos=7_583, authors=6_510)
  c.data.features = []  # the full KuaiRand preset (40 fields), not the lean subset
  c.train.log_every = 100
  c.train.checkpoint_every = 250
  return configs.apply_preset(c, preset, __file__)
